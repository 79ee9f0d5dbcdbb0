"""From a response body to a scan in the service; and the record of what passed unscanned.

A scan of a flow: the body is decoded (content-encoding, charset: :mod:`.responses`), a
:class:`~malwaresnipper.engine.capture.Capture` built (a page with the scripts of it already seen,
a script with the page that loaded it: :mod:`.linking`) and submitted to the scan service, whose
verdict (or typed error) becomes an :class:`Outcome`. In block mode, every response the browser
will run or render that passes without a verdict leaves a record saying why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from mitmproxy import http

from ..engine.capture import Capture, Source, sha256_text
from ..engine.errors import CaptureError
from ..engine.verdict import ThreatLevel, Verdict
from ..server.scanner import ScanTimeout
from ..server.service import script_verdict
from .decode import BodyTooLarge, DecodeError
from .flowurl import pretty_url
from .lifecycle import Lifecycle
from .linking import PageLinker, PageRef
from .options import GatewayOptions
from .recent import BodyKey
from .replies import client_of
from .responses import DecodedBody, build_capture, decode_body
from .scanplan import FRAME_DESTS, ScanPlan, header_values

log = logging.getLogger("malwaresnipper.gateway")

#: Bodies above this size are decoded in a thread, not on the event loop.
THREAD_DECODE_BYTES = 256 * 1024
#: How long the record of a pass waits for its scan's id (the submission commits a record first).
SUBMIT_WAIT_S = 2.0


@dataclasses.dataclass(slots=True)
class FlowInfo:
    """What a scan needs from a flow, copied so the flow may move on (monitor mode)."""

    url: str
    client: str
    client_id: str
    referer: str | None
    fetch_dest: str
    content_type: str | None
    content_encoding: list[str]
    headers: list[tuple[str, str]]
    path: str
    plan: ScanPlan
    #: RecentVerdicts key of the raw body
    key: BodyKey | None = None
    #: the scan id once submitted, None when nothing was (block mode names the scan that goes on
    #: when it lets the response through before the verdict); set once, by :meth:`Submissions.scan`
    submitted: asyncio.Future[str | None] = dataclasses.field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    @classmethod
    def of(cls, flow: http.HTTPFlow, plan: ScanPlan, key: BodyKey | None = None) -> FlowInfo:
        req, resp = flow.request, flow.response
        assert resp is not None
        return cls(url=pretty_url(req), client=client_of(flow), client_id=flow.client_conn.id,
                   referer=req.headers.get("referer"), fetch_dest=req.headers.get("sec-fetch-dest", ""),
                   content_type=resp.headers.get("content-type"),
                   content_encoding=header_values(resp.headers.fields, b"content-encoding"),
                   headers=list(resp.headers.items(multi=True)), path=req.path, plan=plan, key=key)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """A scan's result for the flow: a verdict, or why there is none (``error``)."""

    kind: str = "html"
    scan_id: str | None = None
    verdict: Verdict | None = None
    error: str | None = None
    #: the list version the verdict was computed under
    lists_version: int = 0


class Submissions:
    """Scans of flows in the scan service, and records of unscanned passes."""

    def __init__(self, options: GatewayOptions, lifecycle: Lifecycle) -> None:
        self.options = options
        self.lifecycle = lifecycle
        self.linker = PageLinker()

    async def scan(self, info: FlowInfo, raw: bytes, *, blocks_until: float | None) -> Outcome | None:
        """Decode, build the capture, submit; the verdict or an error (None: nothing to scan).

        ``blocks_until``: until when the response waits for the verdict (see ScanService.submit)."""
        try:
            return await self._scan(info, raw, blocks_until=blocks_until)
        finally:
            if not info.submitted.done():  # nothing was submitted
                info.submitted.set_result(None)

    async def _scan(self, info: FlowInfo, raw: bytes, *, blocks_until: float | None) -> Outcome | None:
        eff = self.options.effective
        assert eff is not None
        count = self.lifecycle.count
        try:
            limits = eff.settings.engine.limits
            args: dict[str, Any] = dict(plan=info.plan, content_encoding=info.content_encoding, url_path=info.path,
                                        cap=eff.max_body_bytes, work_cap=eff.settings.proxy.max_decoded_bytes,
                                        keep_chars=max(limits.max_page_chars, limits.max_script_chars))
            if len(raw) > THREAD_DECODE_BYTES or info.content_encoding:
                body = await asyncio.to_thread(decode_body, raw, **args)
            else:
                body = decode_body(raw, **args)
        except BodyTooLarge as exc:
            count("unscanned_too_large")
            self.record_unscanned(info.url, "too_large", str(exc))
            return None
        except DecodeError as exc:
            count("unscanned_decode_error")
            log.warning("malwaresnipper: could not decode %s: %s; passed unscanned", info.url[:300], exc)
            self.record_unscanned(info.url, "decode_error", str(exc))
            return None
        if body is None:  # sniffed: not markup or script, so the browser does not run it
            count("unscanned_not_html_js")
            return None
        if body.truncations:
            count("decoded_partly")
            log.warning("malwaresnipper: %s: %s", info.url[:300], "; ".join(body.truncations))
        # A frame's page is known by its Referer only (its connection's latest page is itself).
        parent = (self.linker.page_for(referer=info.referer, client_id=None)
                  if body.kind == "html" and info.plan.dest in FRAME_DESTS else None)
        capture = self.capture(info, body)
        service = self.lifecycle.service
        if capture is None or service is None:
            return None
        count(f"scanned_{body.kind}")
        page = self.linker.page_for(referer=info.referer, client_id=info.client_id) if body.kind == "js" else None
        try:
            job = await service.submit(capture, method="PROXY", blocks_until=blocks_until,
                                       page_scan_id=page.scan_id if page else None)
        except Exception as exc:  # noqa: BLE001 - the store or the pool is unwell: traffic goes on
            log.warning("malwaresnipper: could not submit %s: %s", info.url[:300], exc)
            return Outcome(kind=body.kind, error="error")
        info.submitted.set_result(job.scan_id)
        if job.deduplicated:
            count("deduplicated")
        owner, kind = (page, "script") if page is not None else (parent, "frame")
        if owner is not None:
            self.lifecycle.spawn(self.link(owner, job.scan_id, kind, info.url, len(raw), _sha256(capture, body)))
        if body.kind == "html":
            self.linker.page_seen(info.url, info.client_id, job.scan_id)
        try:
            verdict = await job.verdict()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - ScanTimeout, ScanFailed: the record says which
            error = "timeout" if isinstance(exc, ScanTimeout) else "error"
            return Outcome(kind=body.kind, scan_id=job.scan_id, error=error, lists_version=job.lists_version)
        if body.kind == "js":
            self.linker.script_judged(info.url, script_verdict(capture, job.scan_id, verdict)
                                      if verdict.is_malicious else None)
        else:
            verdict = await self.fold_known_scripts(info, body.text, job.scan_id, verdict,
                                                    blocking=blocks_until is not None)
        self.log_verdict(info, body.kind, verdict, job.scan_id, page)
        return Outcome(kind=body.kind, scan_id=job.scan_id, verdict=verdict, lists_version=job.lists_version)

    async def fold_known_scripts(self, info: FlowInfo, html: str, scan_id: str, verdict: Verdict, *,
                                 blocking: bool) -> Verdict:
        """A page's verdict with the verdicts of its scripts already judged MALICIOUS (their texts
        were left out of its capture): re-judged in the service, so its record says so too; in
        block mode those scripts will be replaced, and the page is recorded "scripts blocked".
        A page MALICIOUS on its own is folded too: its record and block page name the scripts."""
        known = self.linker.malicious_scripts(html, info.url)
        service = self.lifecycle.service
        if not known or service is None:
            return verdict
        for script in known:
            try:
                folded = await service.fold_script(scan_id, script, blocked=blocking)
            except Exception:  # noqa: BLE001 - the page's own verdict stands; logged
                log.warning("malwaresnipper: could not fold script %s into page %s", script.url[:300],
                            info.url[:300], exc_info=True)
                continue
            if folded is not None:
                verdict = folded
        return verdict

    async def link(self, page: PageRef, scan_id: str, kind: str, url: str, size: int, sha256: str | None) -> None:
        """Record that ``page`` loaded this script or frame (in the background: history only)."""
        service = self.lifecycle.service
        page_scan_id = await page.wait_scan_id(SUBMIT_WAIT_S)
        if service is None or page_scan_id is None:
            return
        try:
            await service.link_resource(page_scan_id, scan_id, kind, url=url, size=size, sha256=sha256)
        except Exception:  # noqa: BLE001 - a link must never disturb traffic
            log.warning("malwaresnipper: could not link %s to its page %s", url[:300], page.url[:300], exc_info=True)

    def capture(self, info: FlowInfo, body: DecodedBody) -> Capture | None:
        """The capture of a decoded body (None, recorded, when it cannot be built)."""
        eff = self.options.effective
        assert eff is not None
        limits = eff.settings.engine.capture_limits()
        try:
            if body.kind == "html":
                self.linker.page_seen(info.url, info.client_id, None, info.submitted)
                return build_capture(info.url, body, headers=info.headers, content_type=info.content_type,
                                     limits=limits, known_scripts=self.linker.known_scripts(body.text, info.url))
            self.linker.script_seen(info.url, body.text)
            page = self.linker.page_for(referer=info.referer, client_id=info.client_id)
            return build_capture(info.url, body, headers=info.headers, content_type=info.content_type,
                                 limits=limits, page_url=page.url if page else None)
        except CaptureError as exc:
            self.lifecycle.count("unscanned_bad_capture")
            log.warning("malwaresnipper: cannot scan %s: %s", info.url[:300], exc)
            self.record_unscanned(info.url, "bad_capture", str(exc))
            return None

    def log_verdict(self, info: FlowInfo, kind: str, verdict: Verdict, scan_id: str, page: PageRef | None) -> None:
        if verdict.threat_level is ThreatLevel.BENIGN:
            log.debug("malwaresnipper: %s BENIGN (risk %.1f)", info.url[:300], verdict.risk_score)
            return
        top = verdict.indicators[0].title if verdict.indicators else ""
        where = f" loaded by page {page.url[:300]}" if kind == "js" and page else ""
        log.warning("malwaresnipper: %s %s%s %s (risk %.1f, %s; scan %s): %s",
                    "script" if kind == "js" else "page", info.url[:300], where, verdict.threat_level.value,
                    verdict.risk_score, verdict.classification, scan_id, top)

    def record_unscanned(self, url: str, reason: str, detail: str = "") -> asyncio.Task[None] | None:
        """Block mode: leave a trace of content the browser will run or render that passes unscanned
        (in the background; the task is returned for callers that are themselves background work)."""
        eff, service = self.options.effective, self.lifecycle.service
        if eff is None or eff.mode != "block" or service is None:
            return None

        async def record() -> None:
            try:
                await service.record_unscanned(Capture.build(url, source=Source.PROXY), reason, method="PROXY",
                                               detail=detail)
            except Exception:  # noqa: BLE001 - a record must never disturb traffic
                log.warning("malwaresnipper: could not record the unscanned pass of %s (%s)", url[:300], reason,
                            exc_info=True)

        return self.lifecycle.spawn(record())

    async def record_pass(self, url: str, outcome: Outcome, info: FlowInfo | None) -> None:
        """Block mode let a response through without its verdict: record that, naming the scan
        that goes on (once it is submitted) so the history links the two."""
        eff = self.options.effective
        scan_id = outcome.scan_id
        if scan_id is None and info is not None:
            try:  # the submission commits its record first: a moment, unless the store is slow
                scan_id = await asyncio.wait_for(asyncio.shield(info.submitted), SUBMIT_WAIT_S)
            except TimeoutError:
                scan_id = None
        budget = f"block budget {eff.budget_s * 1000:.0f} ms" if eff else "block budget"
        later = f"; its scan goes on as {scan_id}" if scan_id else ""
        await finished(self.record_unscanned(url, outcome.error or "error",
                                             f"the response passed before its verdict ({budget}){later}"))


def _sha256(capture: Capture, body: DecodedBody) -> str | None:
    """The resource's sha256 as the engine names it (a script's, as in its evidence), or the page text's."""
    if body.kind == "js" and capture.scripts:
        return capture.scripts[0].sha256
    return sha256_text(body.text)


async def finished(task: asyncio.Task[Any] | None) -> None:
    """Wait for a background task when there is one (background work waiting for its own)."""
    if task is not None:
        await asyncio.shield(task)
