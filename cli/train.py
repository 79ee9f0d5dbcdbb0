"""``malwaresnipper train --data FILE... --out models/``: train the ml layer's models.

Deterministic (fixed seeds, folds by a seeded hash of ``split_group``): cross-validates each
model over k folds, takes the operating points from the out-of-fold scores, then fits the shipped
model on all rows; writes one joblib file per model and ``manifest.json`` (with the
out-of-fold figures) atomically, so Ctrl-C never leaves half-written files behind.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train the JavaScript, URL and page models from labelled JSONL(.gz) corpora",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE",
                        help="labelled corpora (JSON Lines, gzipped or not); kind detected from fields")
    parser.add_argument("--out", default="models", help="output folder (default: models)")
    parser.add_argument("--kinds", help="comma-separated subset of js,url,html (default: all present)")
    parser.add_argument("--limit", type=int, help="read at most N samples per file (quick experiments)")
    parser.add_argument("--folds", type=int, default=None, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fold assignment")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the fits (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    from ..engine.errors import MalwareSnipperError
    from ..engine.training.split import CV_FOLDS, CV_SEED
    from ..engine.training.train import train

    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    if kinds and any(k not in ("js", "url", "html") for k in kinds):
        print(f"error: --kinds takes js, url and html, not {args.kinds!r}", file=sys.stderr)
        return 2
    folds = CV_FOLDS if args.folds is None else args.folds
    if folds < 2 or args.jobs < 1:
        print("error: --folds must be at least 2 and --jobs at least 1", file=sys.stderr)
        return 2
    try:
        manifest = train(args.data, args.out, kinds=kinds, limit=args.limit, quiet=args.quiet, folds=folds,
                         seed=CV_SEED if args.seed is None else args.seed, jobs=args.jobs)
    except (MalwareSnipperError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: no model file was changed by the unfinished step", file=sys.stderr)
        return 130
    for kind, entry in manifest["models"].items():
        cv = entry.get("cv_metrics", {})
        tpr = cv.get("tpr_at_fpr", {})
        summary = {k: (v or {}).get("tpr") for k, v in tpr.items()}
        print(f"{kind}: {entry['file']} sha256 {entry['sha256'][:16]}… out-of-fold AUC {cv.get('roc_auc')} "
              f"TPR at FPR {json.dumps(summary)}")
    print(f"wrote {args.out}/manifest.json")
    return 0
