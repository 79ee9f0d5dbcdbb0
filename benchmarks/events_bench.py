"""Event-stream figures on a real ``malwaresnipper serve`` (loopback only, bounded in time).

1. Latency: small-page captures POSTed one at a time; the time from sending the POST to the
   SCAN_COMPLETE arriving at each of 10 connected websockets clients (p50/p99 over all
   client-arrivals, and of the slowest client per scan).
2. Throughput: captures POSTed open-loop at a target rate for a fixed time; the sustained rate is
   completions per second at the clients, and "lost" counts SCAN_COMPLETEs some client never got
   plus gaps in any client's ``seq``.

Goals on the 2-core dev machine: p50 <= 25 ms, 200 captures/s with zero lost events.

With ``--backend redis`` the same measurements then run on two gateways sharing one Redis Stream
(a redis-server the benchmark starts) and one PostgreSQL database (created from
``--postgres-dsn``): captures alternate between the gateways and the event clients are spread
over both, so every client must receive every gateway's events.

    python3 benchmarks/events_bench.py [--latency-n 200] [--rates 100,200,300] [--seconds 8]
    python3 benchmarks/events_bench.py --backend redis   # in-process and Redis side by side
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

SEQ = re.compile(r'"seq":(\d+)')
SCAN = re.compile(r'"scan_id":"([0-9a-f]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page(i: int, tag: str) -> dict:
    return {
        "url": f"https://bench{tag}.example.com/item/{i}",
        "title": f"Item {i}",
        "html": f"<html><head><title>Item {i}</title></head><body><h1>Item {i}</h1>"
                "<p>A small ordinary page with a paragraph and a link.</p><a href='/next'>next</a></body></html>",
        "scripts": [{"text": f"var item = {i}; document.title = 'Item ' + item;", "inline": True}],
    }


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process and its reaped children, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(fields[i]) for i in (11, 12)) / ticks
    except (OSError, IndexError, ValueError):
        return float("nan")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # workers are spawned from worker threads
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Client:
    """A websockets client that timestamps every SCAN_COMPLETE and checks seq continuity."""

    def __init__(self) -> None:
        self.complete_at: dict[str, float] = {}
        self.last_seq = 0
        self.gaps = 0
        self.closed_code: int | None = None
        self.waiters: dict[str, asyncio.Event] = {}

    async def run(self, url: str, token: str) -> None:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**24,
                           compression=None) as ws:
            await ws.send(json.dumps({"type": "hello", "last_seq": None}))
            snapshot = json.loads(await ws.recv())
            self.last_seq = snapshot["seq"]
            self.ready.set()
            try:
                async for message in ws:
                    now = time.perf_counter()
                    text = message if isinstance(message, str) else message.decode()
                    m = SEQ.search(text)
                    if m is None:
                        continue  # lists_changed
                    seq = int(m.group(1))
                    if seq != self.last_seq + 1:
                        self.gaps += 1
                    self.last_seq = seq
                    if '"status":"SCAN_COMPLETE"' in text:
                        found = SCAN.search(text)
                        if found is None:
                            continue
                        scan_id = found.group(1)
                        self.complete_at[scan_id] = now
                        ev = self.waiters.get(scan_id)
                        if ev is not None:
                            ev.set()
            finally:
                self.closed_code = ws.close_code

    def start(self, url: str, token: str) -> asyncio.Task:
        self.ready = asyncio.Event()
        return asyncio.create_task(self.run(url, token))


async def latency(bases: list[str], headers: dict, clients: list[Client], n: int) -> dict:
    arrivals: list[float] = []
    slowest: list[float] = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            t0 = time.perf_counter()
            async with s.post(bases[i % len(bases)] + "/api/v1/scans", json=page(i, "lat"), headers=headers) as resp:
                scan_id = (await resp.json())["scan_id"]
            events = []
            for c in clients:
                ev = asyncio.Event()
                c.waiters[scan_id] = ev
                if scan_id in c.complete_at:
                    ev.set()
                events.append(ev)
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 30)
            times = [(c.complete_at[scan_id] - t0) * 1000 for c in clients]
            arrivals += times
            slowest.append(max(times))
    return {"n": n, "p50_ms": pct(arrivals, 0.5), "p99_ms": pct(arrivals, 0.99),
            "slowest_client_p50_ms": pct(slowest, 0.5), "slowest_client_p99_ms": pct(slowest, 0.99)}


async def throughput(bases: list[str], headers: dict, clients: list[Client], rate: float, seconds: float,
                     tag: str) -> dict:
    ids: list[str] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def post(i: int) -> None:
            nonlocal errors
            try:
                async with s.post(bases[i % len(bases)] + "/api/v1/scans", json=page(i, f"{tag}{int(rate)}"),
                                  headers=headers) as resp:
                    if resp.status == 202:
                        ids.append((await resp.json())["scan_id"])
                    else:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1

        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        sent_s = time.perf_counter() - start
    # Wait for the completions to drain (bounded).
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if all(all(i in c.complete_at for i in ids) for c in clients):
            break
        await asyncio.sleep(0.05)
    last = max((max(c.complete_at.get(i, 0) for i in ids) for c in clients), default=start)
    missing = sum(1 for c in clients for i in ids if i not in c.complete_at)
    elapsed = last - start
    return {"target_rate": rate, "accepted": len(ids), "http_errors": errors, "post_phase_s": round(sent_s, 2),
            "completed_per_s": round(len(ids) / elapsed, 1) if elapsed > 0 else 0.0,
            "drain_lag_s": round(last - start - sent_s, 2),
            "lost_completes": missing, "seq_gaps": sum(c.gaps for c in clients),
            "clients_closed": sum(1 for c in clients if c.closed_code is not None)}


class Deployment:
    """One or more ``malwaresnipper serve`` processes started from config texts."""

    def __init__(self, name: str, configs: list[str], profile: str | None = None) -> None:
        self.name = name
        self.procs: list[subprocess.Popen] = []
        self.bases: list[str] = []
        self.events_urls: list[str] = []
        self.logs = []
        for n, config in enumerate(configs):
            home = Path(tempfile.mkdtemp(prefix=f"ms-events-bench-{name}{n}-"))
            api_port, events_port = free_port(), free_port()
            (home / "malwaresnipper.toml").write_text(config)
            env = dict(os.environ, MALWARESNIPPER_HOME=str(home), MALWARESNIPPER_TOKEN="bench-token")
            log = open(home / "gateway.log", "wb")  # noqa: SIM115 - the gateway writes it until stop() closes it
            prof = ["-m", "cProfile", "-o", f"{profile}.{name}{n}"] if profile else []
            self.procs.append(subprocess.Popen(
                [sys.executable, *prof, "-m", "malwaresnipper.cli.main", "serve",
                 "--config", str(home / "malwaresnipper.toml"),
                 "--api-port", str(api_port), "--events-port", str(events_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT))
            self.logs.append(log)
            self.bases.append(f"http://127.0.0.1:{api_port}")
            self.events_urls.append(f"ws://127.0.0.1:{events_port}/")
        for base in self.bases:
            for _ in range(600):
                try:
                    urllib.request.urlopen(base + "/api/v1/health", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds of the gateway processes and of their scan workers."""
        return (sum(cpu_seconds(p.pid) for p in self.procs),
                sum(cpu_seconds(c) for p in self.procs for c in children(p.pid)))

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in self.logs:
            log.close()


async def measure(dep: Deployment, args: argparse.Namespace) -> None:
    headers = {"Authorization": "Bearer bench-token"}
    clients = [Client() for _ in range(args.clients)]
    # Clients spread over the gateways: each must see every gateway's events.
    tasks = [c.start(dep.events_urls[i % len(dep.events_urls)], "bench-token") for i, c in enumerate(clients)]
    await asyncio.gather(*(c.ready.wait() for c in clients))
    # Warm up the workers (engine built, models loaded).
    async with aiohttp.ClientSession() as s:
        for i in range(20):
            base = dep.bases[i % len(dep.bases)]
            async with s.post(base + "/api/v1/scans?wait=true", json=page(i, f"warm{dep.name}"), headers=headers) as r:
                await r.read()
    print(f"[{dep.name}] {len(dep.procs)} gateway(s), {args.clients} event clients spread over them")
    lat = await latency(dep.bases, headers, clients, args.latency_n)
    print(f"[{dep.name}] latency POST -> SCAN_COMPLETE at each client: "
          f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
          f"(slowest of {args.clients} clients: p50 {lat['slowest_client_p50_ms']:.1f} ms, "
          f"p99 {lat['slowest_client_p99_ms']:.1f} ms; n={lat['n']})")
    for rate in [float(r) for r in args.rates.split(",") if r]:
        gw0, workers0 = dep.cpu()
        me0 = time.process_time()
        res = await throughput(dep.bases, headers, clients, rate, args.seconds, dep.name)
        n = max(1, res["accepted"])
        gw1, workers1 = dep.cpu()
        gw_ms, workers_ms = (gw1 - gw0) * 1000 / n, (workers1 - workers0) * 1000 / n
        me_ms = (time.process_time() - me0) * 1000 / n
        workers_txt = f"{workers_ms:.2f} ms" if workers_ms >= 0 else "n/a (a worker was replaced)"
        print(f"[{dep.name}]   CPU per capture: gateway processes {gw_ms:.2f} ms, scan workers {workers_txt}, "
              f"benchmark client {me_ms:.2f} ms; load average {os.getloadavg()[0]:.1f}")
        print(f"[{dep.name}] throughput target {rate:.0f}/s for {args.seconds:.0f} s: "
              f"completed {res['completed_per_s']}/s, accepted {res['accepted']}, http errors {res['http_errors']}, "
              f"drain lag {res['drain_lag_s']} s, lost completes {res['lost_completes']}, "
              f"seq gaps {res['seq_gaps']}, clients closed {res['clients_closed']}")
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def start_redis() -> tuple[subprocess.Popen, str, Path]:
    """A redis-server of the benchmark's own (append-only file, as deployed)."""
    workdir = Path(tempfile.mkdtemp(prefix="ms-events-bench-redis-"))
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
                             "--appendonly", "yes", "--save", ""],
                            stdout=open(workdir / "redis.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115 - lives with redis
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0", workdir


def create_database(admin_dsn: str) -> str:
    """A fresh PostgreSQL database for this run (left in place for inspection; named in the output)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"ms_bench_{int(time.time())}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    print(f"PostgreSQL database {name}")
    return make_conninfo(admin_dsn, dbname=name)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--rates", default="100,200,300")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="scan workers per gateway process (in-process bus)")
    ap.add_argument("--backend", choices=("memory", "redis"), default="memory",
                    help="redis: also run two gateways sharing Redis Streams + PostgreSQL, after the "
                         "in-process bus in the same run")
    ap.add_argument("--postgres-dsn", default=os.environ.get("MALWARESNIPPER_TEST_POSTGRES_DSN", ""),
                    help="a role that may CREATE DATABASE (default: $MALWARESNIPPER_TEST_POSTGRES_DSN)")
    ap.add_argument("--profile", help="write a cProfile of each gateway process to this file prefix")
    args = ap.parse_args()
    if args.backend == "redis" and not args.postgres_dsn:
        ap.error("--backend redis needs --postgres-dsn or $MALWARESNIPPER_TEST_POSTGRES_DSN (scripts/services.sh)")

    print(f"machine: {os.cpu_count()} CPUs")
    memory = Deployment("memory", [f"[server]\nrate_limit_per_minute = 0\n[proxy]\nworkers = {args.workers}\n"],
                        args.profile)
    try:
        await measure(memory, args)
    finally:
        memory.stop()
    if args.backend != "redis":
        return 0
    redis_proc, redis_url, _ = start_redis()
    try:
        dsn = create_database(args.postgres_dsn)
        per_gateway = max(1, args.workers // 2)  # the same scan workers in all, on the same cores
        configs = [
            f"[server]\nrate_limit_per_minute = 0\ngateway_id = \"bench-{name}\"\n"
            f"[proxy]\nworkers = {per_gateway}\n"
            f"[store]\nbackend = \"postgres\"\ndsn = \"{dsn}\"\n"
            f"[events]\nbackend = \"redis\"\nurl = \"{redis_url}\"\n"
            for name in ("a", "b")
        ]
        cluster = Deployment("redis", configs, args.profile)
        try:
            await measure(cluster, args)
        finally:
            cluster.stop()
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
