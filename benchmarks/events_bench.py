"""Event-stream figures on a real ``malwaresnipper serve`` (loopback only, bounded in time).

1. Latency: small-page captures POSTed one at a time; the time from sending the POST to the
   SCAN_COMPLETE arriving at each of 10 connected websockets clients (p50/p99 over all
   client-arrivals, and of the slowest client per scan).
2. Throughput: captures POSTed open-loop at a target rate for a fixed time; the sustained rate is
   completions per second at the clients, and "lost" counts SCAN_COMPLETEs some client never got
   plus gaps in any client's ``seq``.

Goals on the 2-core dev machine: p50 <= 25 ms, 200 captures/s with zero lost events.

    python3 benchmarks/events_bench.py [--latency-n 200] [--rates 100,200,300] [--seconds 8]
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
                async for text in ws:
                    now = time.perf_counter()
                    m = SEQ.search(text)
                    if m is None:
                        continue  # lists_changed
                    seq = int(m.group(1))
                    if seq != self.last_seq + 1:
                        self.gaps += 1
                    self.last_seq = seq
                    if '"status":"SCAN_COMPLETE"' in text:
                        scan_id = SCAN.search(text).group(1)
                        self.complete_at[scan_id] = now
                        ev = self.waiters.get(scan_id)
                        if ev is not None:
                            ev.set()
            finally:
                self.closed_code = ws.close_code

    def start(self, url: str, token: str) -> asyncio.Task:
        self.ready = asyncio.Event()
        return asyncio.create_task(self.run(url, token))


async def latency(base: str, headers: dict, clients: list[Client], n: int) -> dict:
    arrivals: list[float] = []
    slowest: list[float] = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            t0 = time.perf_counter()
            async with s.post(base + "/api/v1/scans", json=page(i, "lat"), headers=headers) as resp:
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


async def throughput(base: str, headers: dict, clients: list[Client], rate: float, seconds: float) -> dict:
    ids: list[str] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def post(i: int) -> None:
            nonlocal errors
            try:
                async with s.post(base + "/api/v1/scans", json=page(i, f"r{int(rate)}"), headers=headers) as resp:
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


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--rates", default="100,200,300")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", help="write a cProfile of the gateway process to this file")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ms-events-bench-"))
    api_port, events_port = free_port(), free_port()
    (home / "malwaresnipper.toml").write_text(
        f"[server]\nrate_limit_per_minute = 0\n[proxy]\nworkers = {args.workers}\n")
    env = dict(os.environ, MALWARESNIPPER_HOME=str(home), MALWARESNIPPER_TOKEN="bench-token")
    log = open(home / "gateway.log", "wb")
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    proc = subprocess.Popen([sys.executable, *profile, "-m", "malwaresnipper.cli.main", "serve",
                             "--config", str(home / "malwaresnipper.toml"),
                             "--api-port", str(api_port), "--events-port", str(events_port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{api_port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/api/v1/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        headers = {"Authorization": "Bearer bench-token"}
        clients = [Client() for _ in range(args.clients)]
        tasks = [c.start(f"ws://127.0.0.1:{events_port}/", "bench-token") for c in clients]
        await asyncio.gather(*(c.ready.wait() for c in clients))
        # Warm up the workers (engine built, models loaded).
        async with aiohttp.ClientSession() as s:
            for i in range(20):
                async with s.post(base + "/api/v1/scans?wait=true", json=page(i, "warm"), headers=headers) as r:
                    await r.read()
        print(f"machine: {os.cpu_count()} CPUs, {args.workers} scan workers, {args.clients} event clients")
        lat = await latency(base, headers, clients, args.latency_n)
        print("latency POST -> SCAN_COMPLETE at each client: "
              f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
              f"(slowest of {args.clients} clients: p50 {lat['slowest_client_p50_ms']:.1f} ms, "
              f"p99 {lat['slowest_client_p99_ms']:.1f} ms; n={lat['n']})")
        for rate in [float(r) for r in args.rates.split(",") if r]:
            gw0 = cpu_seconds(proc.pid)
            workers0 = sum(cpu_seconds(c) for c in children(proc.pid))
            me0 = time.process_time()
            res = await throughput(base, headers, clients, rate, args.seconds)
            n = max(1, res["accepted"])
            gw_ms = (cpu_seconds(proc.pid) - gw0) * 1000 / n
            workers_ms = (sum(cpu_seconds(c) for c in children(proc.pid)) - workers0) * 1000 / n
            me_ms = (time.process_time() - me0) * 1000 / n
            workers_txt = f"{workers_ms:.2f} ms" if workers_ms >= 0 else "n/a (a worker was replaced)"
            print(f"  CPU per capture: gateway process {gw_ms:.2f} ms, scan workers {workers_txt}, "
                  f"benchmark client (10 ws clients + POSTs) {me_ms:.2f} ms; load average {os.getloadavg()[0]:.1f}")
            print(f"throughput target {rate:.0f}/s for {args.seconds:.0f} s: completed {res['completed_per_s']}/s, "
                  f"accepted {res['accepted']}, http errors {res['http_errors']}, drain lag {res['drain_lag_s']} s, "
                  f"lost completes {res['lost_completes']}, seq gaps {res['seq_gaps']}, "
                  f"clients closed {res['clients_closed']}")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
