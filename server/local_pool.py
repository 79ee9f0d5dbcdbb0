"""A plain ``ProcessPoolExecutor`` behind the ScanPool interface.

Used only when ``malwaresnipper.server.scanner`` (the gateway's ScanPool with worker
replacement and live progress) cannot be imported. Progress here is collected in the worker and
delivered when the scan returns, and a stuck worker cannot be killed, only waited out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from ..engine.capture import Capture
from ..engine.config import EngineConfig
from ..engine.engine import Progress
from ..engine.verdict import Verdict


class ScanTimeout(Exception):
    """The scan took longer than the pool's timeout."""


class ScanFailed(Exception):
    """The worker could not produce a verdict."""


_ENGINE: Any = None
_LISTS: tuple[list[str], list[str]] | None = None


def _init_worker(config: EngineConfig) -> None:
    global _ENGINE
    from ..engine.engine import RiskEngine

    _ENGINE = RiskEngine(config)


def _scan_in_worker(capture: Capture, lists: tuple[list[str], list[str]] | None) -> tuple[dict[str, Any], list[Progress]]:
    global _LISTS
    if lists is not None and lists != _LISTS:
        _LISTS = lists
        for layer in _ENGINE.layers:
            update = getattr(layer, "update_lists", None)
            if update is not None:
                update(*lists)
    progress: list[Progress] = []
    verdict = _ENGINE.scan(capture, progress=progress.append)
    return verdict.to_dict(), progress


class LocalScanPool:
    """The ScanPool contract on a standard process pool (see module docstring)."""

    def __init__(self, engine_config: EngineConfig, *, workers: int = 2, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=max(1, workers), initializer=_init_worker, initargs=(engine_config,)
        )
        self._lists: tuple[list[str], list[str]] | None = None
        self._depth = 0

    @property
    def queue_depth(self) -> int:
        return self._depth

    def update_lists(self, allow: list[str], block: list[str]) -> None:
        self._lists = (list(allow), list(block))

    async def scan(self, capture: Capture, progress: Callable[[Progress], None] | None = None) -> Verdict:
        loop = asyncio.get_running_loop()
        self._depth += 1
        try:
            fut = loop.run_in_executor(self._executor, _scan_in_worker, capture, self._lists)
            try:
                data, steps = await asyncio.wait_for(fut, self.timeout_s)
            except asyncio.TimeoutError:
                raise ScanTimeout(f"scan exceeded {self.timeout_s:.1f} s") from None
            except Exception as exc:  # noqa: BLE001 - BrokenProcessPool, pickling, engine build
                raise ScanFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._depth -= 1
        if progress is not None:
            for step in steps:
                progress(step)
        return Verdict.from_dict(data)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
