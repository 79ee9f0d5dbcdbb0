"""How well and how fast does the known-code database recognise library code?

Prints the figures of issue 14 item 3, all measured on ``../shared/data`` in memory (samples
are never written anywhere; only benign library files are written, to a temporary folder outside
the repository, when ``--terser`` re-minifies them):

1. speed: match time per 100 KB and per 1 MB script, unmodified (fast path), unknown and
   foreign code (which adds the tree-sitter check), in process CPU time;
2. held-out packages: the database is built without one fold of ``split_group``s (5 folds,
   seeded) and that fold's library files are matched: how much library code is known when its
   package is not in the database (expected low: this is about known code);
3. re-minified copies: library files of the database put through terser (whitespace-only, and
   compress + mangle) and matched;
4. malicious rows: how many come out "unmodified" (must be 0) or "foreign";
5. skimmers injected into libraries (appended, prepended, inserted mid-file): is the result
   "foreign", and do the foreign spans hold the whole skimmer (isolation), and how much library
   code comes with it.

    python3 benchmarks/known_code_bench.py [--data DIR] [--terser PATH] [--libraries 40]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from malwaresnipper.engine.known_code import KnownCode, Status, build_database
from malwaresnipper.engine.known_code.canonical import statement_offsets
from malwaresnipper.engine.known_code.database import SourceFile, _name_and_version
from malwaresnipper.engine.known_code.verify import Verification, lexer_spans, verify

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))
JS_FILES = ("js_corpus.train.jsonl.gz", "js_corpus_v2.train.jsonl.gz")


def load_rows(data: Path) -> list[dict]:
    rows: list[dict] = []
    for name in JS_FILES:
        if (data / name).exists():
            with gzip.open(data / name, "rt", encoding="utf-8") as handle:
                rows.extend(json.loads(line) for line in handle)
    return rows


def source_of(row: dict) -> SourceFile:
    library, version = _name_and_version(row.get("source", ""), row.get("source_commit"))
    return SourceFile(row["content"], library, version, row.get("source_path", ""), row.get("source", ""))


class MemoVerify:
    """The parser check, once per text (the folds rebuild databases from the same files)."""

    def __init__(self) -> None:
        self.seen: dict[str, Verification] = {}

    def __call__(self, text: str) -> Verification:
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if key not in self.seen:
            self.seen[key] = verify(text)
        return self.seen[key]


def cpu_ms(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1000.0


def speed(known: KnownCode, libraries: list[dict], skimmer: str) -> None:
    print("\n1. speed (process CPU, best of 3; the match cache is not used)")
    by_size = sorted(libraries, key=lambda r: len(r["content"]))
    picks = {
        "100 KB": min(by_size, key=lambda r: abs(len(r["content"]) - 100_000)),
        "1 MB": by_size[-1],
    }
    for label, row in picks.items():
        text = row["content"]
        kb = len(text) / 1000
        unmodified = cpu_ms(lambda text=text: known.match(text))
        changed = text.replace(";", ";\n", 1)  # same code: still the fast path
        mid = insertion_point(text, skimmer) or 0
        foreign_text = text[:mid] + skimmer + text[mid:]
        foreign = cpu_ms(lambda text=foreign_text: known.match(text), repeat=2)
        unknown_text = "".join(reversed(text.split(";")))  # the same size, no known file
        unknown = cpu_ms(lambda text=unknown_text: known.match(text))
        status = (known.match(text).status.value, known.match(foreign_text).status.value,
                  known.match(unknown_text).status.value)
        print(f"  {label:<7} ({row['source']} {row['source_path']}, {kb:.0f} KB): unmodified {unmodified:.1f} ms, "
              f"foreign code inserted {foreign:.1f} ms, unknown {unknown:.1f} ms  [statuses {status}]")
        del changed


def held_out(rows: list[dict], memo: MemoVerify, folds: int, seed: int, key: str) -> None:
    print(f"\n2. held-out packages: {folds} folds by {key} (seed {seed})")
    groups = sorted({r[key] for r in rows})
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % folds for i, g in enumerate(groups)}
    totals: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    for fold in range(folds):
        train = [source_of(r) for r in rows if fold_of[r[key]] != fold]
        test = [r for r in rows if fold_of[r[key]] == fold]
        known = KnownCode([build_database(train, check=memo)])
        for row in random.Random(seed + fold).sample(rows, 200):
            if fold_of[row[key]] != fold:  # sanity: the fold's own database knows its files
                inside[known.match(row["content"]).status.value] += 1
        for row in test:
            match = known.match(row["content"])
            totals[match.status.value] += 1
            chars[match.status.value] += len(row["content"])
            chars["known chars"] += match.known_chars if match.status is not Status.UNKNOWN else 0
    n = sum(totals[s] for s in ("unmodified", "foreign", "unknown"))
    all_chars = sum(chars[s] for s in ("unmodified", "foreign", "unknown"))
    print(f"  {n} files: unmodified {totals['unmodified']} ({100 * totals['unmodified'] / n:.1f} %), "
          f"foreign {totals['foreign']} ({100 * totals['foreign'] / n:.1f} %), unknown {totals['unknown']}; "
          f"known code {100 * chars['known chars'] / all_chars:.1f} % of the characters")
    print(f"  (sanity: files of the packages in the database: {dict(inside)})")


def reminified(known: KnownCode, libraries: list[dict], terser: str, count: int, seed: int) -> None:
    print(f"\n3. re-minified copies of database files (terser, {count} files)")
    pool = [r for r in libraries if 2_000 < len(r["content"]) < 400_000 and known.match(r["content"]).status is Status.UNMODIFIED]
    sample = random.Random(seed).sample(pool, min(count, len(pool)))
    modes = {"reprinted without comments (terser, no -c/-m)": [],
             "compress + mangle (terser -c -m)": ["--compress", "--mangle"]}
    with tempfile.TemporaryDirectory(prefix="known-code-bench-") as tmp:
        for label, flags in modes.items():
            statuses: Counter[str] = Counter()
            failed = 0
            for i, row in enumerate(sample):
                src = Path(tmp) / f"in{i}.js"
                src.write_text(row["content"], encoding="utf-8")
                try:
                    out = subprocess.run([terser, str(src), *flags], capture_output=True, text=True, timeout=120, check=True).stdout
                except (subprocess.SubprocessError, OSError):
                    failed += 1
                    continue
                statuses[known.match(out).status.value] += 1
            n = sum(statuses.values())
            print(f"  {label}: {n} files ({failed} terser failures): " + ", ".join(
                f"{k} {v} ({100 * v / max(1, n):.0f} %)" for k, v in sorted(statuses.items())))


def malicious(known: KnownCode, rows: list[dict]) -> None:
    print("\n4. malicious rows")
    statuses: Counter[tuple[str, str]] = Counter()
    for row in rows:
        statuses[(row["category"], known.match(row["content"]).status.value)] += 1
    per_status: Counter[str] = Counter()
    for (_, status), n in statuses.items():
        per_status[status] += n
    print(f"  {len(rows)} rows: " + ", ".join(f"{k} {v}" for k, v in sorted(per_status.items())))
    for (category, status), n in sorted(statuses.items()):
        if status != "unknown":
            print(f"    {category}: {status} {n}")


def injected(known: KnownCode, libraries: list[dict], skimmers: list[dict], count: int, seed: int) -> None:
    print(f"\n5. real skimmers injected into real libraries ({len(skimmers)} skimmers that parse, {count} libraries)")
    rng = random.Random(seed)
    pool = [r for r in libraries if 5_000 < len(r["content"]) < 600_000 and known.match(r["content"]).status is Status.UNMODIFIED]
    hosts = rng.sample(pool, min(count, len(pool)))
    results: dict[str, Counter[str]] = defaultdict(Counter)
    overhead: dict[str, list[int]] = defaultdict(list)
    for host in hosts:
        lib = host["content"]
        for skimmer_row in skimmers:
            skimmer = skimmer_row["content"]
            cases = {
                "appended": (lib + "\n" + skimmer, len(lib) + 1),
                "prepended": (skimmer + "\n" + lib, 0),
            }
            mid = insertion_point(lib, skimmer)
            if mid is None:
                results["inserted"]["no insertion point that parses"] += 1
            else:
                cases["inserted"] = (lib[:mid] + skimmer + lib[mid:], mid)
            for place, (text, start) in cases.items():
                match = known.match(text)
                end = start + len(code_of(skimmer))  # trailing comments belong to what follows
                isolated = match.status is Status.FOREIGN and any(s <= start and end <= e for s, e in match.foreign)
                key = "isolated" if isolated else (
                    f"unknown ({match.reason.split(':')[0]})" if match.status is Status.UNKNOWN
                    else match.status.value if match.status is not Status.FOREIGN else "foreign, not isolated")
                results[place][key] += 1
                if isolated:
                    overhead[place].append(match.foreign_chars - len(skimmer))
                if match.status is Status.UNMODIFIED:
                    results[place]["UNMODIFIED (must not happen)"] += 1
    for place, counter in results.items():
        n = sum(v for k, v in counter.items() if not k.startswith("UNMODIFIED"))
        extra = sorted(overhead[place])
        median = extra[len(extra) // 2] if extra else 0
        print(f"  {place:<9} {n} cases: " + ", ".join(f"{k} {v} ({100 * v / n:.1f} %)" for k, v in sorted(counter.items()))
              + f"; library code in the foreign part: median {median} chars")


def code_of(text: str) -> str:
    """``text`` without trailing whitespace and comments (no code there to isolate)."""
    comments = {e: s for kind, s, e in lexer_spans(text) if kind == "comment"}
    end = len(text.rstrip())
    while end in comments:
        end = len(text[:comments[end]].rstrip())
    return text[:end]


def insertion_point(lib: str, code: str, tries: int = 30) -> int | None:
    """Where an attacker would insert ``code`` mid-file: the statement start nearest the middle
    at which the result still parses (a script with a syntax error runs nothing)."""
    starts = sorted(statement_offsets(lib), key=lambda s: abs(s - len(lib) // 2))
    for start in starts[:tries]:
        if verify(lib[:start] + code + lib[start:]).ok:
            return start
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--terser", help="path of a terser binary (npm), for section 3")
    parser.add_argument("--libraries", type=int, default=40, help="host libraries for section 5")
    parser.add_argument("--reminify", type=int, default=150, help="files re-minified in section 3")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--sections", default="1,2,3,4,5")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))

    rows = load_rows(args.data)
    if not rows:
        print(f"no corpus at {args.data}", file=sys.stderr)
        return 2
    libraries = [r for r in rows if r["label"] == "benign" and r["category"] == "library"]
    bad = [r for r in rows if r["label"] == "malicious"]
    skimmers = [r for r in bad if r["category"] == "skimmer" and verify(r["content"]).ok and len(r["content"]) >= 200]
    known = KnownCode.load([])
    db = known.databases[0]
    print(f"bundled database: {len(db.files)} files, {len(db.chunk_hashes)} chunks, "
          f"{Path(__file__).resolve().parents[1].joinpath('engine/data/known_code.bin').stat().st_size / 1e6:.2f} MB; "
          f"corpus: {len(libraries)} library files, {len(bad)} malicious rows ({len(skimmers)} skimmers parse as JavaScript)")
    if "1" in sections:
        speed(known, libraries, skimmers[0]["content"])
    if "2" in sections:
        memo = MemoVerify()
        held_out(libraries, memo, args.folds, args.seed, "split_group")  # the corpus's own grouping
        held_out(libraries, memo, args.folds, args.seed, "source")  # by package: copies elsewhere count
    if "3" in sections and args.terser:
        reminified(known, libraries, args.terser, args.reminify, args.seed)
    if "4" in sections:
        malicious(known, bad)
    if "5" in sections:
        injected(known, libraries, skimmers, args.libraries, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
