"""``malwaresnipper known-code``: build a known-code database, or look a script up in one.

    malwaresnipper known-code build --corpus ../shared/data/js_corpus*.train.jsonl.gz \\
        --out engine/data/known_code.bin          # the bundled database (benign libraries)
    malwaresnipper known-code build --files vendor/mylib/ --library mylib --version 2.0 \\
        --out mylib.known                         # your own files; add it to [engine.known_code] files
    malwaresnipper known-code match app.js [--db mylib.known]

A database holds hashes, names and versions, no code. The same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("known-code", help="build or query a known-code (library fingerprint) database",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="known_code_command", metavar="ACTION")
    build = commands.add_parser("build", help="build a database from a labelled corpus or from your own files")
    inputs = build.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--corpus", nargs="+", metavar="FILE",
                        help="labelled JS corpora (JSON Lines, .gz or not): their benign 'library' rows")
    inputs.add_argument("--files", nargs="+", metavar="PATH", help="JavaScript files or folders of one library")
    build.add_argument("--library", help="library name shown for --files (default: the first path's name)")
    build.add_argument("--version", default="", help="library version shown for --files")
    build.add_argument("--out", required=True, help="database file to write")
    build.add_argument("--quiet", action="store_true", help="no progress output")
    build.set_defaults(func=build_command)
    match = commands.add_parser("match", help="look scripts up: unmodified, foreign code, or unknown")
    match.add_argument("scripts", nargs="+", metavar="FILE")
    match.add_argument("--db", action="append", default=[], metavar="FILE", help="more databases (repeatable)")
    match.add_argument("--no-bundled", action="store_true", help="leave the bundled database out")
    match.set_defaults(func=match_command)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def build_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..engine.known_code.database import (
        KnownCodeError,
        build_database,
        corpus_sources,
        file_sources,
    )

    started = time.process_time()
    if args.corpus:
        sources = list(corpus_sources(args.corpus))
        inputs = sorted(Path(p).name for p in args.corpus)
    else:
        library = args.library or Path(args.files[0]).resolve().name
        try:
            sources = list(file_sources(args.files, library=library, version=args.version))
        except KnownCodeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        inputs = [f"{library} {args.version}".strip()]
    if not sources:
        print("error: no library files found in the inputs", file=sys.stderr)
        return 2

    def progress(count: int) -> None:
        if not args.quiet and (count % 500 == 0 or count == len(sources)):
            print(f"\r{count}/{len(sources)} files", end="", file=sys.stderr, flush=True)

    db = build_database(sources, inputs=inputs, progress=progress)
    size = db.save(args.out)
    if not args.quiet:
        print(file=sys.stderr)
    excluded = sum(db.excluded.values())
    print(f"wrote {args.out}: {len(db.files)} files of {len({(f.library, f.version) for f in db.files})} libraries, "
          f"{len(db.chunk_hashes)} chunk hashes, {size / 1e6:.2f} MB, in {time.process_time() - started:.1f} s CPU; "
          f"{excluded} of {len(sources)} files left out {json.dumps(db.excluded, sort_keys=True)}")
    return 0


def match_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..engine.known_code import KnownCode, KnownCodeError

    try:
        known = KnownCode.load(args.db, bundled=not args.no_bundled)
    except KnownCodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in args.scripts:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        text = data.decode("utf-8", errors="replace")
        started = time.perf_counter()
        match = known.match(text)
        took = (time.perf_counter() - started) * 1000
        line = {"file": name, "status": match.status.value, "description": match.description,
                "foreign": [list(s) for s in match.foreign], "reason": match.reason, "ms": round(took, 1)}
        print(json.dumps(line))
    return 0
