"""What the gateway costs: bare mitmdump vs mitmdump + the addon (monitor, block), same run.

Everything is on loopback: a local aiohttp upstream (its own process) serves a ~100 KB page with
three external scripts; a client with 10 concurrent "browsers" loads the page then its three
scripts (with Referer and Sec-Fetch-Dest, as a browser sends them), for a fixed time, through
each proxy in turn. It prints requests/s and p50/p99 latency per variant, and the ratios against
bare mitmdump.

``--unique`` gives every page load its own URL and body, so nothing is served from the verdict
cache and every response is really scanned (the worst case); by default the same page is loaded
again and again, as when many users visit one site, and repeats reuse the verdict.

    python benchmarks/proxy_bench.py [--seconds 4] [--rounds 3] [--concurrency 10] [--unique]

Goals (issue 4): monitor >= 90% of bare throughput and <= +5 ms p99; block <= +30 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
SHIM = REPO / "addon" / "mitmdump_entry.py"

UPSTREAM_CODE = r"""
import random, sys
from aiohttp import web
random.seed(7)
words = ["lorem", "ipsum", "dolor", "sit", "amet", "bread", "flour", "water", "salt", "oven"]
para = "<p>" + " ".join(random.choice(words) for _ in range(60)) + "</p>\n"
head = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>Bench page</title>'
        '<script src="/s1.js"></script><script src="/s2.js"></script><script src="/s3.js"></script></head><body>')
body = para * (100_000 // len(para))
script = "function add(a, b) { return a + b; }\nvar el = document.getElementById('main');\n" * 150

async def page(request):
    tag = request.query.get("u", "")
    html = head + (f"<!-- load {tag} -->" if tag else "") + body + "</body></html>"
    return web.Response(text=html, content_type="text/html")

async def js(request):
    tag = request.query.get("u", "")
    text = script + (f"// load {tag}\n" if tag else "")
    return web.Response(text=text, content_type="application/javascript")

app = web.Application()
app.router.add_get("/page.html", page)
app.router.add_get("/s{n}.js", js)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


#: The default engine: every layer runs and counts, as for a user.
BENCH_TOML = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mitmdump(tmp: Path, mode: str | None) -> tuple[subprocess.Popen[bytes], int, int]:
    port, api_port = free_port(), free_port()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    cmd = [str(mitmdump) if mitmdump.exists() else "mitmdump", "--listen-host", "127.0.0.1", "-p", str(port),
           "--set", f"confdir={tmp / 'conf'}", "--set", "flow_detail=0", "--set", "termlog_verbosity=warn"]
    if mode is not None:
        config = tmp / "bench.toml"
        config.write_text(BENCH_TOML)
        cmd += ["-s", str(SHIM), "--set", f"malwaresnipper_mode={mode}", "--set", f"malwaresnipper_config={config}",
                "--set", f"malwaresnipper_api_port={api_port}", "--set", f"malwaresnipper_events_port={free_port()}"]
    env = dict(os.environ, MALWARESNIPPER_HOME=str(tmp / f"home-{mode}"), MALWARESNIPPER_TOKEN="bench-token-0123456789abcdef")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, port, api_port


async def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


async def wait_ready(api_port: int, timeout: float = 60.0) -> None:
    """The addon's services answer, so its workers are starting."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{api_port}/api/v1/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the gateway's API never came up")


#: The variants every proxy benchmark compares, in the order of each round.
VARIANTS: tuple[tuple[str, str | None], ...] = (("bare", None), ("monitor", "monitor"), ("block", "block"))


async def start_variants(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> tuple[dict[str, int], dict[str, int]]:
    """Start one mitmdump per variant (appended to ``procs`` at once, so a failure still stops them);
    their proxy ports and process ids by name, once each answers (and its scan services are up)."""
    ports: dict[str, int] = {}
    pids: dict[str, int] = {}
    for name, mode in VARIANTS:
        proc, port, api_port = start_mitmdump(tmp, mode)
        procs.append(proc)
        pids[name] = proc.pid
        await wait_port(port)
        if mode is not None:
            await wait_ready(api_port)
        ports[name] = port
    return ports, pids


def stop_all(procs: list[subprocess.Popen[bytes]], upstream: subprocess.Popen[bytes]) -> None:
    """SIGTERM every proxy (killed after 20 s), then the upstream."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    upstream.terminate()
    upstream.wait(timeout=10)


async def load(proxy_port: int, upstream_port: int, seconds: float, concurrency: int, unique: bool) -> list[float]:
    """Latencies (s) of every request completed in ``seconds``."""
    proxy = f"http://127.0.0.1:{proxy_port}"
    base = f"http://127.0.0.1:{upstream_port}"
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def browser(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop_at:
            tag = f"?u={next(counter)}-{random.random():.6f}" if unique else ""
            page = f"{base}/page.html{tag}"
            t0 = time.perf_counter()
            async with session.get(page, proxy=proxy, headers={"Sec-Fetch-Dest": "document"}) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append(time.perf_counter() - t0)
            for n in (1, 2, 3):
                t0 = time.perf_counter()
                async with session.get(f"{base}/s{n}.js{tag}", proxy=proxy,
                                       headers={"Referer": page, "Sec-Fetch-Dest": "script"}) as r:
                    await r.read()
                    assert r.status == 200, r.status
                latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        await asyncio.gather(*(browser(session) for _ in range(concurrency)))
    return latencies


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of one process (Linux /proc), 0 when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; variants are interleaved in each")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load per variant before round 1")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--unique", action="store_true", help="every page load distinct (no verdict reuse)")
    args = parser.parse_args()

    variants = VARIANTS
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM_CODE, str(upstream_port)])  # noqa: ASYNC220 - Popen returns at once
    latencies: dict[str, list[float]] = {name: [] for name, _ in variants}
    rates: dict[str, list[float]] = {name: [] for name, _ in variants}
    # CPU time is what load elsewhere on the machine cannot distort: the proxy process itself
    # (its event loop and threads) and its scan workers, per request.
    proxy_cpu: dict[str, float] = {name: 0.0 for name, _ in variants}
    worker_cpu: dict[str, float] = {name: 0.0 for name, _ in variants}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await wait_port(upstream_port)
        with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmpdir:
            ports, pids = await start_variants(Path(tmpdir), procs)
            for name, _ in variants:
                await load(ports[name], upstream_port, args.warmup, args.concurrency, args.unique)
            # Interleaved rounds: whatever else the machine does hits every variant alike.
            for round_no in range(args.rounds):
                for name, _ in variants:
                    kids = children(pids[name])
                    p0, w0 = cpu_seconds(pids[name]), sum(cpu_seconds(k) for k in kids)
                    lat = await load(ports[name], upstream_port, args.seconds, args.concurrency, args.unique)
                    proxy_cpu[name] += cpu_seconds(pids[name]) - p0
                    worker_cpu[name] += sum(cpu_seconds(k) for k in kids) - w0
                    latencies[name] += lat
                    rates[name].append(len(lat) / args.seconds)
                    print(f"round {round_no + 1} {name:8s} {len(lat) / args.seconds:8.1f} req/s  "
                          f"p50 {pct(lat, 0.5):7.2f} ms  p99 {pct(lat, 0.99):7.2f} ms", flush=True)
    finally:
        stop_all(procs, upstream)

    results = {
        name: {"rps": statistics.median(rates[name]), "p50": pct(latencies[name], 0.5),
               "p99": pct(latencies[name], 0.99), "n": len(latencies[name]),
               "proxy_cpu_ms": 1000 * proxy_cpu[name] / max(1, len(latencies[name])),
               "worker_cpu_ms": 1000 * worker_cpu[name] / max(1, len(latencies[name]))}
        for name, _ in variants
    }
    print()
    print(f"page ~100 KB + 3 scripts, concurrency {args.concurrency}, {args.rounds} x {args.seconds:.0f} s per variant, "
          f"{'unique page loads (every response scanned)' if args.unique else 'repeated page (verdicts reused)'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, r in results.items():
        print(f"{name:8s} {r['rps']:8.1f} req/s (median of rounds)   p50 {r['p50']:7.2f} ms   p99 {r['p99']:7.2f} ms   "
              f"({r['n']} requests)   CPU/request: proxy {r['proxy_cpu_ms']:.2f} ms, workers {r['worker_cpu_ms']:.2f} ms")
    bare = results["bare"]
    for name in ("monitor", "block"):
        r = results[name]
        print(f"{name:8s} throughput {100 * r['rps'] / bare['rps']:5.1f}% of bare   "
              f"p50 {r['p50'] - bare['p50']:+6.2f} ms   p99 {r['p99'] - bare['p99']:+6.2f} ms")
    monitor, block = results["monitor"], results["block"]
    goals = [
        ("monitor >= 90% of bare throughput", monitor["rps"] >= 0.9 * bare["rps"]),
        ("monitor p99 <= bare + 5 ms", monitor["p99"] <= bare["p99"] + 5),
        ("block p50 <= bare + 30 ms", block["p50"] <= bare["p50"] + 30),
    ]
    for text, ok in goals:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
