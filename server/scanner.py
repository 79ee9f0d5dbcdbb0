"""ScanPool: the risk engine in worker processes, so no scan ever runs on an event loop.

Why not ``concurrent.futures.ProcessPoolExecutor``: a scan that hangs must be killed on its own,
and killing one executor worker breaks the whole executor (every pending future fails). Here each
worker process is owned by one thread of this process:

* the thread takes the next job from a shared queue, sends it down the worker's pipe, relays the
  worker's per-layer progress and the final verdict to the caller's event loop with
  ``loop.call_soon_threadsafe``, and goes back for the next job;
* when a scan runs past ``timeout_s`` the caller kills that worker; the thread sees the pipe close,
  starts a fresh worker (the engine is built once per worker, in the worker) and carries on;
* a worker that crashes on its own is replaced the same way and its scan is retried once on the
  new worker (a crash can be the machine's, not the content's); a capture that crashes a worker
  twice fails with :class:`ScanFailed`, so it cannot take down every worker in turn and the
  caller's flow goes on.

The allow/block lists the workers' reputation layers use arrive as a
:class:`~malwaresnipper.engine.lists.ListSnapshot` (:meth:`ScanPool.update_lists`), sent to each
worker before its next scan.

Fairness: waiting scans are queued per site (registrable domain) and served round-robin, and one
site never occupies more than ``workers - 1`` workers at once (with two workers or more). So a
site sending one slow page after another delays other sites' scans by one scan at most instead of
starving them (the issue this answers: one pathological page per second let every ordinary
phishing page through unscanned, because the pool was always busy with the slow site).

Workers are started with the ``spawn`` method: mitmproxy runs threads, and ``fork`` with threads
can deadlock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..engine.capture import Capture
from ..engine.config import EngineConfig
from ..engine.engine import Progress
from ..engine.lists import ListSnapshot
from ..engine.psl import registrable_domain
from ..engine.verdict import Verdict

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]

#: Added to the worker processes' niceness (see _worker_main).
WORKER_NICENESS = 5


class ScanError(Exception):
    """A scan that gave no verdict. Callers tell the kinds apart by type, never by name."""


class ScanTimeout(ScanError):
    """The scan took longer than the pool's timeout; its worker was killed and replaced.

    ``ran_s`` is how long it had been running in a worker (0 when it timed out still queued:
    then the wait, not the content, was slow).
    """

    def __init__(self, message: str, ran_s: float = 0.0) -> None:
        super().__init__(message)
        self.ran_s = ran_s


class ScanFailed(ScanError):
    """The worker died (twice on this capture) or the engine could not be built; the worker is replaced."""


# -- the worker process ------------------------------------------------------------------------


def _worker_main(conn: Connection, config: EngineConfig, lists: ListSnapshot | None) -> None:
    """Build the engine once, then answer scan requests until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the gateway, which stops us
    try:
        # Scans yield the CPU to the proxy's event loop: forwarding traffic comes first.
        os.nice(WORKER_NICENESS)
    except OSError:  # pragma: no cover - not permitted on some systems
        pass
    try:
        from ..engine.engine import RiskEngine
        from ..engine.layers import reputation

        engine = RiskEngine(config)
        if lists is not None:
            reputation.use_lists(lists)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which logs it
        conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        versions = dict(engine.model_versions)
    except Exception:  # noqa: BLE001 - versions are informative only
        versions = {}
    conn.send(("ready", os.getpid(), versions))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "stop":
            return
        if kind == "lists":
            reputation.use_lists(message[1])
            continue
        if kind == "scan":
            job_id, capture = message[1], message[2]

            def progress(p: Progress, job_id: int = job_id) -> None:
                conn.send(("progress", job_id, p.layer, p.done, p.total, p.partial_score))

            verdict = engine.scan(capture, progress=progress)
            conn.send(("result", job_id, verdict.to_dict()))


# -- the parent side ---------------------------------------------------------------------------


def relay(conn: Connection, job_id: int, on_progress: Callable[[Progress], None]) -> dict[str, Any]:
    """Read one job's messages from its worker until its result, which is returned.

    A layer's progress that a later message of the job has already overtaken in the pipe is
    folded into that message: every consumer of ``SCAN_UPDATE`` shows the latest layer only, and
    each update costs the proxy's event loop a wake-up, an event and a store row (a quick scan's
    six layers finish together). The last progress before the result is always delivered, in
    order, so a scan still reads STARTED, UPDATE, COMPLETE.
    """
    waiting: Progress | None = None
    while True:
        message = conn.recv()
        if message[0] == "progress" and message[1] == job_id:
            _, _, layer, done, total, partial = message
            waiting = Progress(layer, done, total, partial)
            if not conn.poll(0):
                on_progress(waiting)
                waiting = None
        elif message[0] == "result" and message[1] == job_id:
            if waiting is not None:
                on_progress(waiting)
            result: dict[str, Any] = message[2]
            return result


@dataclass
class _Job:
    job_id: int
    capture: Capture
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Verdict]
    progress: ProgressCallback | None
    #: set by the worker thread when it hands the job to a process
    worker: _Worker | None = None
    started: float = field(default_factory=time.monotonic)
    #: times a worker died under this job; one retry, then ScanFailed (a capture that crashes
    #: the engine must not take down every worker in turn)
    attempts: int = 0
    #: the site it is queued and counted under (see the module docstring)
    site: str = ""
    #: when a worker started it (0 while queued)
    run_started: float = 0.0


def site_of(url_host: str) -> str:
    """The site a scan counts against: the registrable domain, or the host itself (IPs, local names)."""
    host = url_host.strip("[]").rstrip(".").lower()
    return registrable_domain(host) or host


class _FairQueue:
    """Scans waiting for a worker, per site, served round-robin (see the module docstring)."""

    def __init__(self, per_site_running: int) -> None:
        self.per_site_running = per_site_running
        self._cond = threading.Condition()
        self._sites: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._running: Counter[str] = Counter()
        self._stops = 0

    def put(self, job: _Job, *, front: bool = False) -> None:
        with self._cond:
            queued = self._sites.setdefault(job.site, deque())
            if front:
                queued.appendleft(job)
            else:
                queued.append(job)
            self._cond.notify()

    def stop_one(self) -> None:
        """Wake one worker thread with None (the pool is closing)."""
        with self._cond:
            self._stops += 1
            self._cond.notify_all()

    def get(self) -> _Job | None:
        """The next job of the next site whose turn it is and that has a worker to spare."""
        with self._cond:
            while True:
                if self._stops:
                    self._stops -= 1
                    return None
                for site in list(self._sites):
                    if self._running[site] >= self.per_site_running:
                        continue
                    queued = self._sites[site]
                    job = queued.popleft()
                    if queued:
                        self._sites.move_to_end(site)  # its next scan waits for the other sites' turn
                    else:
                        del self._sites[site]
                    self._running[site] += 1
                    return job
                self._cond.wait()

    def done(self, job: _Job) -> None:
        """A job taken with :meth:`get` is finished (or handed back): its site has a worker again."""
        with self._cond:
            self._running[job.site] -= 1
            if self._running[job.site] <= 0:
                del self._running[job.site]
            self._cond.notify_all()

    def drain(self) -> list[_Job]:
        with self._cond:
            jobs = [job for queued in self._sites.values() for job in queued]
            self._sites.clear()
            return jobs


class _Worker:
    """One worker process and the thread that feeds it."""

    def __init__(self, pool: ScanPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.pid: int | None = None
        self.current: _Job | None = None
        self.lists_version = -1
        self.thread = threading.Thread(target=self._run, name=f"malwaresnipper-scan-{index}", daemon=True)

    # runs in the worker thread
    def _spawn(self) -> bool:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        lists_version = self.pool._lists_version  # read before the lists: a racing update is resent
        lists = self.pool._lists
        process = ctx.Process(
            target=_worker_main,
            args=(child, self.pool.engine_config, lists),
            name=f"malwaresnipper-worker-{self.index}",
            daemon=True,
        )
        try:
            process.start()
        except Exception as exc:  # noqa: BLE001 - e.g. an unguarded __main__ under spawn
            child.close()
            parent.close()
            log.error("could not start scan worker %d: %s", self.index, exc)
            self.pool._init_error = f"{type(exc).__name__}: {exc}"[:300]
            return False
        child.close()
        self.process, self.conn = process, parent
        self.lists_version = lists_version
        try:
            kind, value, *rest = parent.recv()
        except (EOFError, OSError):
            process.join(timeout=1)
            self.pool._init_error = (
                f"worker exited with code {process.exitcode} while starting (workers are spawned: "
                "the main script must be importable and guard its code with if __name__ == '__main__')"
            )
            if not self.pool._closing:
                log.error("scan worker %d died while starting: %s", self.index, self.pool._init_error)
            return False
        if kind != "ready":
            log.error("scan worker %d could not build the engine: %s", self.index, value)
            self.pool._init_error = str(value)
            return False
        self.pid = value
        if rest and rest[0]:
            self.pool.model_versions = dict(rest[0])
        log.info("scan worker %d ready (pid %d)", self.index, value)
        return True

    def _cleanup(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=5)
        self.process = self.conn = None
        self.pid = None

    def _run(self) -> None:
        failures = 0
        while not self.pool._closing:
            if self.process is None:
                if not self._spawn():
                    self._cleanup()
                    failures += 1
                    # An engine that cannot be built fails every queued scan instead of hanging.
                    self.pool._fail_queued(ScanFailed(f"scan worker could not start: {self.pool._init_error}"))
                    time.sleep(min(5.0, 0.2 * 2**failures))
                    continue
                failures = 0
            job = self.pool._jobs.get()
            if job is None:  # close() wakes every thread with None
                break
            try:
                if job.future.done():  # timed out or cancelled while queued
                    continue
                if not self._run_job(job):
                    self._cleanup()
            finally:
                self.pool._jobs.done(job)
        self._stop_process()

    def _run_job(self, job: _Job) -> bool:
        """Send one job and relay its messages; False when the process must be replaced."""
        assert self.conn is not None and self.process is not None
        try:
            if not self.process.is_alive():
                raise BrokenPipeError("worker is not running")
            if self.lists_version != self.pool._lists_version and self.pool._lists is not None:
                lists_version = self.pool._lists_version
                self.conn.send(("lists", self.pool._lists))
                self.lists_version = lists_version
            self.conn.send(("scan", job.job_id, job.capture))
        except (OSError, BrokenPipeError):
            # The worker died while idle: the job never reached it, so it waits for the next one.
            self.pool._jobs.put(job, front=True)
            return False
        self.current = job
        job.worker = self
        job.run_started = time.monotonic()
        try:
            result = relay(self.conn, job.job_id, lambda step: self.pool._deliver_progress(job, step))
            self.pool._resolve(job, result=result)
            return True
        except (EOFError, OSError, BrokenPipeError) as exc:
            code = None
            if self.process is not None:
                self.process.join(timeout=1)
                code = self.process.exitcode
            job.attempts += 1
            if job.future.done() or self.pool._closing:
                return False
            if job.attempts < 2:
                log.warning("scan worker %d died (exit code %s) with a scan of %s; replacing it and retrying",
                            self.index, code, job.capture.url[:200])
                self.pool._jobs.put(job, front=True)
            else:
                log.warning("scan worker %d died (exit code %s) during a scan of %s; replacing it",
                            self.index, code, job.capture.url[:200])
                self.pool._resolve(job, error=ScanFailed(f"scan worker died (exit code {code}): {exc!r}"))
            return False
        except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable capture: fail the job only
            log.exception("scan of %s failed", job.capture.url[:200])
            self.pool._resolve(job, error=ScanFailed(f"{type(exc).__name__}: {exc}"))
            return False
        finally:
            self.current = None

    def kill(self) -> None:
        """Kill the process (from any thread): its thread sees EOF and starts a new one."""
        process = self.process
        if process is not None and process.is_alive():
            process.kill()

    def _stop_process(self) -> None:
        if self.conn is not None:
            try:
                self.conn.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
        if self.process is not None:
            self.process.join(timeout=2)
        self._cleanup()


class ScanPool:
    """Runs ``RiskEngine.scan`` in ``workers`` processes; see the module docstring."""

    def __init__(self, engine_config: EngineConfig, *, workers: int = 2, timeout_s: float = 5.0) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.engine_config = engine_config
        self.timeout_s = timeout_s
        self._jobs = _FairQueue(per_site_running=max(1, workers - 1))
        self._workers = [_Worker(self, i) for i in range(workers)]
        self._ids = itertools.count(1)
        self._closing = False
        self._started = False
        self._lists: ListSnapshot | None = None
        #: bumped per update_lists: which lists each worker has is tracked by this count, not by
        #: the snapshot's version (a pool may outlive the service that numbered its snapshots)
        self._lists_version = 0
        self._init_error = ""
        self._in_flight = 0
        self._site_in_flight: Counter[str] = Counter()
        #: the models the workers loaded (name -> version), known once a worker is ready
        self.model_versions: dict[str, str] = {}
        self.completed = 0
        self.timeouts = 0
        self.failures = 0

    def start(self) -> None:
        """Start the worker processes now (otherwise the first scan starts them)."""
        if self._started:
            return
        self._started = True
        for worker in self._workers:
            worker.thread.start()

    @property
    def queue_depth(self) -> int:
        """Scans waiting for a worker or running."""
        return self._in_flight

    def site_depth(self, host: str) -> int:
        """Scans of this host's site waiting for or running in a worker."""
        return self._site_in_flight.get(site_of(host), 0)

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None]

    async def scan(self, capture: Capture, progress: ProgressCallback | None = None) -> Verdict:
        """The verdict for ``capture``; raises ScanTimeout or ScanFailed (the pool stays usable)."""
        if self._closing:
            raise ScanFailed("the scan pool is closed")
        self.start()
        loop = asyncio.get_running_loop()
        job = _Job(next(self._ids), capture, loop, loop.create_future(), progress, site=site_of(capture.host))
        self._in_flight += 1
        self._site_in_flight[job.site] += 1
        self._jobs.put(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout=self.timeout_s)
        except TimeoutError:
            self.timeouts += 1
            if not job.future.done():
                job.future.cancel()
            worker = job.worker
            ran_s = 0.0
            if worker is not None and worker.current is job:
                ran_s = time.monotonic() - job.run_started
                log.warning("scan of %s exceeded %.1f s; killing worker %d", capture.url[:200], self.timeout_s, worker.index)
                worker.kill()
            raise ScanTimeout(f"scan exceeded {self.timeout_s:.1f} s ({ran_s:.1f} s of it running)", ran_s) from None
        except ScanFailed:
            self.failures += 1
            raise
        finally:
            self._in_flight -= 1
            self._site_in_flight[job.site] -= 1
            if self._site_in_flight[job.site] <= 0:
                del self._site_in_flight[job.site]

    def update_lists(self, snapshot: ListSnapshot) -> None:
        """Give every worker this snapshot of the API-managed lists (before its next scan)."""
        self._lists = snapshot
        self._lists_version += 1

    async def close(self) -> None:
        """Stop the workers; queued scans fail with ScanFailed."""
        if self._closing:
            return
        self._closing = True
        self._fail_queued(ScanFailed("the scan pool is closing"))
        for _ in self._workers:
            self._jobs.stop_one()
        if self._started:
            threads = [w.thread for w in self._workers]
            await asyncio.get_running_loop().run_in_executor(None, _join_all, threads, 10.0)
        for worker in self._workers:
            worker._cleanup()

    # -- called from worker threads -----------------------------------------------------------

    def _fail_queued(self, error: Exception) -> None:
        for job in self._jobs.drain():
            self._resolve(job, error=error)

    def _deliver_progress(self, job: _Job, progress: Progress) -> None:
        if job.progress is None:
            return

        def call() -> None:
            if not job.future.done() and job.progress is not None:
                try:
                    job.progress(progress)
                except Exception:  # noqa: BLE001
                    log.exception("progress callback failed")

        _call_soon(job.loop, call)

    def _resolve(self, job: _Job, *, result: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        def set_result() -> None:
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
                return
            try:
                job.future.set_result(Verdict.from_dict(result or {}))
                self.completed += 1
            except Exception as exc:  # noqa: BLE001
                job.future.set_exception(ScanFailed(f"bad verdict from worker: {exc!r}"))

        _call_soon(job.loop, set_result)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))
