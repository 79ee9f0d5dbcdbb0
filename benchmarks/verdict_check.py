"""Do two versions of the engine give the same verdicts? (Speed work must change no result.)

Scans a fixed, seeded set of captures built in memory from the labelled corpus (ordinary pages
with 0-4 scripts, 500 KB pages, and benign and malicious scripts on their own), and writes each
verdict's level, risk score, per-layer scores and indicator ids to a JSON file (``--save``), or
compares them with such a file (``--compare``) and prints every difference. Samples are never
written to disk and never run; the JSON holds no sample text. Cold: the per-process caches are
emptied before each scan, and each capture is also scanned a second time warm (the caches must
give the cold answer too).

    python3 benchmarks/verdict_check.py --save /tmp/before.json    # on the old code
    python3 benchmarks/verdict_check.py --compare /tmp/before.json  # on the new code
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# A sibling script (benchmarks/ is not a package), found through the path entry above.
from engine_bench import DEFAULT_DATA, big_page, build_page, load_corpus  # type: ignore[import-not-found]  # noqa: E402

from malwaresnipper.engine import Capture, EngineConfig, RiskEngine  # noqa: E402
from malwaresnipper.engine.features.javascript import clear_cache  # noqa: E402


def summary(verdict: Any) -> dict[str, Any]:
    """What must not change: level, score (rounded to 1e-6), per-layer scores, indicator ids."""
    return {
        "level": verdict.threat_level.value,
        "risk": round(verdict.risk_score, 6),
        "layers": {r.layer: round(r.score, 6) for r in verdict.layers},
        "indicators": sorted(i.id for i in verdict.indicators),
    }


def captures(data: Path, pages: int, scripts: int, seed: int) -> list[tuple[str, Capture]]:
    rng = random.Random(seed)
    html, benign, malicious = load_corpus(data, rng)
    out: list[tuple[str, Capture]] = []
    mixed = benign + malicious
    for i in range(pages):
        chosen = [mixed[(i * 5 + k) % len(mixed)] for k in range(rng.randint(0, 4))]
        out.append((f"page-{i}", build_page(html[i % len(html)], chosen, i)))
    for i in range(5):
        out.append((f"big-{i}", big_page(html, benign, i)))
    for label, pool in (("benign", benign), ("malicious", malicious)):
        for i, text in enumerate(pool[:scripts]):
            out.append((f"{label}-js-{i}", Capture.build(
                "https://example.org/app.js", scripts=[{"url": "https://example.org/app.js", "text": text, "inline": False}])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--save", type=Path, help="write the verdicts here")
    target.add_argument("--compare", type=Path, help="compare with verdicts written by --save")
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--scripts", type=int, default=600, help="benign and malicious scripts each")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    engine = RiskEngine(EngineConfig())
    results: dict[str, dict[str, Any]] = {}
    for name, capture in captures(args.data, args.pages, args.scripts, args.seed):
        clear_cache()
        cold = summary(engine.scan(capture))
        warm = summary(engine.scan(capture))
        if warm != cold:
            print(f"{name}: a warm scan differs from the cold one: {cold} != {warm}")
        results[name] = cold
    if args.save:
        args.save.write_text(json.dumps(results, sort_keys=True, indent=1), encoding="utf-8")
        print(f"wrote {len(results)} verdicts to {args.save}")
        return 0
    before = json.loads(args.compare.read_text(encoding="utf-8"))
    differ = [name for name in before if before[name] != results.get(name)]
    for name in differ[:50]:
        print(f"{name}: before {before[name]}\n{' ' * len(name)}  after  {results.get(name)}")
    levels: dict[str, int] = {}
    for value in results.values():
        levels[value["level"]] = levels.get(value["level"], 0) + 1
    print(f"{len(before)} verdicts compared, {len(differ)} differ; levels now {dict(sorted(levels.items()))}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
