"""For the addon tests: running mitmproxy hooks as mitmproxy does, and an idle scan pool.

mitmproxy calls a hook on every addon of a chain in order, sub-addons (an addon's ``addons``
list) included: the gateway is such a list, so its tests call hooks through the addon manager,
inside a taddons context.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from mitmproxy import ctx, hooks, http
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHeadersHook, HttpResponseHook

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.engine import RiskEngine
from malwaresnipper.engine.layers import reputation
from malwaresnipper.engine.lists import ListSnapshot
from malwaresnipper.engine.verdict import Verdict


class IdlePool:
    """A pool that is never asked to scan (the lifecycle, control and policy tests need running
    services, not scans; the scanning tests use real engines)."""

    queue_depth = 0

    def __init__(self) -> None:
        self.started = self.closed = False
        self.snapshots: list[Any] = []

    def start(self) -> None:
        self.started = True

    def update_lists(self, snapshot: Any) -> None:
        self.snapshots.append(snapshot)

    async def scan(self, capture: Any, progress: Any = None) -> Any:
        raise AssertionError("the idle pool was asked to scan")

    async def close(self) -> None:
        self.closed = True


@lru_cache(maxsize=1)
def default_engine() -> RiskEngine:
    """The default engine (ML layer included), built once for the test process."""
    return RiskEngine()


class EnginePool:
    """The real default engine as a pool, run in this process (in a thread): a test can hold scans
    at a gate or make the next ones fail, so what happens while a response waits is deterministic.
    The lists it is given are the reputation layer's in this process (reset when it closes)."""

    timeout_s = 5.0

    def __init__(self) -> None:
        self.engine = default_engine()
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: BaseException | None = None
        self.scanned: list[str] = []
        self.queue_depth = 0

    def start(self) -> None:
        pass

    def site_depth(self, host: str) -> int:
        return 0

    def update_lists(self, snapshot: ListSnapshot) -> None:
        reputation.use_lists(snapshot)

    async def scan(self, capture: Capture, progress: Any = None) -> Verdict:
        self.queue_depth += 1
        try:
            await self.gate.wait()
            if self.error is not None:
                raise self.error
            self.scanned.append(capture.url)
            return await asyncio.to_thread(self.engine.scan, capture)
        finally:
            self.queue_depth -= 1

    async def close(self) -> None:
        reputation.use_lists(ListSnapshot())


class Chain:
    """Some of the gateway's addons in one list, as mitmproxy runs them (the hooks below run
    every addon of the chain in order)."""

    name = "test_chain"

    def __init__(self, *addons: Any) -> None:
        self.addons = list(addons)


async def running(addon: Any) -> None:
    await ctx.master.addons.invoke_addon(addon, hooks.RunningHook())


async def done(addon: Any) -> None:
    await ctx.master.addons.invoke_addon(addon, hooks.DoneHook())


async def request(addon: Any, flow: http.HTTPFlow) -> None:
    await ctx.master.addons.invoke_addon(addon, HttpRequestHook(flow))


def responseheaders(addon: Any, flow: http.HTTPFlow) -> None:
    ctx.master.addons.invoke_addon_sync(addon, HttpResponseHeadersHook(flow))


async def response(addon: Any, flow: http.HTTPFlow) -> None:
    await ctx.master.addons.invoke_addon(addon, HttpResponseHook(flow))


async def through(addon: Any, flow: http.HTTPFlow, body: bytes, headers: dict[str, str]) -> http.HTTPFlow:
    """Run the request, responseheaders and response hooks as mitmproxy would, with an upstream
    answer of ``body`` (as sent on the wire) and ``headers``."""
    await request(addon, flow)
    if flow.response is not None:  # answered at request time
        return flow
    flow.response = http.Response.make(200, b"", headers)
    flow.response.raw_content = body  # as sent on the wire (make() would encode it again)
    responseheaders(addon, flow)
    if not flow.response.stream:
        await response(addon, flow)
    return flow
