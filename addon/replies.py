"""The gateway's own answers, in place of what a site sent: the block page, an inert script, a notice.

Every addon that refuses something answers through here, so a refusal looks the same whoever made
it: a page the browser renders gets the block page (:mod:`.blockpage`), a script it runs gets an
inert script, and both say so in the ``X-MalwareSnipper`` header. The block page offers ways past
it (:mod:`.bypass`) only to a page the user navigated to, and "always allow" only when no
blocklist of the user's made the block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from mitmproxy import http

from ..engine.explain import user_reasons
from ..engine.verdict import Verdict
from ..server.alert_formats import dashboard_link
from . import blockpage
from .blockpage import BypassLinks
from .bypass import BypassTokens

HEADER = "X-MalwareSnipper"


class Replies:
    """Builds the responses that replace a site's (see the module docstring)."""

    def __init__(self, bypass: BypassTokens) -> None:
        self.bypass = bypass
        #: The dashboard's base URL ('' while the API is not running): the block page links its scan there.
        self.dashboard: Callable[[], str] = str

    def block_page(self, flow: http.HTTPFlow, *, url: str, reasons: list[tuple[str, str]],
                   risk: float | None = None, classification: str | None = None, scan_id: str | None = None,
                   may_allow: bool = True, technical: Sequence[tuple[str, str]] = ()) -> http.Response:
        """The block page; ways past it only for a page the user navigated to (not for a script's
        ``fetch()`` of it), and "always allow" only when ``may_allow``."""
        links = None
        if top_level_navigation(flow.request):
            block_id = self.bypass.record_block(url, client_of(flow), reasons=tuple(t for _, t in reasons),
                                                may_allow=may_allow, scan_id=scan_id)
            links = BypassLinks(block_id, may_allow, may_report=scan_id is not None)
        page = blockpage.render_block_page(
            url=url, reasons=reasons, risk_score=risk, classification=classification, links=links,
            referer=flow.request.headers.get("referer"), scan_id=scan_id, technical=technical,
            scan_href=dashboard_link(self.dashboard(), scan_id) if scan_id else None,
        )
        headers = dict(blockpage.PAGE_HEADERS)
        headers[HEADER] = "blocked" + (f"; scan={scan_id}" if scan_id else "")
        return http.Response.make(403, page.encode("utf-8"), headers)

    def refusal(self, flow: http.HTTPFlow, *, url: str, kind: str, reason: str, scan_id: str | None = None,
                risk: float | None = None, classification: str | None = None) -> http.Response:
        """What replaces content this gateway will not pass unchecked: an inert script for a
        script (``kind`` "js"), else the block page giving ``reason``."""
        if kind == "js":
            return inert_script(url, [reason], scan_id)
        return self.block_page(flow, url=url, reasons=[("unscanned", reason)], risk=risk,
                               classification=classification, scan_id=scan_id)

    def for_verdict(self, flow: http.HTTPFlow, *, url: str, kind: str, verdict: Verdict,
                    scan_id: str | None) -> http.Response:
        """The replacement of a MALICIOUS page or script. A page blocked by the user's own
        blocklist is not offered "always allow" (an allowlist entry must not undo it)."""
        reasons = verdict_reasons(verdict)
        if kind == "js":
            return inert_script(url, [t for _, t in reasons], scan_id)
        by_own_list = any(i.id.startswith("reputation.blocklisted") for i in verdict.indicators)
        return self.block_page(flow, url=url, reasons=reasons, risk=verdict.risk_score,
                               classification=verdict.classification, scan_id=scan_id, may_allow=not by_own_list,
                               technical=technical_details(verdict))


def inert_script(url: str, reasons: list[str], scan_id: str | None) -> http.Response:
    """A script that runs nothing and says in the console why the real one was blocked."""
    body = blockpage.inert_script(url=url, reasons=reasons, scan_id=scan_id)
    return http.Response.make(200, body.encode("utf-8"), {
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        HEADER: "blocked" + (f"; scan={scan_id}" if scan_id else ""),
    })


def notice(status: int, title: str, message: str) -> http.Response:
    """One of the gateway's own pages (the control origin's answers)."""
    return http.Response.make(status, blockpage.render_notice(title, message).encode("utf-8"),
                              blockpage.PAGE_HEADERS)


def verdict_reasons(verdict: Verdict, limit: int = 5) -> list[tuple[str, str]]:
    """The findings a user reads as reasons (:func:`~malwaresnipper.engine.explain.user_reasons`:
    no known library's code, no context) as (severity, sentence), naming the script when the
    evidence is in one."""
    out = []
    for ind in user_reasons(verdict.indicators, verdict.threat_level.value, limit):
        where = next((e.location for e in ind.evidence if e.location.startswith("script") and "://" in e.location), "")
        out.append((ind.severity.name.lower(), ind.title + (f" (in {where})" if where else "")))
    return out


#: Findings whose evidence is a form's target, and a hidden frame's address.
_FORM_TARGET = ("dom.form_action", "dom.form_insecure_post")
_HIDDEN_FRAME = ("dom.hidden_iframe",)


def _host(text: str) -> str:
    try:
        return urlsplit(text.strip()).hostname or text.strip()
    except ValueError:
        return text.strip()


def technical_details(verdict: Verdict, limit: int = 40) -> list[tuple[str, str]]:
    """The block page's "Technical details": what an analyst needs to check the verdict (rendered
    escaped: every value here comes from the page)."""
    rows: list[tuple[str, str]] = [("Verdict", f"{verdict.threat_level.value}, risk {verdict.risk_score:.1f}, "
                                               f"{verdict.classification}")]
    for script in verdict.scripts:  # first: the limit must not cut what the page ran
        if script.get("url") and not script.get("inline"):
            rows.append(("Script", f"{script['url']} sha256 {script.get('sha256') or 'unknown'}"))
    for ind in verdict.indicators:  # scripts judged before, left out of the page's capture
        if ind.id == "engine.malicious_script":
            where = {e.location: e.snippet for e in ind.evidence}
            sha = where.get("script sha256", "").removeprefix("sha256 ") or "unknown"
            row = ("Script", f"{where.get('script url', '')} sha256 {sha}")
            if where.get("script url") and row not in rows:
                rows.append(row)
    for ind in verdict.indicators:
        if ind.strength == "context" and ind.category == "known_code":
            rows.append(("Known code", ind.title))
            continue
        rows.append(("Finding", f"{ind.id} ({ind.severity.name.lower()}, {ind.strength})"))
        if ind.id == "engine.malicious_script":  # its URL and hash are a "Script" row above
            rows.extend(("Script's own scan" if e.location == "script scan" else "Script's finding", e.snippet)
                        for e in ind.evidence if e.location == "script scan" or e.location.startswith("script http"))
            continue
        # Where, not what: the page's own code and text stay off the page that replaced it (the
        # snippets are in the dashboard's record); only the hosts an analyst looks up are drawn out.
        for ev in ind.evidence[:3]:
            if ind.id.startswith(_FORM_TARGET):
                rows.append(("Form sends to", _host(ev.snippet)))
            elif ind.id.startswith(_HIDDEN_FRAME):
                rows.append(("Hidden frame host", _host(ev.snippet)))
            if ev.location:
                rows.append(("Found in", ev.location[:300]))
    return rows[:limit]


def top_level_navigation(req: http.Request) -> bool:
    """A page the user opens in a tab, as far as the browser says (``Sec-Fetch-*`` are sent to
    https origins; a script's ``fetch()`` or an iframe never passes for one). Without the headers
    (plain http, non-browser clients) nothing tells, and the answer is yes."""
    mode = req.headers.get("sec-fetch-mode")
    dest = req.headers.get("sec-fetch-dest")
    if mode is None and dest is None:
        return True
    return mode == "navigate" and dest == "document"


def client_of(flow: http.HTTPFlow) -> str:
    """The client's address (what bypass tokens and passes are bound to)."""
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else ""
