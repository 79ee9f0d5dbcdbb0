"""``malwaresnipper cv --data FILE...``: grouped k-fold cross-validation of models and engine.

Each fold's models are fitted on the other folds with the code ``train`` uses, loaded by the
whole engine from a folder, and every held-out row is scanned as a gateway would scan it. The
report gives each model alone and the engine, pooled and per fold (mean and spread), per
category, source and topic, and the false-positive rates at SUSPICIOUS and MALICIOUS that the
project is steered by. Samples are data: nothing is fetched or executed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .engine_args import add_engine_options, engine_settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cv",
        help="cross-validate the models and the whole engine by split_group (k folds, seeded)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE", help="labelled corpora")
    parser.add_argument("--folds", type=int, default=None, help="number of folds (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fold assignment (default: train's)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--oof", metavar="OUT.jsonl", help="write one JSON line per held-out row")
    parser.add_argument("--out", metavar="REPORT.json", help="also write the report as indented JSON (e.g. models/cv_report.json)")
    parser.add_argument("--train-only", nargs="+", metavar="FILE",
                        help="learn only from these of the --data files; the others are only measured")
    parser.add_argument("--limit", type=int, help="read at most N samples per file (quick experiments)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_engine_options(parser)
    parser.set_defaults(func=cv_command)


def cv_command(args: argparse.Namespace) -> int:
    from ..engine.errors import MalwareSnipperError
    from ..engine.training.cv import print_report, run_cv
    from ..engine.training.split import CV_FOLDS, CV_SEED
    from ..engine.training.train import write_atomic

    folds = CV_FOLDS if args.folds is None else args.folds
    if folds < 2 or args.jobs < 1:
        print("error: --folds must be at least 2 and --jobs at least 1", file=sys.stderr)
        return 2
    try:
        config, layers = engine_settings_from_args(args)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {
        "config": config, "layers": layers, "folds": folds, "seed": CV_SEED if args.seed is None else args.seed,
        "jobs": args.jobs, "limit": args.limit, "quiet": args.quiet, "train_only": args.train_only,
    }
    try:
        if args.oof:
            # Through a temporary file renamed at the end: an interrupted run leaves no
            # half-written file that looks like a finished one.
            reports = []

            def write(tmp: Path) -> None:
                with tmp.open("w", encoding="utf-8") as out:
                    reports.append(run_cv(args.data, oof_out=out, **options))

            write_atomic(Path(args.oof), write)
            report = reports[0]
        else:
            report = run_cv(args.data, **options)
    except (MalwareSnipperError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if args.out:
        text = json.dumps(report, indent=1) + "\n"
        write_atomic(Path(args.out), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print_report(report, as_json=args.json)
    return 0
