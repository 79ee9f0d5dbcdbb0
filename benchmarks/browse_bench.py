"""Real pages at browsing speed: what the gateway costs a browser, bare mitmdump vs monitor vs block.

Closer to real browsing than ``proxy_bench.py``: every HTML page load is new, while the same popular
libraries recur across sites.

- Pages: benign, rendered HTML pages of the labelled corpus (``format == "html"``, no PHP or
  template sources), each load personalised (a comment with the load's number), so no page is
  ever seen twice.
- Scripts: ``--scripts`` (300) benign scripts of the corpus; each page gets ``--per-page`` (6) of
  them as ``<script src>`` drawn with Zipf popularity (a few libraries on most pages, a long tail),
  served at a stable URL each (as from a CDN: the same bytes on every site).
- Everything gzip-encoded on the wire; after the page, a "browser" fetches the page's scripts
  concurrently, with ``Referer`` and ``Sec-Fetch-Dest`` as Chromium sends them.
- ``--concurrency`` (10) browsers; bare, monitor and block interleaved over ``--rounds`` in one run,
  so whatever else the machine does hits every variant alike.

It prints page loads/s, page-load p50/p99 (page plus all its scripts), the ratios and the added
milliseconds against bare mitmdump, the CPU per page load of the proxy process and of its scan
workers, and the page loads altered (the page or a script not delivered byte for byte as the
upstream sent it): in block mode each is a false block a user sees, because every page and script
here is benign.

Samples stay in memory: the upstream (its own process) reads the gzip corpus itself and serves the
bytes from memory to the benchmark's own client on loopback; nothing is written to disk, nothing is
rendered or run.

    MALWARESNIPPER_DATA=../shared/data python benchmarks/browse_bench.py [--seconds 6] [--rounds 3]

Goals (issue 17): monitor >= 90 % of bare page loads/s, <= +10 ms p50, <= +30 ms p99;
block <= +30 ms p50, <= +100 ms p99.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from malwaresnipper.addon.pagenotice import loader

sys.path.insert(0, str(Path(__file__).resolve().parent))
# A sibling script (benchmarks/ is not a package), found through the path entry above.
from proxy_bench import (  # type: ignore[import-not-found]
    VARIANTS,
    children,
    cpu_seconds,
    free_port,
    start_variants,
    stop_all,
    wait_port,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))
#: Pages above this size are left out (kit pages were capped at 300 KB in the corpus too).
MAX_PAGE_BYTES = 300_000
MAX_SCRIPT_BYTES = 400_000
#: Each response carries the hash of the content the upstream sent (before its gzip); different
#: content is an alteration (a different Content-Encoding of the same content is not).
DIGEST_HEADER = "X-Bench-Sha256"


# -- the corpus, read in the upstream process ------------------------------------------------------


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def load_material(data: Path, *, scripts: int, seed: int) -> tuple[list[str], list[str]]:
    """Benign rendered pages and ``scripts`` benign scripts, chosen reproducibly from ``seed``."""
    pages = [
        row["content"] for row in _rows(data / "html_corpus.train.jsonl.gz")
        if row["label"] == "benign" and row.get("format") == "html" and len(row["content"]) <= MAX_PAGE_BYTES
    ]
    js: list[str] = []
    for name in ("js_corpus.train.jsonl.gz", "js_corpus_v2.train.jsonl.gz"):
        if (data / name).exists():
            js += [row["content"] for row in _rows(data / name)
                   if row["label"] == "benign" and row.get("format", "js") == "js"
                   and 200 <= len(row["content"]) <= MAX_SCRIPT_BYTES]
    rng = random.Random(seed)
    rng.shuffle(js)
    return pages, js[:scripts]


def zipf_weights(n: int, exponent: float = 1.0) -> list[float]:
    return [1.0 / (rank + 1) ** exponent for rank in range(n)]


def insert_scripts(page: str, srcs: list[str], load_id: str) -> str:
    """The page with its scripts as ``<script src>`` in the head and a comment that makes it new."""
    tags = "".join(f'<script src="{src}"></script>' for src in srcs) + f"<!-- load {load_id} -->"
    lower = page[:4096].lower()
    at = lower.find("<head>")
    if at >= 0:
        at += len("<head>")
        return page[:at] + tags + page[at:]
    return tags + page


def serve(port: int, data: Path, scripts: int, per_page: int, seed: int) -> None:
    """The upstream: ``/p/<n>`` is a new page load with its script list, ``/js/<i>.js`` a library."""
    from aiohttp import web

    pages, js = load_material(data, scripts=scripts, seed=seed)
    js_gz = [gzip.compress(text.encode("utf-8"), 6) for text in js]
    js_digest = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in js]
    weights = zipf_weights(len(js))

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        rng = random.Random(seed * 1_000_003 + n)
        chosen: list[int] = []
        while len(chosen) < min(per_page, len(js)):
            pick = rng.choices(range(len(js)), weights)[0]
            if pick not in chosen:
                chosen.append(pick)
        html = insert_scripts(pages[n % len(pages)], [f"/js/{i}.js" for i in chosen], f"{n}-{rng.random():.9f}")
        content = html.encode("utf-8")
        body = gzip.compress(content, 6)
        return web.Response(body=body, headers={
            "Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip",
            "X-Bench-Scripts": ",".join(map(str, chosen)), DIGEST_HEADER: hashlib.sha256(content).hexdigest(),
        })

    async def script(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        return web.Response(body=js_gz[i], headers={
            "Content-Type": "text/javascript; charset=utf-8", "Content-Encoding": "gzip",
            "Cache-Control": "max-age=86400", DIGEST_HEADER: js_digest[i],
        })

    app = web.Application()
    app.router.add_get("/p/{n:\\d+}", page)
    app.router.add_get("/js/{i:\\d+}.js", script)
    print(f"upstream: {len(pages)} pages, {len(js)} scripts", file=sys.stderr, flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the browsers ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """One variant's page loads over all rounds."""

    load_times: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    altered_pages: int = 0
    altered_scripts: int = 0
    #: pages delivered as sent apart from the in-page notice's loader (block mode)
    armed: int = 0
    errors: int = 0
    #: the gateway's X-MalwareSnipper header on altered responses and on unscanned passes
    marks: Counter[str] = field(default_factory=Counter)
    proxy_cpu: float = 0.0
    worker_cpu: float = 0.0
    #: the load generator: this process (the browsers) and the upstream
    load_cpu: float = 0.0


#: Block mode arms the in-page notice in every page that has a script (addon/pagenotice.py): a
#: page whose only change is that loader is delivered as sent, not a false block.
_LOADER_START, _, _ = loader("http://bench.invalid").partition("var NAME=")
_NOTICE_LOADER = re.compile(r'<script(?: nonce="[^"<>]*")?>' + re.escape(_LOADER_START)
                            + r".{0,4000}?" + re.escape("rem.call(me.parentNode,me);})();</script>"), re.S)


def _altered(response: aiohttp.ClientResponse, body: bytes, tally: Tally) -> bool:
    sent = response.headers.get(DIGEST_HEADER)
    if response.headers.get("Content-Encoding", "").strip().lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            pass  # not what it says: compared as it came, so counted as altered
    altered = response.status != 200 or sent != hashlib.sha256(body).hexdigest()
    if altered and response.status == 200:
        text = body.decode("utf-8", "surrogateescape")
        unarmed = _NOTICE_LOADER.sub("", text, count=1)
        if unarmed != text and hashlib.sha256(unarmed.encode("utf-8", "surrogateescape")).hexdigest() == sent:
            tally.armed += 1
            altered = False
    mark = response.headers.get("X-MalwareSnipper", "")
    if altered or mark.startswith("unscanned"):
        kind = "; ".join(part.strip() for part in mark.split(";") if not part.strip().startswith(("risk=", "scan=")))
        tally.marks[f"{'altered' if altered else 'passed'}: {kind or response.status}"] += 1
    return altered


async def browse(proxy_port: int, upstream_port: int, seconds: float, concurrency: int,
                 numbers: Iterator[int], tally: Tally) -> int:
    """Page loads completed in ``seconds``; each is the page, then its scripts in parallel."""
    proxy = f"http://127.0.0.1:{proxy_port}"
    base = f"http://127.0.0.1:{upstream_port}"
    stop_at = time.monotonic() + seconds
    done = 0

    async def fetch_script(session: aiohttp.ClientSession, page_url: str, index: str) -> bool:
        headers = {"Referer": page_url, "Sec-Fetch-Dest": "script", "Sec-Fetch-Mode": "no-cors",
                   "Accept-Encoding": "gzip, deflate, br"}
        async with session.get(f"{base}/js/{index}.js", proxy=proxy, headers=headers) as r:
            return _altered(r, await r.read(), tally)

    async def browser(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            page_url = f"{base}/p/{next(numbers)}"
            t0 = time.perf_counter()
            try:
                headers = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate",
                           "Accept-Encoding": "gzip, deflate, br", "Accept": "text/html"}
                async with session.get(page_url, proxy=proxy, headers=headers) as r:
                    page_altered = _altered(r, await r.read(), tally)
                    scripts = [s for s in r.headers.get("X-Bench-Scripts", "").split(",") if s]
                results = await asyncio.gather(*(fetch_script(session, page_url, s) for s in scripts))
            except (TimeoutError, aiohttp.ClientError):
                tally.errors += 1
                continue
            tally.load_times.append(time.perf_counter() - t0)
            tally.altered_pages += page_altered
            tally.altered_scripts += sum(results)
            done += 1

    connector = aiohttp.TCPConnector(limit=concurrency * 6)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, timeout=timeout) as session:
        await asyncio.gather(*(browser(session) for _ in range(concurrency)))
    return done


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0 if ordered else float("nan")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="corpus folder (default ../shared/data)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured time per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; variants are interleaved in each")
    parser.add_argument("--warmup", type=float, default=4.0, help="unmeasured browsing per variant first")
    parser.add_argument("--concurrency", type=int, default=10, help="browsers")
    parser.add_argument("--scripts", type=int, default=300, help="distinct benign scripts")
    parser.add_argument("--per-page", type=int, default=6, help="scripts per page")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def start_upstream(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    """The upstream in its own process (it reads the corpus itself), and its port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--data", str(args.data),
                             "--scripts", str(args.scripts), "--per-page", str(args.per_page), "--seed", str(args.seed)])
    return proc, port


async def main(args: argparse.Namespace, upstream: subprocess.Popen[bytes], upstream_port: int) -> int:
    variants = VARIANTS
    tallies = {name: Tally() for name, _ in variants}
    numbers = iter(range(10**9))  # one sequence for all variants: every page load anywhere is new
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await wait_port(upstream_port, timeout=180)
        with tempfile.TemporaryDirectory(prefix="browse-bench-") as tmpdir:
            ports, pids = await start_variants(Path(tmpdir), procs)
            for name, _ in variants:
                await browse(ports[name], upstream_port, args.warmup, args.concurrency, numbers, Tally())
            for round_no in range(args.rounds):
                for name, _ in variants:
                    tally = tallies[name]
                    kids = children(pids[name])
                    p0, w0 = cpu_seconds(pids[name]), sum(cpu_seconds(k) for k in kids)
                    l0 = time.process_time() + cpu_seconds(upstream.pid)
                    before = len(tally.load_times)
                    loads = await browse(ports[name], upstream_port, args.seconds, args.concurrency, numbers, tally)
                    tally.proxy_cpu += cpu_seconds(pids[name]) - p0
                    tally.worker_cpu += sum(cpu_seconds(k) for k in kids) - w0
                    tally.load_cpu += time.process_time() + cpu_seconds(upstream.pid) - l0
                    tally.rates.append(loads / args.seconds)
                    mine = tally.load_times[before:]
                    print(f"round {round_no + 1} {name:8s} {loads / args.seconds:7.1f} page loads/s  "
                          f"p50 {pct(mine, 0.5):7.1f} ms  p99 {pct(mine, 0.99):7.1f} ms", flush=True)
    finally:
        stop_all(procs, upstream)

    print()
    print(f"benign pages + {args.per_page} of {args.scripts} benign scripts each (Zipf), gzip, every page load new; "
          f"{args.concurrency} browsers, {args.rounds} x {args.seconds:.0f} s per variant; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows: dict[str, dict[str, float]] = {}
    for name, tally in tallies.items():
        n = max(1, len(tally.load_times))
        rows[name] = {"rate": statistics.median(tally.rates) if tally.rates else 0.0,
                      "p50": pct(tally.load_times, 0.5), "p99": pct(tally.load_times, 0.99)}
        print(f"{name:8s} {rows[name]['rate']:7.1f} page loads/s (median of rounds)  p50 {rows[name]['p50']:7.1f} ms  "
              f"p99 {rows[name]['p99']:7.1f} ms  ({len(tally.load_times)} loads, {tally.errors} errors)  "
              f"CPU/page load: proxy {1000 * tally.proxy_cpu / n:.1f} ms, workers {1000 * tally.worker_cpu / n:.1f} ms  "
              f"altered: {tally.altered_pages} pages, {tally.altered_scripts} scripts")
    bare = rows["bare"]
    for name in ("monitor", "block"):
        r = rows[name]
        print(f"{name:8s} page loads/s {100 * r['rate'] / max(bare['rate'], 1e-9):5.1f}% of bare   "
              f"p50 {r['p50'] - bare['p50']:+7.1f} ms   p99 {r['p99'] - bare['p99']:+7.1f} ms")
    monitor, block = rows["monitor"], rows["block"]
    altered_block = tallies["block"].altered_pages + tallies["block"].altered_scripts
    loads_block = len(tallies["block"].load_times)
    print(f"block mode: {tallies['block'].altered_pages} of {loads_block} benign page loads had the page replaced, "
          f"{tallies['block'].altered_scripts} scripts replaced ({altered_block} false blocks a user sees)")
    print(f"  (and {tallies['block'].armed} pages delivered as sent apart from the in-page notice's loader)")
    for name, tally in tallies.items():
        for mark, count in sorted(tally.marks.items()):
            print(f"  {name:8s} {count:5d} x {mark}")
    print_cpu_budget(tallies, bare["rate"])
    goals = [
        ("monitor >= 90% of bare page loads/s", monitor["rate"] >= 0.9 * bare["rate"]),
        ("monitor p50 <= bare + 10 ms", monitor["p50"] <= bare["p50"] + 10),
        ("monitor p99 <= bare + 30 ms", monitor["p99"] <= bare["p99"] + 30),
        ("block p50 <= bare + 30 ms", block["p50"] <= bare["p50"] + 30),
        ("block p99 <= bare + 100 ms", block["p99"] <= bare["p99"] + 100),
        ("bare and monitor deliver every byte unaltered",
         not any(tallies[v].altered_pages or tallies[v].altered_scripts for v in ("bare", "monitor"))),
    ]
    for text, ok in goals:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    return 0


def print_cpu_budget(tallies: dict[str, Tally], bare_rate: float) -> None:
    """What the throughput goal leaves the gateway, from the CPU each part used per page load.

    Two ceilings bound the rate. The proxy's event loop runs on one CPU: when bare mitmdump keeps
    it busy, a gateway reaches 90 % of bare's rate only if its proxy process costs at most
    bare's CPU per page load / 0.9. And with every CPU busy, page loads/s x CPU per page load
    (load generator + proxy + workers) is the CPU count: 90 % of bare's rate leaves the proxy and
    its scans ``cpus / (0.9 x bare rate) - load generator`` per page load.
    """
    n = {name: max(1, len(t.load_times)) for name, t in tallies.items()}
    generator = statistics.mean(1000 * t.load_cpu / n[name] for name, t in tallies.items())
    proxy = {name: 1000 * t.proxy_cpu / n[name] for name, t in tallies.items()}
    gateway = {name: 1000 * (t.proxy_cpu + t.worker_cpu) / n[name] for name, t in tallies.items()}
    cpus = os.cpu_count() or 1
    print(f"CPU per page load: load generator {generator:.1f} ms; proxy process bare {proxy['bare']:.1f} ms, "
          f"monitor {proxy['monitor']:.1f} ms, block {proxy['block']:.1f} ms; "
          f"with scan workers monitor {gateway['monitor']:.1f} ms, block {gateway['block']:.1f} ms")
    print(f"  bare mitmdump's proxy process used {bare_rate * proxy['bare'] / 10:.0f} % of one CPU; at 90 % of its "
          f"rate the gateway's proxy process may cost {proxy['bare'] / 0.9:.1f} ms per page load "
          f"({proxy['bare'] / 0.9 - proxy['bare']:.1f} ms for the addon), and uses {proxy['monitor']:.1f} ms in monitor mode")
    budget = cpus * 1000 / max(0.9 * bare_rate, 1e-9) - generator
    print(f"  on {cpus} CPUs, 90 % of bare's rate leaves the proxy and its scans {budget:.1f} ms per page load "
          f"({budget - proxy['bare']:.1f} ms beyond bare forwarding for the addon and the engine), "
          f"which use {gateway['monitor'] - proxy['bare']:.1f} ms in monitor mode")


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:  # the upstream process
        serve(arguments.serve, arguments.data, arguments.scripts, arguments.per_page, arguments.seed)
        sys.exit(0)
    if not (arguments.data / "html_corpus.train.jsonl.gz").exists():
        print(f"no corpus at {arguments.data} (set MALWARESNIPPER_DATA)", file=sys.stderr)
        sys.exit(2)
    upstream_process, upstream_port = start_upstream(arguments)
    sys.exit(asyncio.run(main(arguments, upstream_process, upstream_port)))
