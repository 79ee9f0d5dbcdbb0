"""Scanning responses: what to scan, reusing verdicts, waiting for them, acting on them.

* ``responseheaders``: the scan decision is made once, by :func:`~.scanplan.plan_scan`, the way
  the browser decides what to run or render (the request's ``Sec-Fetch-Dest``, the last valid
  ``Content-Type``, ``nosniff``): a ``<script src>`` is scanned as a script whatever type it
  claims, an HTML/SVG/XML document as a page, an ``<img>`` not at all. Bodies the browser will
  not run or render, or that are too large, are streamed through untouched (never buffered)
  and counted; one too large to hold is tapped and scanned after it passed (:mod:`.tapping`).
* ``response``: the same URL and bytes reuse a recent verdict, or share the scan in flight, while
  the lists are those it was computed under (:mod:`.recent`). Otherwise the body is scanned
  (:mod:`.submission`). In **monitor** mode the hook returns at once and the scan runs
  alongside. In **block** mode it waits for the verdict within the budget; a MALICIOUS page
  becomes the block page, a MALICIOUS script an inert script (:mod:`.replies`); a timeout or
  error lets the response through with an ``X-MalwareSnipper`` header saying so, unless
  ``fail_closed`` is set. A site whose scans keep timing out (or that floods the pool) is refused
  in block mode; when every worker is overloaded, responses pass unscanned (recorded).

In block mode every unscanned pass of something the browser will run or render is recorded with
its reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from mitmproxy import http

from ..engine.verdict import Verdict
from .flowurl import pretty_url
from . import pagenotice
from .lifecycle import Lifecycle, log_task_error
from .options import GatewayOptions
from .recent import RecentVerdicts
from .replies import HEADER, Replies
from .responses import body_looks_like_script, wants_buffering
from .scanplan import ScanPlan, depends_on_destination, header_values, is_nosniff, plan_scan
from .submission import FlowInfo, Outcome, Submissions
from .tapping import BigBodyTaps

log = logging.getLogger("malwaresnipper.gateway")

#: Scans waiting per worker beyond which responses pass unscanned (counted as overload): in all,
#: and of one site (which then overloads only itself: the pool serves sites in turn).
MAX_QUEUED_PER_WORKER = 200
MAX_QUEUED_PER_SITE_PER_WORKER = 25


class Scanning:
    """Scans responses and acts on the verdicts (see the module docstring)."""

    name = "malwaresnipper_scanning"

    def __init__(self, options: GatewayOptions, lifecycle: Lifecycle, replies: Replies) -> None:
        self.options = options
        self.lifecycle = lifecycle
        self.replies = replies
        self.recent = RecentVerdicts(options.effective.settings.proxy.dedupe_window_s if options.effective else 0.0)
        self.submissions = Submissions(options, lifecycle)
        self.taps = BigBodyTaps(options, self.submissions, replies)

    def configure(self, updated: set[str]) -> None:
        if self.options.effective is not None:
            self.recent.window_s = self.options.effective.settings.proxy.dedupe_window_s

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        eff = self.options.effective
        if eff is None or flow.response is None or flow.metadata.get("malwaresnipper_skip"):
            return
        declared = flow.response.headers.get("content-length")  # each lookup scans every header: look once
        length: int | None = None
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = None
        plan = _plan(flow)
        reason = wants_buffering(plan, length, eff.max_body_bytes)
        if reason is None:
            return
        flow.response.stream = True
        flow.metadata["malwaresnipper_skip"] = reason
        self.lifecycle.count(f"unscanned_{reason}")
        if reason == "too_large":
            log.info("malwaresnipper: %s streamed unscanned (%s bytes over the %d-byte cap)",
                     pretty_url(flow.request)[:300], length, eff.max_body_bytes)
            self.taps.tap(flow, plan)

    async def response(self, flow: http.HTTPFlow) -> None:
        eff = self.options.effective
        if eff is None or flow.response is None:
            return
        if self.taps.tapped(flow):
            self.lifecycle.spawn(self.taps.scan_tapped(flow, _plan(flow)))
            return
        if flow.metadata.get("malwaresnipper_skip"):
            return
        plan = _plan(flow)
        if flow.response.stream:  # switched to streaming by mitmproxy: it outgrew the cap
            self.lifecycle.count("unscanned_too_large")
            log.info("malwaresnipper: %s streamed unscanned (grew past the %d-byte cap)",
                     pretty_url(flow.request)[:300], eff.max_body_bytes)
            self.submissions.record_unscanned(pretty_url(flow.request), "too_large",
                                              f"grew past the {eff.max_body_bytes}-byte cap")
            return
        service = self.lifecycle.service
        if service is None:
            self._pass_without_service(flow)
            return
        resp, req = flow.response, flow.request
        raw = resp.raw_content
        if req.method == "HEAD" or not raw or resp.status_code in (204, 304):
            return
        url = pretty_url(req)
        # A body over the cap that arrived whole anyway (chunked, no Content-Length, mitmproxy 11
        # buffering it) is decoded as a stream and reduced (addon/bigbody.py), not skipped.
        blocking = eff.mode == "block" and not flow.metadata.get("malwaresnipper_pass")
        # the same bytes read as a page and as a script are different scans
        key = self.recent.key(f"{url}\x00{plan.signature}", raw)
        version = service.lists.version
        seen = self.recent.get(key, lists_version=version)
        if seen is not None:
            self.lifecycle.count("reused_verdict")
            if blocking:
                self._apply_verdict(flow, url, seen.kind, seen.verdict, seen.scan_id)
            return
        pending = self.recent.in_flight(key, lists_version=version)
        if pending is not None:  # the same bytes are being scanned right now: share that scan
            self.lifecycle.count("reused_scan")
            if blocking:
                await self._wait_and_apply(flow, url, pending, None, time.monotonic() + eff.budget_s)
            return
        info = FlowInfo.of(flow, plan, key)
        if blocking and self._refused(flow, url, req.host, plan):
            return
        if self._overloaded():
            # More scans waiting than the workers can clear: pass unscanned rather than queue
            # without bound (monitor) or make every response wait out its budget (block).
            self.lifecycle.count("unscanned_overload")
            if not eff.fail_closed:
                self.submissions.record_unscanned(url, "overload", "more scans waiting than the workers can clear")
            if eff.mode == "block" and not eff.fail_closed:
                resp.headers[HEADER] = "unscanned; reason=overload"
            if not (eff.mode == "block" and eff.fail_closed):
                return
        # Block mode: the response waits until this instant; with fail_closed it never passes
        # unjudged, so a later MALICIOUS verdict still counts as its block.
        deadline = time.monotonic() + eff.budget_s if blocking else None
        task = self._start_scan(info, raw, version, math.inf if blocking and eff.fail_closed else deadline)
        if deadline is not None:  # monitor mode (or a proceed-once pass): the response goes on now
            await self._wait_and_apply(flow, url, task, info, deadline)

    def _refused(self, flow: http.HTTPFlow, url: str, host: str, plan: ScanPlan) -> bool:
        """Block mode: refuse (and record) a response of a site whose scans keep timing out the
        scanner or flood it: waiting for one more would let it through on the budget or starve
        the pool."""
        service = self.lifecycle.service
        assert service is not None
        why, refusal = service.quarantined(url), "site_timeouts"
        if why is None and self._site_overloaded(host):
            why, refusal = "too many of this site's pages are waiting to be scanned", "site_overload"
        if why is None:
            return False
        self.lifecycle.count(f"blocked_{refusal}")
        log.warning("malwaresnipper: blocked %s: %s", url[:300], why)
        flow.response = self.replies.refusal(flow, url=url, kind="js" if body_looks_like_script(plan) else "html",
                                             reason=f"Not scanned: {why}; this gateway refuses its pages for now.")
        self.submissions.record_unscanned(url, refusal, why)
        return True

    def _workers(self) -> int:
        eff = self.options.effective
        return max(1, int(eff.settings.proxy.workers) if eff else 1)

    def _overloaded(self) -> bool:
        service = self.lifecycle.service
        return service is not None and service.queue_depth >= MAX_QUEUED_PER_WORKER * self._workers()

    def _site_overloaded(self, host: str) -> bool:
        """This response's own site has too many scans waiting: a site flooding the pool
        overloads itself only (the pool serves sites in turn), and must not win a pass by it."""
        service = self.lifecycle.service
        return service is not None and service.site_depth(host) >= MAX_QUEUED_PER_SITE_PER_WORKER * self._workers()

    def _pass_without_service(self, flow: http.HTTPFlow) -> None:
        """No scan service (starting, or failed with pass_unscanned): block mode's failure policy."""
        eff = self.options.effective
        assert eff is not None and flow.response is not None
        self.lifecycle.count("unscanned_no_service")
        if eff.mode != "block":
            return
        url = pretty_url(flow.request)
        if eff.fail_closed:
            self.lifecycle.count("fail_closed")
            flow.response = self.replies.refusal(
                flow, url=url, kind="html",
                reason="The scan service is not running, and this gateway blocks unscanned content.")
        else:
            flow.response.headers[HEADER] = "unscanned; reason=no_service"
        log.warning("malwaresnipper: %s %s: no scan service (%s)", url[:300],
                    "blocked" if eff.fail_closed else "passed unscanned", self.lifecycle.start_error or "not started")

    def _start_scan(self, info: FlowInfo, raw: bytes, version: int,
                    blocks_until: float | None) -> asyncio.Task[Outcome | None]:
        """Scan in a task, findable by its body key (and list version) while it runs; its verdict
        is remembered under the list version it was computed under."""
        async def scan() -> Outcome | None:
            outcome = await self.submissions.scan(info, raw, blocks_until=blocks_until)
            if outcome is not None and outcome.verdict is not None and info.key is not None:
                self.recent.put(info.key, outcome.kind, outcome.scan_id, outcome.verdict,
                                lists_version=outcome.lists_version)
            return outcome

        task = asyncio.create_task(scan())
        self.lifecycle.tasks.add(task)
        task.add_done_callback(self.lifecycle.tasks.discard)
        task.add_done_callback(log_task_error)
        if info.key is not None:
            self.recent.scanning(info.key, task, lists_version=version)
        return task

    async def _wait_and_apply(self, flow: http.HTTPFlow, url: str, task: asyncio.Task[Outcome | None],
                              info: FlowInfo | None, deadline: float) -> None:
        """Block mode: wait for ``task`` until ``deadline``, then block, pass, or fail open/closed."""
        eff = self.options.effective
        assert eff is not None and flow.response is not None
        try:
            outcome = await asyncio.wait_for(asyncio.shield(task), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            outcome = Outcome(error="timeout")
        except Exception:  # noqa: BLE001 - logged by the task's callback
            outcome = Outcome(error="error")
        if outcome is None:  # not HTML/JS, or not scannable: untouched
            return
        if outcome.error is None:
            assert outcome.verdict is not None
            self._apply_verdict(flow, url, outcome.kind, outcome.verdict, outcome.scan_id)
        elif eff.fail_closed:
            self.lifecycle.count("fail_closed")
            log.warning("malwaresnipper: %s blocked because its scan did not finish (%s) and fail_closed is set",
                        url[:300], outcome.error)
            flow.response = self.replies.refusal(
                flow, url=url, kind=outcome.kind, scan_id=outcome.scan_id,
                reason=f"The scan did not finish ({outcome.error}) and this gateway blocks unscanned content.")
        else:
            self.lifecycle.count("fail_open")
            log.warning("malwaresnipper: %s passed unscanned (%s)", url[:300], outcome.error)
            flow.response.headers[HEADER] = f"unscanned; reason={outcome.error}"
            self.lifecycle.spawn(self.submissions.record_pass(url, outcome, info))

    def _apply_verdict(self, flow: http.HTTPFlow, url: str, kind: str, verdict: Verdict, scan_id: str | None) -> None:
        """Block mode: replace a MALICIOUS page or script; mark anything else as scanned."""
        assert flow.response is not None
        eff = self.options.effective
        if verdict.is_malicious:
            self.lifecycle.count("blocked_script" if kind == "js" else "blocked_page")
            flow.response = self.replies.for_verdict(flow, url=url, kind=kind, verdict=verdict, scan_id=scan_id)
            if kind == "js":  # the page that loaded it shows its notice (addon/pagenotice.py)
                pagenotice.add_trigger(flow.response, flow.request.headers.get("referer"), url)
            log.warning("malwaresnipper: blocked %s %s (%s, risk %.1f)", "script" if kind == "js" else "page",
                        url[:300], verdict.classification, verdict.risk_score)
        elif not verdict.complete and eff is not None and eff.fail_closed:
            # an incomplete scan is a scan that partly failed: fail closed means refuse it
            self.lifecycle.count("fail_closed")
            flow.response = self.replies.refusal(
                flow, url=url, kind=kind, scan_id=scan_id, risk=verdict.risk_score,
                classification=verdict.classification,
                reason=("Not everything here could be analysed (" + "; ".join(verdict.incomplete_reasons)[:300]
                        + ") and this gateway blocks what it could not check."))
        else:
            flow.response.headers[HEADER] = (f"{verdict.threat_level.value}; risk={verdict.risk_score:.1f}"
                                             + ("" if verdict.complete else "; incomplete"))
            if kind == "html":  # a script of it may be replaced: arm the in-page notice
                pagenotice.inject(flow.response, url)


def _plan(flow: http.HTTPFlow) -> ScanPlan:
    """The scan decision for this flow (:func:`~.scanplan.plan_scan`), made once and kept.

    The first call also adds ``Vary: Sec-Fetch-Dest`` when another destination would be scanned
    differently, so the browser's cache cannot replay an unscanned body to a destination that
    would run it."""
    plan: Any = flow.metadata.get("malwaresnipper_plan")
    if plan is None:
        assert flow.response is not None
        fields = flow.response.headers.fields
        content_types = header_values(fields, b"content-type")
        nosniff = is_nosniff(header_values(fields, b"x-content-type-options"))
        plan = plan_scan(content_types, fetch_dest=flow.request.headers.get("sec-fetch-dest", ""), nosniff=nosniff,
                         accept=flow.request.headers.get("accept", ""), status=flow.response.status_code)
        flow.metadata["malwaresnipper_plan"] = plan
        if plan.reason == "image_error":  # planned from Accept: the browser's cache must key on it too
            vary = flow.response.headers.get("vary", "")
            if "accept" not in [v.strip().lower() for v in vary.split(",")] and vary.strip() != "*":
                flow.response.headers["vary"] = f"{vary}, Accept" if vary.strip() else "Accept"
        if "sec-fetch-dest" in flow.request.headers and depends_on_destination(content_types, nosniff=nosniff):
            vary = flow.response.headers.get("vary", "")
            if "sec-fetch-dest" not in vary.lower() and vary.strip() != "*":
                flow.response.headers["vary"] = f"{vary}, Sec-Fetch-Dest" if vary.strip() else "Sec-Fetch-Dest"
    return plan
