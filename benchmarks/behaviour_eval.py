"""How well do the parser-based behaviour facts separate skimmers from shop and payment code?

Runs :func:`behaviour_facts` and :func:`page_behaviour` over every row of the JS corpus (v1 and
v2) and prints, per category (and v2 topic), how many rows get each behaviour finding, plus the
cost of parsing and fact extraction. Rows that hold a page or a ``<script>`` snippet are split into
their inline scripts with the engine's own HTML parser, and the scripts of one row are one page
(so a collector and a sender in two snippets of one row combine, as on a real page).

Honest figures: the rows are split in two halves by ``split_group``
(``sha256("issue14-skimmer:" + group)``, even = design, odd = report). Rules were written and
adjusted looking only at design-half rows; the report half is the figure to quote. Whole groups
stay on one side, so a report-half skimmer family or v2 repository was never looked at.

Samples are read with gzip + json and never written anywhere or executed.

    python3 benchmarks/behaviour_eval.py [--data DIR] [--half report|design|all] [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from malwaresnipper.engine.features.behaviour import (
    ScriptRef,
    behaviour_facts,
    clear_cache,
    page_behaviour,
    parse_plan,
)
from malwaresnipper.engine.features.html import parse_html
from malwaresnipper.engine.features.javascript import extract_js_features

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))
FILES = ("js_corpus.train.jsonl.gz", "js_corpus_v2.train.jsonl.gz")
SALT = "issue14-skimmer:"
PAGE_HOST = "victim-shop.example"


def half(group: str) -> str:
    """The design/report half of a split group (whole groups stay on one side)."""
    return "design" if int(hashlib.sha256((SALT + group).encode()).hexdigest()[:8], 16) % 2 == 0 else "report"


def rows(data: Path) -> Iterator[dict]:
    for name in FILES:
        path = data / name
        if not path.exists():
            continue
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def looks_like_markup(text: str) -> bool:
    head = text.lstrip()[:300].lower()
    return head.startswith("<") and ("<script" in head or "<html" in head or "<!doctype" in head or "<head" in head)


def scripts_of(row: dict) -> list[str]:
    """The scripts a browser would run from this row: inline scripts of markup, else the text."""
    text = row.get("content") or ""
    if row.get("format") == "html" or looks_like_markup(text):
        page = parse_html(text, f"https://{PAGE_HOST}/")
        return [s.text for s in page.inline_scripts if s.text]
    return [text]


def group_name(row: dict) -> str:
    if row["label"] == "malicious":
        return f"malicious/{row.get('category')}"
    topic = row.get("topic")
    return f"benign/{row.get('category')}" + (f"/v2:{topic}" if topic else "/v1")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--half", choices=("design", "report", "all"), default="all")
    parser.add_argument("--limit", type=int, default=0, help="at most this many rows (0: all)")
    parser.add_argument("--show", default="", help="print finding titles for rows of these groups (comma list)")
    parser.add_argument("--only", default="", help="only rows of groups starting with one of these (comma list)")
    args = parser.parse_args(argv)

    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    seconds: list[float] = []
    per_100kb: list[float] = []
    filtered_seconds = 0.0
    total_seconds = 0.0
    passed: Counter[str] = Counter()
    show = {s for s in args.show.split(",") if s}
    for index, row in enumerate(rows(args.data)):
        if args.limit and index >= args.limit:
            break
        side = half(row["split_group"])
        if args.half != "all" and side != args.half:
            continue
        group = group_name(row)
        if args.only and not any(group.startswith(prefix) for prefix in args.only.split(",")):
            continue
        refs, refs_filtered = [], []
        for k, text in enumerate(scripts_of(row)):
            clear_cache()
            t0 = time.process_time()
            facts = behaviour_facts(text)
            dt = time.process_time() - t0
            total_seconds += dt
            if facts.analysed:
                seconds.append(dt)
                if len(text) >= 2000:
                    per_100kb.append(dt * 100_000 / len(text))
            ref = ScriptRef(f"script #{k + 1}", facts)
            refs.append(ref)
            plan = parse_plan(extract_js_features(text), text)
            if plan is not None:
                clear_cache()
                t0 = time.process_time()
                planned = behaviour_facts(text, plan)
                filtered_seconds += time.process_time() - t0
                refs_filtered.append(ScriptRef(ref.location, planned))
                passed[group] += 1
            passed[group + " scripts"] += 1
        key = (group, side)
        counts[key]["rows"] += 1
        found = page_behaviour(refs, PAGE_HOST)
        found_filtered = page_behaviour(refs_filtered, PAGE_HOST)
        ids = {f.id + ("" if f.id != "skimmer_exfiltration" else ":" + f.severity) for f in found}
        for name in ids:
            counts[key][name] += 1
        if any(f.id == "skimmer_exfiltration" for f in found):
            counts[key]["skimmer_exfiltration:any"] += 1
        if any(f.id == "skimmer_exfiltration" and f.severity == "HIGH" for f in found_filtered):
            counts[key]["engine: skimmer_exfiltration:HIGH"] += 1
        if any(f.id == "skimmer_exfiltration" for f in found_filtered):
            counts[key]["engine: skimmer_exfiltration:any"] += 1
        if any(f.id == "checkout_loader" for f in found_filtered):
            counts[key]["engine: checkout_loader"] += 1
        if any(f.id == "skimmer_exfiltration" and f.severity == "HIGH" or f.id == "checkout_loader"
               for f in found_filtered):
            counts[key]["engine: skimmer (HIGH exfiltration or checkout loader)"] += 1
        if any(f.id in ("skimmer_exfiltration", "checkout_loader") for f in found_filtered):
            counts[key]["engine: any skimmer finding (layer score > 0)"] += 1
        if any(f.id == "skimmer_exfiltration" and f.severity == "HIGH" for f in found) or any(
                f.id == "checkout_loader" for f in found):
            counts[key]["skimmer (HIGH exfiltration or checkout loader)"] += 1
        if not all(r.facts.analysed for r in refs):
            counts[key]["not analysed (bound hit)"] += 1
        if group in show or row["id"] in show:
            print(f"{row['id']} {side} {group}: " + " | ".join(f"{f.severity} {f.title}" for f in found))

    names = sorted({n for c in counts.values() for n in c if n != "rows"})
    print(f"\nrows per group and half; page host {PAGE_HOST}; salt {SALT!r}")
    for (group, side), c in sorted(counts.items()):
        n = c["rows"]
        parts = [f"{name}={c[name]} ({100.0 * c[name] / n:.1f}%)" for name in names if c[name]]
        print(f"  {group:<40} {side:<7} rows={n:<5} " + "; ".join(parts))
    print("\ncost (process CPU time, cold, every script parsed):")
    print(f"  {len(seconds)} scripts analysed, total {total_seconds:.1f} s; per script p50 {pct(seconds, 50) * 1000:.2f} ms, "
          f"p99 {pct(seconds, 99) * 1000:.2f} ms; per 100 KB (scripts >= 2 KB) p50 {pct(per_100kb, 50) * 1000:.1f} ms, "
          f"p99 {pct(per_100kb, 99) * 1000:.1f} ms")
    kept = sum(v for k, v in passed.items() if not k.endswith(" scripts"))
    seen = sum(v for k, v in passed.items() if k.endswith(" scripts"))
    print(f"  as the engine runs it (parse_plan: prefilter, windows in large scripts): {kept} of {seen} scripts "
          f"parsed, {filtered_seconds:.1f} s against {total_seconds:.1f} s for parsing everything")
    for group in sorted({k for k in passed if not k.endswith(" scripts")}):
        print(f"    {group:<40} {passed[group]}/{passed[group + ' scripts']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
