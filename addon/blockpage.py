"""What the user sees instead of a malicious page or script.

The block page shows what was blocked (the URL, as escaped text), why (the top indicators, in
their plain-words titles) and three ways on, all plain links/forms to the addon's own path on the
same host, so the page needs no script at all and is served with a CSP that forbids every script:

* go back (a link to the referring page, or a blank page when there is none);
* proceed once (a POST with a one-time token, see :mod:`.bypass`);
* always allow this site (a POST with a one-time token; the site goes to the allowlist).

A blocked external script is replaced by an inert script: a comment and a ``console.warn`` that
say why, so the page's developer console explains what happened.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Sequence
from urllib.parse import urlsplit

#: Requests under this path, on any host, are answered by the addon (never sent upstream).
CONTROL_PREFIX = "/__malwaresnipper__/"

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#fdf3f2;color:#1d1d1f;margin:0}
main{max-width:44rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:12px;
box-shadow:0 2px 16px rgba(0,0,0,.08);border-top:6px solid #c62828}
h1{font-size:1.5rem;margin:0 0 .5rem;color:#b71c1c}
.url{font-family:ui-monospace,monospace;word-break:break-all;background:#f6f6f6;padding:.5rem;border-radius:6px}
li{margin:.3rem 0}.sev{font-weight:600;text-transform:lowercase}
.actions{display:flex;gap:.75rem;flex-wrap:wrap;margin-top:1.5rem}
.actions form{margin:0}
a.button,button{font:inherit;padding:.55rem 1rem;border-radius:6px;border:1px solid #888;background:#fff;color:#1d1d1f;cursor:pointer;text-decoration:none}
a.primary{background:#1565c0;color:#fff;border-color:#1565c0}
small{color:#555}
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
    token: str | None,
    referer: str | None = None,
    scan_id: str | None = None,
) -> str:
    """The block page. ``reasons`` are (severity word, sentence) pairs; every string is escaped."""
    esc = html.escape
    items = "\n".join(
        f'<li><span class="sev">{esc(sev)}</span>: {esc(text)}</li>' for sev, text in reasons
    ) or "<li>This address is on a blocklist.</li>"
    what = esc(classification.replace("_", " ")) if classification and classification not in ("unknown", "benign") else "malicious"
    score = f" Risk score {risk_score:.0f}/100." if risk_score is not None else ""
    actions = [f'<a class="button primary" href="{esc(_back_href(referer), quote=True)}">Go back</a>']
    if token:
        tok = esc(token, quote=True)
        actions.append(
            f'<form method="post" action="{CONTROL_PREFIX}proceed">'
            f'<input type="hidden" name="token" value="{tok}">'
            '<button type="submit">Proceed once</button></form>'
        )
        actions.append(
            f'<form method="post" action="{CONTROL_PREFIX}allow">'
            f'<input type="hidden" name="token" value="{tok}">'
            '<button type="submit">Always allow this site</button></form>'
        )
    ref = f"<p><small>Scan {esc(scan_id)}</small></p>" if scan_id else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Blocked by MalwareSnipper</title>
<style>{_STYLE}</style></head>
<body><main>
<h1>MalwareSnipper blocked this page</h1>
<p>This page looks {what}.{esc(score)} It was stopped before it reached your browser.</p>
<p class="url">{esc(url)}</p>
<h2>Why</h2>
<ul>
{items}
</ul>
<div class="actions">
{chr(10).join(actions)}
</div>
<p><small>Proceed once lets this page through one time. Always allow adds the site to the
allowlist; you can remove it from the dashboard.</small></p>
{ref}
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
