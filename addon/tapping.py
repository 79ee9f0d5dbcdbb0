"""Pages and scripts too large to hold: tapped as they stream, scanned once they have passed.

Block mode cannot wait for such a body (it says so in the ``X-MalwareSnipper`` header), so the
tap keeps its head and tail (:class:`~.bigbody.StreamTap`) and the scan runs after delivery; the
history gets the verdict (incomplete when part of the body was not seen, so never BENIGN) and
that it was not blocked. With ``fail_closed`` the body is replaced instead, by the block page or
an inert script.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from mitmproxy import http

from .bigbody import StreamTap
from .decode import DecodeError
from .flowurl import pretty_url
from .options import GatewayOptions
from .replies import HEADER, Replies
from .responses import body_looks_like_script, decode_body
from .scanplan import ScanPlan
from .submission import FlowInfo, Submissions, finished

log = logging.getLogger("malwaresnipper.gateway")

TAP = "malwaresnipper_tap"


class BigBodyTaps:
    """Taps and after-delivery scans of bodies too large to hold (see the module docstring)."""

    def __init__(self, options: GatewayOptions, submissions: Submissions, replies: Replies) -> None:
        self.options = options
        self.submissions = submissions
        self.replies = replies

    def tap(self, flow: http.HTTPFlow, plan: ScanPlan) -> None:
        """Stream ``flow``'s body through a tap, or, with ``fail_closed``, replace it."""
        eff = self.options.effective
        assert eff is not None and flow.response is not None
        url = pretty_url(flow.request)
        headers = flow.response.headers
        encoded = bool(headers.get("content-encoding", "").strip().lower() not in ("", "identity"))
        replacement: bytes | None = None
        if eff.mode == "block" and eff.fail_closed and not flow.metadata.get("malwaresnipper_pass"):
            reason = (f"The response is larger than this gateway scans before delivery ({eff.max_body_bytes} bytes) "
                      "and this gateway blocks what it cannot check.")
            kind = "js" if body_looks_like_script(plan) else "html"
            blocked = self.replies.refusal(flow, url=url, kind=kind, reason=reason)
            replacement = blocked.raw_content or b""
            self.submissions.lifecycle.count("fail_closed")
            log.warning("malwaresnipper: %s blocked: too large to scan before delivery and fail_closed is set", url[:300])
            flow.response = blocked
        elif eff.mode == "block":
            headers[HEADER] = "unscanned; reason=too_large"
        limits = eff.settings.engine.limits
        tap = StreamTap(head_bytes=eff.max_body_bytes, tail_bytes=max(limits.max_page_chars, limits.max_script_chars) // 4,
                        encoded=encoded, replacement=replacement)
        flow.response.stream = tap
        flow.metadata[TAP] = tap

    def tapped(self, flow: http.HTTPFlow) -> bool:
        return isinstance(flow.metadata.get(TAP), StreamTap)

    async def scan_tapped(self, flow: http.HTTPFlow, plan: ScanPlan) -> None:
        """Scan what the tap kept of a body that streamed through (see the module docstring)."""
        eff, subs = self.options.effective, self.submissions
        tap = flow.metadata.get(TAP)
        service = subs.lifecycle.service
        if eff is None or service is None or not isinstance(tap, StreamTap) or flow.response is None:
            return
        url = pretty_url(flow.request)
        if tap.replacement is not None:  # refused (fail_closed): nothing went on, nothing to judge
            await finished(subs.record_unscanned(url, "too_large",
                                                 "refused: too large to scan before delivery, and fail_closed is set"))
            return
        raw, note = tap.seen()
        info = FlowInfo.of(flow, plan)
        limits = eff.settings.engine.limits
        try:
            body = await asyncio.to_thread(
                decode_body, raw, plan=plan, content_encoding=info.content_encoding, url_path=info.path,
                cap=0, work_cap=eff.settings.proxy.max_decoded_bytes,
                keep_chars=max(limits.max_page_chars, limits.max_script_chars))
        except DecodeError as exc:
            await finished(subs.record_unscanned(url, "too_large", f"{note or 'too large to hold'}; not decodable: {exc}"))
            return
        if body is None:
            return
        if note:
            body = dataclasses.replace(body, truncations=body.truncations + (note,))
        capture = subs.capture(info, body)
        if capture is None:
            return
        subs.lifecycle.count(f"scanned_{body.kind}_after_delivery")
        try:
            job = await service.submit(capture, method="PROXY")
            verdict = await job.verdict()
        except Exception as exc:  # noqa: BLE001 - the record says what happened
            log.warning("malwaresnipper: could not scan the streamed body of %s: %s", url[:300], exc)
            return
        subs.log_verdict(info, body.kind, verdict, job.scan_id, None)
