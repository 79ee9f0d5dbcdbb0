"""``malwaresnipper eval --data FILE...``: run the engine over labelled corpora and measure it.

Each file may be JavaScript, URLs or HTML pages (detected from its fields). Every sample becomes
a Capture (a script, a URL, or a page at ``https://sample.invalid/<id>``) scanned by the full
engine, or by the ``--layers`` subset. Samples are data: nothing is fetched or executed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from ..engine.errors import MalwareSnipperError
from .engine_args import add_engine_options, engine_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="measure the engine on labelled JSONL(.gz) corpora (ROC AUC, TPR at FPR, per category)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE", help="labelled corpora")
    parser.add_argument("--json", action="store_true", help="print one JSON object per corpus")
    parser.add_argument("--scores", metavar="OUT.jsonl", help="write id, label, category, risk_score, threat_level per sample")
    add_engine_options(parser)
    parser.add_argument("--split", choices=("all", "dev", "train"), default="all",
                        help="only the dev (or train) side of the 80/20 hash split (default: all rows); the "
                             "shipped models are trained on all rows, so use 'malwaresnipper cv' for figures "
                             "on families, packages, kits and sites a model never saw")
    parser.add_argument("--limit", type=int, help="read at most N samples per file")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=eval_command)


def evaluate_file(path: str, engine: Any, *, split: str = "all", limit: int | None = None,
                  scores_out: TextIO | None = None, quiet: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scan every sample of one file; returns (metrics, a summary for the human report)."""
    from ..engine.training.corpus import capture_for, load_corpus
    from ..engine.training.evaluate import compute_metrics
    from ..engine.training.progress import Progress
    from ..engine.training.split import is_dev

    corpus = load_corpus(path, limit=limit)
    samples = corpus.samples
    if split != "all":
        samples = [s for s in samples if is_dev(s.group) == (split == "dev")]
    limits = engine.config.capture_limits()
    labels: list[int] = []
    scores: list[float] = []
    cats: list[str] = []
    errors: Counter[str] = Counter()
    chars = 0
    started = time.perf_counter()
    with Progress(len(samples), f"eval {Path(path).name}", enabled=not quiet) as bar:
        for s in samples:
            bar.update()
            try:
                capture = capture_for(s, limits)
            except MalwareSnipperError as exc:
                errors[str(exc).split(":")[0][:60]] += 1
                continue
            chars += capture.total_chars + len(capture.url)
            verdict = engine.scan(capture)
            labels.append(s.y)
            scores.append(verdict.risk_score)
            cats.append(s.category_key)
            if scores_out is not None:
                scores_out.write(json.dumps({
                    "id": s.id, "label": s.label, "category": s.category,
                    "risk_score": round(verdict.risk_score, 4), "threat_level": verdict.threat_level.value,
                }) + "\n")
    elapsed = max(time.perf_counter() - started, 1e-9)
    thresholds = {"suspicious": engine.config.thresholds.suspicious, "malicious": engine.config.thresholds.malicious}
    metrics = compute_metrics(labels, scores, cats, thresholds=thresholds, samples_per_s=len(labels) / elapsed)
    summary = {
        "file": str(path), "kind": corpus.kind, "split": split,
        "by_label": Counter(s.label for s in samples), "by_category": Counter(s.category_key for s in samples),
        "errors": errors, "mb_per_s": chars / 1e6 / elapsed, "seconds": elapsed,
    }
    return metrics, summary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def format_report(metrics: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = [f"== {summary['file']} ({summary['kind']}, {summary['split']} rows)"]
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["by_label"].items())))
    lines.append("  by category: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["by_category"].items())))
    if summary["errors"]:
        lines.append("  not scannable: " + ", ".join(f"{k} ({v})" for k, v in summary["errors"].items()))
    auc = metrics["roc_auc"]
    lines.append(f"ROC AUC: {'n/a' if auc is None else f'{auc:.4f}'}")
    for target, entry in metrics["tpr_at_fpr"].items():
        t = entry["threshold"]
        lines.append(f"TPR at FPR {float(target):.1%}: {_pct(entry['tpr'])} (threshold {'n/a' if t is None else f'{t:.3f}'}, "
                     f"actual FPR {_pct(entry['fpr'])})")
    for name, entry in metrics["at_thresholds"].items():
        lines.append(f"at {name.upper()} (risk >= {entry['threshold']:g}): precision {_pct(entry['precision'])}, "
                     f"recall {_pct(entry['tpr'])}, FPR {_pct(entry['fpr'])}")
    lines.append("per category (recall for malicious, FPR for benign; at SUSPICIOUS / MALICIOUS / FPR 0.1% threshold):")
    for cat, e in metrics["per_category"].items():
        lines.append(f"  {cat:<28} n={e['n']:<6} {e['metric']:<6} {_pct(e['at_suspicious'])} / "
                     f"{_pct(e['at_malicious'])} / {_pct(e['at_fpr_0.001'])}")
    lines.append(f"throughput: {metrics['samples_per_s']:.1f} samples/s, {summary['mb_per_s']:.2f} MB/s "
                 f"({summary['seconds']:.1f}s)")
    return "\n".join(lines)


def eval_command(args: argparse.Namespace) -> int:
    from ..engine.training.train import write_atomic

    try:
        _, engine = engine_from_args(args)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = Path(args.scores) if args.scores else None
    if target is None:
        return _evaluate_files(args, engine, None)
    if target.exists() and not target.is_file():  # /dev/stdout, a pipe: stream into it
        with target.open("w", encoding="utf-8") as out:
            return _evaluate_files(args, engine, out)
    # Through a temporary file renamed at the end: Ctrl-C never leaves a half-written scores
    # file that looks like a finished run.
    status = 0

    def write(tmp: Path) -> None:
        nonlocal status
        with tmp.open("w", encoding="utf-8") as out:
            status = _evaluate_files(args, engine, out)

    write_atomic(target, write)
    return status


def _evaluate_files(args: argparse.Namespace, engine: Any, scores_out: TextIO | None) -> int:
    from ..engine.training.corpus import CorpusError

    status = 0
    for path in args.data:
        try:
            metrics, summary = evaluate_file(path, engine, split=args.split, limit=args.limit,
                                             scores_out=scores_out, quiet=args.quiet)
        except CorpusError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps(metrics) if args.json else format_report(metrics, summary), flush=True)
    return status
