"""What the user sees instead of a malicious page or script, and the gateway's own pages.

The block page shows what was blocked (the URL, as escaped text) and why: one plain sentence
from :mod:`~malwaresnipper.engine.explain` (the extension's overlay says the same), and the
findings a user reads as reasons, without severity words. A "Technical details" disclosure holds
the evidence an analyst needs (finding ids and where each was found, the form's target host, the
hidden frame's host, the script URL and sha256; never the blocked content itself: its snippets
are in the dashboard's record); the scan id links to that record. "Go back" is its one
prominent action; as on Chrome's interstitial, the
ways past the block sit behind a "Details" disclosure. The block page is served on the blocked
site's own origin, so it carries nothing that authorises a bypass (see :mod:`.bypass`): "Proceed
once" and "Always allow this site" link to a confirmation page on the gateway's own origin
(``CONTROL_ORIGIN``), where the user confirms with a one-time token no site can read. "Always
allow" is not offered when the user's own blocklist blocked the page. Every page here needs no
script at all and is served with a CSP that forbids every script.

A blocked external script is replaced by an inert script: a comment and a ``console.warn`` that
say why, so the page's developer console explains what happened.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from ..engine.explain import headline

#: The gateway's own origin in the browser: requests to this host are answered by the addon and
#: never sent upstream. ``.invalid`` never resolves (RFC 2606), so no site can own or serve it.
CONTROL_HOST = "malwaresnipper.invalid"
CONTROL_ORIGIN = f"http://{CONTROL_HOST}"
#: Paths on CONTROL_HOST.
CONFIRM_PATH = "/confirm"
#: "Report a mistake": the confirmation of a report that a blocked page is safe.
REPORT_PATH = "/report"
#: Longest report comment taken from the report form (the store's limit).
REPORT_COMMENT_MAX = 1000

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#fdf3f2;color:#1d1d1f;margin:0}
main{max-width:44rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:12px;
box-shadow:0 2px 16px rgba(0,0,0,.08);border-top:6px solid #c62828}
h1{font-size:1.5rem;margin:0 0 .5rem;color:#b71c1c}
.url{font-family:ui-monospace,monospace;word-break:break-all;background:#f6f6f6;padding:.5rem;border-radius:6px}
li{margin:.3rem 0}.sev{font-weight:600;text-transform:lowercase}
.actions{display:flex;gap:.75rem;flex-wrap:wrap;margin-top:1.5rem}
.actions form{margin:0}
a.button,button{font:inherit;padding:.55rem 1rem;border-radius:6px;border:1px solid #888;background:#fff;color:#1d1d1f;\
cursor:pointer;text-decoration:none}
a.primary,button.primary{background:#1565c0;color:#fff;border-color:#1565c0}
small{color:#555}
details{margin-top:1.5rem;color:#333}summary{cursor:pointer;color:#555}
details p{margin:.5rem 0}details a{color:#b71c1c}
dl.tech{display:grid;grid-template-columns:max-content 1fr;gap:.25rem .75rem;font-size:.85rem}
dl.tech dt{color:#555}dl.tech dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
""".strip()

#: The only style the block page may use, pinned by hash in its CSP.
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

BLOCK_PAGE_CSP = (
    "default-src 'none'; "
    f"style-src '{STYLE_HASH}'; "
    "form-action 'self'; "
    "base-uri 'none'; "
    "frame-ancestors 'none'"
)
#: Headers of every page the gateway writes itself (no caching, no framing, no referrer leak).
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": BLOCK_PAGE_CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
#: The confirmation page also keeps other origins' windows and loads away from it. Its referrer
#: policy is same-origin, not no-referrer: under no-referrer a browser sends ``Origin: null``
#: with the form's POST, and that Origin is what proves the POST came from this page.
CONFIRM_HEADERS = {
    **PAGE_HEADERS,
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def confirm_headers(url: str) -> dict[str, str]:
    """CONFIRM_HEADERS for a confirmation of ``url``: its form's answer redirects there, and a
    browser holds a form's redirects to ``form-action`` too."""
    headers = dict(CONFIRM_HEADERS)
    target = _origin(url)
    if target:
        headers["Content-Security-Policy"] = BLOCK_PAGE_CSP.replace("form-action 'self'", f"form-action 'self' {target}")
    return headers


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL as a CSP source, or None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or not all(c.isalnum() or c in ".-:" for c in host):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port else "")


@dataclass(frozen=True, slots=True)
class BypassLinks:
    """Where the block page's "Details" lead: confirmation pages on the gateway's origin."""

    block_id: str
    may_allow: bool
    #: The block has a scan, so "Report a mistake" can say which verdict was wrong.
    may_report: bool = False

    def href(self, action: str) -> str:
        return f"{CONTROL_ORIGIN}{CONFIRM_PATH}?{urlencode({'block': self.block_id, 'action': action})}"

    def report_href(self) -> str:
        return f"{CONTROL_ORIGIN}{REPORT_PATH}?{urlencode({'block': self.block_id, 'verdict': 'safe'})}"


def _back_href(referer: str | None) -> str:
    if referer:
        try:
            if urlsplit(referer).scheme in ("http", "https"):
                return referer
        except ValueError:
            pass
    return "about:blank"


def render_block_page(
    *,
    url: str,
    reasons: Sequence[tuple[str, str]],
    risk_score: float | None,
    classification: str | None,
    links: BypassLinks | None,
    referer: str | None = None,
    scan_id: str | None = None,
    technical: Sequence[tuple[str, str]] = (),
    scan_href: str | None = None,
) -> str:
    """The block page. ``reasons`` are (severity word, sentence) pairs: users read the sentence
    only (the word goes to the technical details); every string is escaped.

    ``links`` is None where no way past the block is offered (a request that was not a page
    navigation). ``technical``: (label, value) rows for the "Technical details" disclosure.
    ``scan_href``: the dashboard's view of the scan (``<dashboard>/#scan=<id>``)."""
    esc = html.escape
    items = "\n".join(f"<li>{esc(text)}</li>" for _, text in reasons) or "<li>This address is on a blocklist.</li>"
    lead = headline(classification if classification not in ("unknown", "benign") else None)
    score = f" Risk score {risk_score:.0f}/100." if risk_score is not None else ""
    ref = ""
    if scan_id:
        name = f"Scan {esc(scan_id)}"
        ref = (f'<p><small><a href="{esc(scan_href, quote=True)}">{name}</a> (its record in the dashboard)</small></p>'
               if scan_href and scan_href.startswith(("http://", "https://")) else f"<p><small>{name}</small></p>")
    rows = [*technical, *(("Finding", f"{sev}: {text}") for sev, text in reasons if not technical)]
    tech = ""
    if rows:
        tech = ('<details class="technical"><summary>Technical details</summary><dl class="tech">'
                + "".join(f"<dt>{esc(label)}</dt><dd>{esc(value)}</dd>" for label, value in rows)
                + "</dl></details>")
    report = ""
    if links is not None and links.may_report:
        report = (f'<p class="report"><a href="{esc(links.report_href(), quote=True)}">Report a mistake: this page '
                  "is safe</a><br><small>Tells the gateway's administrator; you confirm on the gateway's own page."
                  "</small></p>")
    details = ""
    if links is not None:
        ways = [f'<p><a href="{esc(links.href("proceed"), quote=True)}">Proceed once to this page (unsafe)</a>'
                "<br><small>Lets this page through one time; you confirm on the gateway's own page.</small></p>"]
        if links.may_allow:
            ways.append(f'<p><a href="{esc(links.href("allow"), quote=True)}">Always allow this site</a>'
                        "<br><small>Adds the site to the allowlist; you can remove it from the dashboard."
                        "</small></p>")
        else:
            ways.append("<p><small>This address is on your own blocklist, so it cannot be allowed from here; "
                        "remove it from the blocklist in the dashboard.</small></p>")
        details = ("<details><summary>Details</summary>"
                   "<p>If you understand the risk and trust this page, you can continue.</p>"
                   + "".join(ways) + "</details>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Blocked by MalwareSnipper</title>
<style>{_STYLE}</style></head>
<body><main>
<h1>MalwareSnipper blocked this page</h1>
<p class="lead">{esc(lead)}</p>
<p>It was stopped before it reached your browser.{esc(score)}</p>
<p class="url">{esc(url)}</p>
<h2>Why</h2>
<ul>
{items}
</ul>
<div class="actions">
<a class="button primary" href="{esc(_back_href(referer), quote=True)}">Go back</a>
</div>
{report}
{details}
{tech}
{ref}
</main></body></html>
"""


def render_confirm_page(*, url: str, reasons: Sequence[str], action: str, token: str, block_id: str) -> str:
    """The gateway's own page where the user confirms a bypass (a form with a one-time token)."""
    esc = html.escape
    items = "\n".join(f"<li>{esc(text)}</li>" for text in reasons[:5]) or "<li>It was found malicious.</li>"
    if action == "allow":
        host = urlsplit(url).hostname or url
        title = "Always allow this site?"
        lead = (f"Pages of <b>{esc(host)}</b> will no longer be scanned or blocked. You can remove the site from "
                "the allowlist in the dashboard.")
        button = "Always allow this site"
    else:
        title = "Open this blocked page once?"
        lead = "The page will be let through one time; the next visit is blocked again."
        button = "Proceed once"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{esc(title)} - MalwareSnipper</title>
<style>{_STYLE}</style></head>
<body><main>
<h1>{esc(title)}</h1>
<p>MalwareSnipper blocked this page:</p>
<p class="url">{esc(url)}</p>
<ul>
{items}
</ul>
<p>{lead}</p>
<div class="actions">
<a class="button primary" href="{esc(url if url.startswith(("http://", "https://")) else "about:blank", quote=True)}">Cancel</a>
<form method="post" action="{CONFIRM_PATH}">
<input type="hidden" name="block" value="{esc(block_id, quote=True)}">
<input type="hidden" name="action" value="{esc(action, quote=True)}">
<input type="hidden" name="token" value="{esc(token, quote=True)}">
<button type="submit">{esc(button)}</button></form>
</div>
</main></body></html>
"""


def render_report_page(*, url: str, reasons: Sequence[str], token: str, block_id: str) -> str:
    """The gateway's own page where the user confirms "this blocked page is safe" (a form with a
    one-time token, as a bypass's; an optional comment for the analyst)."""
    esc = html.escape
    items = "\n".join(f"<li>{esc(text)}</li>" for text in reasons[:5]) or "<li>It was found malicious.</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Report a mistake - MalwareSnipper</title>
<style>{_STYLE}</style></head>
<body><main>
<h1>Report a mistake: this page is safe?</h1>
<p>MalwareSnipper blocked this page:</p>
<p class="url">{esc(url)}</p>
<ul>
{items}
</ul>
<p>Your report goes to the gateway's administrator with the scan of this page. The page stays blocked
until they allow it.</p>
<form method="post" action="{REPORT_PATH}">
<input type="hidden" name="block" value="{esc(block_id, quote=True)}">
<input type="hidden" name="action" value="report">
<input type="hidden" name="token" value="{esc(token, quote=True)}">
<p><label for="comment">Why is it safe? (optional)</label><br>
<textarea id="comment" name="comment" rows="3" cols="50" maxlength="{REPORT_COMMENT_MAX}"></textarea></p>
<div class="actions">
<a class="button" href="{esc(url if url.startswith(("http://", "https://")) else "about:blank", quote=True)}">Cancel</a>
<button type="submit" class="primary">Report: this page is safe</button>
</div></form>
</main></body></html>
"""


def _js_string(text: str) -> str:
    """A JS string literal that cannot close a script element or a comment."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def inert_script(*, url: str, reasons: Sequence[str], scan_id: str | None = None) -> str:
    """A harmless script to serve in place of a malicious one."""
    why = "; ".join(reasons) or "it was found malicious"
    comment_safe = f"{url} - {why}".replace("*/", "* /")
    message = f"MalwareSnipper blocked the script {url}: {why}" + (f" (scan {scan_id})" if scan_id else "")
    return (
        f"/* MalwareSnipper blocked this script: {comment_safe} */\n"
        f"console.warn({_js_string(message)});\n"
    )


def render_notice(title: str, message: str) -> str:
    """A small page for the control path's answers (expired token, bad request)."""
    esc = html.escape
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{esc(title)}</h1><p>{esc(message)}</p></main></body></html>"
    )
