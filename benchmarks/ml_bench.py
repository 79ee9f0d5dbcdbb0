"""Latency of the ml layer alone: p50/p99 per capture and MB/s, per kind of input.

Uses the corpus's dev rows when ``../shared/data`` exists (or MALWARESNIPPER_DATA), generated
inputs otherwise. Prints figures; asserts nothing (timings belong here, not in tests).

    python3 benchmarks/ml_bench.py [--n 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers.ml import MlLayer

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))


def captures(kind: str, n: int) -> list[Capture]:
    from malwaresnipper.engine.training.corpus import load_corpus
    from malwaresnipper.engine.training.synthetic import write_corpus

    name = {"js": "js_corpus.train.jsonl.gz", "url": "url_corpus.train.jsonl.gz", "html": "html_corpus.train.jsonl.gz"}[kind]
    path = DATA / name
    if not path.exists():
        path = write_corpus(Path("/tmp") / f"ml_bench_{kind}.jsonl.gz", kind, n)
    all_samples = load_corpus(path).samples
    samples = all_samples[:: max(1, len(all_samples) // n)][:n]
    out = []
    for s in samples:
        if kind == "url":
            try:
                out.append(Capture.build(s.text))
            except Exception:  # noqa: BLE001 - some feed rows are not valid URLs
                continue
        elif kind == "html":
            out.append(Capture.build("https://bench.invalid/page", html=s.text))
        else:
            out.append(Capture.build("https://bench.invalid/app.js", scripts=[s.text]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    layer = MlLayer(EngineConfig())
    print(f"models: {layer.model_versions or 'none'}")
    for kind in ("url", "js", "html"):
        caps = captures(kind, args.n)
        times = []
        chars = 0
        for cap in caps:
            t0 = time.perf_counter()
            layer.analyze(cap, Features(cap))
            times.append((time.perf_counter() - t0) * 1000)
            chars += cap.total_chars + len(cap.url)
        times.sort()
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        print(f"{kind:>4}: n={len(times)} p50 {statistics.median(times):.2f} ms  p99 {p99:.2f} ms  "
              f"{chars / 1e6 / (sum(times) / 1000):.2f} MB/s")


if __name__ == "__main__":
    main()
