"""The in-page notice: "MalwareSnipper blocked a dangerous script on this page".

A page is served before the verdicts of the scripts it loads may be known (the browser fetches
them afterwards), so the notice is armed in the page and fired by the script's replacement:

* In block mode every HTML page that has a ``<script>`` (external, or inline that may add one)
  gets a tiny loader as the first element of its ``<head>``. It listens for one event whose name carries a token (an HMAC of the page's
  origin under a key of this gateway process), then removes its own ``<script>`` element.
* The inert script that replaces a MALICIOUS script (:mod:`.replies`) dispatches that event, with
  the blocked script's URL; the script request's ``Referer`` (at least the page's origin, under
  browsers' default referrer policy) names the page, and so the token.
* The loader builds the notice in a **closed** shadow root of an element it creates on
  ``<html>``, with inline ``!important`` styles: the page's CSS cannot restyle it, and the page's
  scripts cannot reach inside it. It says what happened, links to the gateway's own explanation
  (``http://malwaresnipper.invalid/blocked-script``) and has a close button.

Limits (documented in docs/architecture.md): the page's own scripts run in the same world, so a
hostile page can remove the host element, or replace ``dispatchEvent`` before the inert script
runs and so suppress the notice; a page of the same origin can read the token from its HTML and
show a notice of its own making. Neither unblocks anything: the script stays replaced and the
record says "scripts blocked". A page sent with ``Referrer-Policy: no-referrer`` gives the script
request no page to name: the script is still replaced, without a notice.

Content-Security-Policy: a page whose CSP names a script nonce gets the loader with that nonce; a
page whose CSP would refuse inline script otherwise gets the loader's hash added to its
``script-src`` (an ``'unsafe-inline'`` policy without nonces or hashes already allows it). A CSP
given in a ``<meta>`` element is not edited: if it refuses the loader, there is no notice (the
script is still replaced).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from mitmproxy import http

from .blockpage import CONTROL_ORIGIN, _js_string

#: The gateway's page explaining the notice (answered by :mod:`.control`).
NOTICE_PATH = "/blocked-script"
NOTICE_URL = CONTROL_ORIGIN + NOTICE_PATH
TEXT = "MalwareSnipper blocked a dangerous script on this page"
#: Where the loader goes, looked for in the first this many characters.
_SEARCH_CHARS = 64 * 1024
_HEAD = re.compile(r"<head\b[^>]*>", re.I)
_HTML = re.compile(r"<html\b[^>]*>", re.I)
_KEY = secrets.token_bytes(32)


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (a Referer), else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1].lower()}"


def token(origin: str) -> str:
    """The event-name token of a page origin (unguessable without this process's key)."""
    return hmac.new(_KEY, origin.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:24]


def event_name(origin: str) -> str:
    return f"malwaresnipper-blocked-{token(origin)}"


def loader(origin: str) -> str:
    """The loader's JavaScript for a page of ``origin`` (see the module docstring)."""
    return (
        "(function(){'use strict';var d=document,w=window,E=Element.prototype,N=Node.prototype,"
        "att=E.attachShadow,app=N.appendChild,rem=N.removeChild,ce=d.createElement.bind(d),"
        "ct=d.createTextNode.bind(d),host=null,list=null,seen={};"
        f"var NAME={_js_string(event_name(origin))},TEXT={_js_string(TEXT)},HREF={_js_string(NOTICE_URL)};"
        "function el(tag,css,text){var e=ce(tag);e.setAttribute('style',css);if(text)app.call(e,ct(text));return e;}"
        "function show(ev){var u=ev&&typeof ev.detail==='string'?ev.detail.slice(0,200):'';"
        "if(!host){host=ce('malwaresnipper-notice');host.setAttribute('style','all:initial!important;"
        "position:fixed!important;top:12px!important;right:12px!important;z-index:2147483647!important;"
        "display:block!important;visibility:visible!important;opacity:1!important;width:380px!important;"
        "max-width:calc(100vw - 24px)!important;height:auto!important;margin:0!important;padding:0!important;"
        "transform:none!important;filter:none!important;clip-path:none!important;pointer-events:auto!important');"
        "var root=att.call(host,{mode:'closed'});"
        "var box=el('div','box-sizing:border-box;background:#fff8e1;color:#3e2723;border:2px solid #e65100;"
        "border-radius:8px;padding:12px 40px 12px 14px;font:14px/1.4 system-ui,sans-serif;"
        "box-shadow:0 4px 16px rgba(0,0,0,.25);position:relative');"
        "app.call(box,el('strong','display:block;margin:0 0 4px',TEXT));"
        "list=el('div','font-size:12px;word-break:break-all;color:#5d4037');app.call(box,list);"
        "var a=el('a','color:#bf360c;text-decoration:underline','What does this mean?');a.href=HREF;"
        "a.target='_blank';a.rel='noopener noreferrer';app.call(box,a);"
        "var x=el('button','position:absolute;top:6px;right:8px;border:0;background:none;font:20px/1 sans-serif;"
        "cursor:pointer;color:#3e2723','\\u00d7');x.setAttribute('aria-label','Dismiss');"
        "x.addEventListener('click',function(){if(host&&host.parentNode)rem.call(host.parentNode,host);});"
        "app.call(box,x);app.call(root,box);}"
        "if(u&&!seen[u]){seen[u]=1;app.call(list,el('div','margin:0 0 4px',u));}"
        "if(!host.parentNode)app.call(d.documentElement,host);}"
        "w.addEventListener(NAME,show,true);"
        "var me=d.currentScript;if(me&&me.parentNode)rem.call(me.parentNode,me);})();"
    )


def trigger(origin: str, script_url: str) -> str:
    """What the inert script of a blocked script adds to fire its page's notice."""
    return (f"try{{window.dispatchEvent(new CustomEvent({_js_string(event_name(origin))},"
            f"{{detail:{_js_string(script_url)}}}));}}catch(e){{}}\n")


def add_trigger(response: http.Response, referer: str | None, script_url: str) -> bool:
    """Append the notice trigger to an inert script; False when the request names no page."""
    origin = origin_of(referer)
    if origin is None or response.content is None:
        return False
    response.content = response.content + trigger(origin, script_url).encode("utf-8")
    return True


# -- Content-Security-Policy -------------------------------------------------------------------

_NONCE = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")


def _directives(policy: str) -> list[tuple[str, str]]:
    out = []
    for part in policy.split(";"):
        part = part.strip()
        if part:
            name, _, value = part.partition(" ")
            out.append((name.lower(), value.strip()))
    return out


def allow_loader(headers: http.Headers, script_hash: str) -> tuple[str | None, bool]:
    """Make the page's CSP allow the loader: ``(nonce to use or None, allowed)``. Adds the
    loader's hash to a ``script-src`` that would refuse it (editing ``headers``)."""
    policies = headers.get_all("content-security-policy")
    if not policies:
        return None, True
    nonce: str | None = None
    rewritten = []
    for policy in policies:
        directives = _directives(policy)
        names = [n for n, _ in directives]
        governing = next((n for n in ("script-src-elem", "script-src", "default-src") if n in names), None)
        if governing is None:
            rewritten.append(policy)
            continue
        value = dict(directives)[governing]
        found = _NONCE.search(value)
        if found:
            nonce = nonce or found.group(1)
            rewritten.append(policy)
            continue
        sources = value.split()
        if "'unsafe-inline'" in sources and not any(s.startswith(("'sha", "'nonce-")) for s in sources):
            rewritten.append(policy)
            continue
        sources = [s for s in sources if s != "'none'"] + [f"'{script_hash}'"]
        if governing == "default-src":  # scripts get a directive of their own: default-src + the hash
            directives.append(("script-src", " ".join(sources)))
        else:
            directives = [(n, " ".join(sources) if n == governing else v) for n, v in directives]
        rewritten.append("; ".join(f"{n} {v}".strip() for n, v in directives))
    headers.set_all("content-security-policy", rewritten)
    return nonce, True


_ANY_SCRIPT = re.compile(r"<script\b", re.I)


def inject(response: http.Response, page_url: str) -> bool:
    """Put the loader first in the page's ``<head>`` (see the module docstring); False when the
    response is not an HTML page that runs scripts (none to replace: no loader needed)."""
    ctype = (response.headers.get("content-type") or "").lower()
    origin = origin_of(page_url)
    if origin is None or "text/html" not in ctype:
        return False
    text = response.get_text(strict=False)
    if text is None or not _ANY_SCRIPT.search(text):
        return False
    try:
        # Served decoded (no Content-Encoding): compressing the page again would cost the event
        # loop more than the rest of its block-mode handling (mitmproxy's gzip runs at level 9).
        response.decode(strict=True)
    except ValueError:  # a body its own Content-Encoding does not describe: left as it came
        return False
    script = loader(origin)
    digest = "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    nonce, _ = allow_loader(response.headers, digest)
    tag = (f'<script nonce="{nonce}">' if nonce else "<script>") + script + "</script>"
    head = _HEAD.search(text, 0, _SEARCH_CHARS) or _HTML.search(text, 0, _SEARCH_CHARS)
    at = head.end() if head else 0
    response.set_text(text[:at] + tag + text[at:])
    return True
