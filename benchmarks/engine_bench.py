"""How fast is the risk engine? Latency per page and throughput, per layer and in total.

Scans pages with the full :class:`RiskEngine` and prints p50/p99 latency and MB/s, per layer
(from ``verdict.layers[i].duration_ms``) and in total, for:

1. ``pages``: realistic pages (HTML plus a few scripts);
2. ``500kb``: a 500 KB page (about 100 KB of HTML plus 400 KB of scripts), the issue's goal case
   (p50 <= 20 ms, p99 <= 150 ms on one core);
3. ``js``: JavaScript only through the non-ML layers (goal >= 5 MB/s per core), benign and
   malicious apart, plus the javascript layer alone (feature extraction + rules).

Pages are built in memory from the labelled corpus when ``MALWARESNIPPER_DATA`` (or
``../shared/data``) exists, and generated otherwise. Samples are never written to disk and never
executed. The run is bounded (``--seconds``, default 40), prints figures and asserts nothing.

    python3 benchmarks/engine_bench.py [--seconds 40] [--pages 300] [--data DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from malwaresnipper.engine import Capture, EngineConfig, RiskEngine
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.features.javascript import clear_cache
from malwaresnipper.engine.layers.javascript import JavascriptLayer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))
TARGET_PAGE_CHARS = 500_000
#: The capture caps must let a 500 KB page through whole.
LIMITS_NOTE = "default capture limits (2 MB page, 1 MB script)"


# -- inputs -----------------------------------------------------------------------------------------

def _rows(path: Path, limit_chars: int = 400_000) -> Iterator[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if len(row.get("content") or "") <= limit_chars:
                yield row


def load_corpus(data: Path, rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """(html pages, benign scripts, malicious scripts) as text, in memory only."""
    benign: list[str] = []
    malicious: list[str] = []
    for row in _rows(data / "js_corpus.train.jsonl.gz"):
        if row.get("format") == "js":
            (benign if row["label"] == "benign" else malicious).append(row["content"])
    pages = [row["content"] for row in _rows(data / "html_corpus.train.jsonl.gz") if row.get("format") == "html"]
    rng.shuffle(pages)
    rng.shuffle(benign)
    rng.shuffle(malicious)
    return pages, benign, malicious


def generated_corpus(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """Synthetic pages and scripts for machines without the corpus (shape only, not realism)."""
    def script(i: int) -> str:
        body = ",".join(
            f'function(e,t,n){{var r=n({j}),o="item-{i}-{j}";t.f{j}=function(a,b){{return r(a)+b+o.length}}}}'
            for j in range(rng.randint(20, 400))
        )
        return "!function(e){var t={};function n(r){return t[r]}}([" + body + "]);"

    def page(i: int) -> str:
        items = "".join(
            f'<li><a href="https://site{k % 7}.example/p/{k}">Item {k}</a> <span class="p">{k * 3} EUR</span></li>'
            for k in range(rng.randint(50, 600))
        )
        return (
            f"<!doctype html><html><head><title>Shop {i}</title></head><body><nav><ul>{items}</ul></nav>"
            '<form action="/search"><input name="q"></form><script>var ga=1;</script></body></html>'
        )

    scripts = [script(i) for i in range(200)]
    return [page(i) for i in range(200)], scripts, scripts[:50]


def build_page(html: str, scripts: list[str], index: int) -> Capture:
    return Capture.build(
        f"https://site{index}.example/page",
        html=html,
        scripts=[
            {"url": f"https://cdn{index}.example/s{k}.js", "text": text, "inline": False}
            for k, text in enumerate(scripts)
        ],
        content_type="text/html",
    )


def big_page(pages: list[str], scripts: list[str], index: int) -> Capture:
    """About 100 KB of HTML plus about 400 KB of scripts."""
    html_parts, size = [], 0
    for page in pages[index % len(pages):] + pages:
        html_parts.append(page)
        size += len(page)
        if size >= 100_000:
            break
    html = "\n".join(html_parts)[:100_000]
    chosen, total = [], 0
    for text in scripts[index * 7 % len(scripts):] + scripts:
        if total + len(text) > TARGET_PAGE_CHARS - len(html):
            continue
        chosen.append(text)
        total += len(text)
        if total >= TARGET_PAGE_CHARS - len(html) - 2_000:
            break
    return build_page(html, chosen, index)


# -- measuring --------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


class Stats:
    """Latencies and characters per layer and in total."""

    def __init__(self) -> None:
        self.total_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self.layer_ms: dict[str, list[float]] = defaultdict(list)
        self.chars = 0

    def scan(self, engine: RiskEngine, capture: Capture) -> None:
        """Scan once; wall time per layer from the verdict, CPU time of this process around it."""
        cpu0 = time.process_time()
        verdict = engine.scan(capture)
        self.cpu_ms.append((time.process_time() - cpu0) * 1000.0)
        self.add(capture, verdict)

    def add(self, capture: Capture, verdict) -> None:  # noqa: ANN001 - Verdict
        self.total_ms.append(verdict.duration_ms)
        for result in verdict.layers:
            self.layer_ms[result.layer].append(result.duration_ms)
        self.chars += capture.total_chars

    def print(self, title: str) -> None:
        n = len(self.total_ms)
        if not n:
            print(f"\n{title}: nothing measured")
            return
        mb = self.chars / 1e6
        print(f"\n{title}: {n} captures, {mb:.1f} MB, mean {self.chars / n / 1000:.0f} KB")
        print(f"  {'layer':<12} {'p50 ms':>8} {'p99 ms':>8} {'MB/s':>8}")
        for layer, values in self.layer_ms.items():
            seconds = sum(values) / 1000.0
            print(f"  {layer:<12} {pct(values, 50):8.2f} {pct(values, 99):8.2f} {mb / seconds if seconds else float('inf'):8.1f}")
        seconds = sum(self.total_ms) / 1000.0
        print(f"  {'TOTAL':<12} {pct(self.total_ms, 50):8.2f} {pct(self.total_ms, 99):8.2f} {mb / seconds:8.1f}")
        if self.cpu_ms:
            cpu_s = sum(self.cpu_ms) / 1000.0
            print(f"  {'TOTAL (cpu)':<12} {pct(self.cpu_ms, 50):8.2f} {pct(self.cpu_ms, 99):8.2f} {mb / cpu_s:8.1f}"
                  "   <- process CPU time: what one core costs when other processes share the machine")


def run_pages(engine: RiskEngine, captures: Iterator[Capture], deadline: float, max_count: int) -> Stats:
    """Cold scans: the per-process script feature cache is cleared before each page."""
    stats = Stats()
    for count, capture in enumerate(captures):
        if count >= max_count or time.perf_counter() > deadline:
            break
        clear_cache()
        stats.scan(engine, capture)
    return stats


def js_throughput(scripts: list[str], deadline: float, non_ml: RiskEngine, layer: JavascriptLayer) -> tuple[float, float, int]:
    """(MB/s through the non-ML layers, MB/s through the javascript layer alone, scripts).

    Cold (feature cache cleared) and in process CPU time, so that other load does not count.
    """
    engine_s = layer_s = 0.0
    chars = count = 0
    for text in scripts:
        if time.perf_counter() > deadline:
            break
        capture = Capture.build("https://example.org/app.js", scripts=[{"url": "https://example.org/app.js",
                                                                          "text": text, "inline": False}])
        clear_cache()
        t0 = time.process_time()
        non_ml.scan(capture)
        engine_s += time.process_time() - t0
        clear_cache()
        t1 = time.process_time()
        layer.analyze(capture, Features(capture))
        layer_s += time.process_time() - t1
        chars += len(text)
        count += 1
    mb = chars / 1e6
    return (mb / engine_s if engine_s else 0.0, mb / layer_s if layer_s else 0.0, count)


def print_floors(captures: list[Capture]) -> None:
    """What the 500 KB page's parts cost one library call each, before any analysis: the floor
    under a cold scan (the goal, 20 ms for 500 KB, is 25 MB/s through everything)."""
    import re

    import tree_sitter
    import tree_sitter_javascript
    from selectolax.lexbor import LexborHTMLParser

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_javascript.language()))
    identifier = re.compile(r"[A-Za-z_$][\w$]*")
    steps = {
        "tree-sitter parse of its scripts": lambda c: [parser.parse((s.text or "").encode()) for s in c.scripts],
        "one regex pass over its scripts' identifiers": lambda c: [identifier.findall(s.text or "") for s in c.scripts],
        "lexbor parse of its HTML": lambda c: LexborHTMLParser(c.html or ""),
    }
    print("\n2c. floors: the 500 KB page's parts through one library call each, CPU time")
    for label, step in steps.items():
        times, chars = [], 0
        for capture in captures:
            t0 = time.process_time()
            step(capture)
            times.append(1000 * (time.process_time() - t0))
            chars += len(capture.html or "") if "HTML" in label else sum(len(s.text or "") for s in capture.scripts)
        p50 = pct(times, 50)
        print(f"  {label:<45} p50 {p50:7.2f} ms  {chars / len(captures) / 1e6 / max(p50 / 1000, 1e-9):6.1f} MB/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="time budget for the measurements (default 40)")
    parser.add_argument("--pages", type=int, default=400, help="at most this many ordinary pages (default 400)")
    parser.add_argument("--big", type=int, default=40, help="scans of the 500 KB page (default 40)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="corpus folder (default ../shared/data)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    t_load = time.perf_counter()
    if (args.data / "js_corpus.train.jsonl.gz").exists() and (args.data / "html_corpus.train.jsonl.gz").exists():
        pages, benign, malicious = load_corpus(args.data, rng)
        source = f"corpus at {args.data}"
    else:
        pages, benign, malicious = generated_corpus(rng)
        source = "generated pages (corpus not found)"
    print(f"inputs: {source}: {len(pages)} HTML pages, {len(benign)} benign and {len(malicious)} malicious scripts "
          f"(loaded in {time.perf_counter() - t_load:.1f} s); {LIMITS_NOTE}; python {sys.version.split()[0]}")

    config = EngineConfig()
    engine = RiskEngine(config)
    non_ml = RiskEngine(config, layers=[name for name in config.layers.enabled if name != "ml"])
    js_layer = JavascriptLayer(config)
    print(f"layers: {[layer.name for layer in engine.layers]}; model versions: {engine.model_versions or 'none'}")
    engine.scan(build_page(pages[0], benign[:2], 0))  # warm-up: lazy imports, first-call caches

    budget = args.seconds
    start = time.perf_counter()

    def page_stream() -> Iterator[Capture]:
        scripts = benign + malicious
        for i in range(10**9):
            html = pages[i % len(pages)]
            chosen = [scripts[(i * 5 + k) % len(scripts)] for k in range(rng.randint(0, 4))]
            yield build_page(html, chosen, i)

    stats = run_pages(engine, page_stream(), start + budget * 0.35, args.pages)
    stats.print("1. pages (HTML + 0-4 scripts), full engine")

    big, warm = Stats(), Stats()
    big_deadline = time.perf_counter() + budget * 0.35
    captures = [big_page(pages, benign, i) for i in range(5)]
    for i in range(args.big):
        if time.perf_counter() > big_deadline:
            break
        capture = captures[i % len(captures)]
        clear_cache()
        big.scan(engine, capture)  # cold: first sight of these scripts
        warm.scan(engine, capture)  # warm: the same scripts again (cached features)
    big.print("2. 500 KB page (about 100 KB HTML + 400 KB scripts), cold, full engine "
              "(goal p50 <= 20 ms, p99 <= 150 ms)")
    warm.print("2b. the same 500 KB pages seen again (script features cached), full engine")
    print_floors(captures)

    print("\n3. JavaScript only, cold, CPU time (goal >= 5 MB/s per core through the non-ML layers)")
    remaining = max(1.0, budget - (time.perf_counter() - start))
    for label, scripts, share in (("benign", benign, 0.5), ("malicious", malicious, 1.0)):
        deadline = time.perf_counter() + remaining * share * 0.5 if label == "benign" else start + budget
        non_ml_mbs, layer_mbs, count = js_throughput(scripts, deadline, non_ml, js_layer)
        print(f"  {label:<9} {count:5d} scripts: non-ML layers {non_ml_mbs:6.1f} MB/s; "
              f"javascript layer alone {layer_mbs:6.1f} MB/s")
    try:
        load = os.getloadavg()[0]
        print(f"\nwall time {time.perf_counter() - t_load:.1f} s; load average {load:.1f} on {os.cpu_count()} CPUs "
              "(wall-clock figures above are inflated when the load exceeds the CPU count)")
    except OSError:
        print(f"\nwall time {time.perf_counter() - t_load:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
