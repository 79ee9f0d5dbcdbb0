"""YARA-X next to the TOML rule engine, in one run: how fast rules compile, how fast they scan.

Prints the figures of issue 18 item 1 (a benchmark, not a timed test):

1. rules compiled per second: 1,000 synthetic rules, written once as TOML and once as YARA
   (the same literals and regexes: two case-insensitive literals and one regex per rule, "any of
   them"), loaded the way the signatures layer loads them (TOML: parse, validate, compile the
   RE2 set; YARA: compile with YARA-X, metadata linters, rule mapping);
2. the signatures layer's time per 100 KB of script with those 1,000 rules loaded (and the
   bundled rules left out, so both sides run exactly 1,000 rules): one capture holding one
   100 KB external script, through ``SignaturesLayer.analyze`` (the script, its URL and the
   page URL are scanned, as in a real scan). Scripts: synthetic JavaScript, then, when the
   labelled corpus is present, benign corpus scripts concatenated to 100 KB (in memory only).
   Each is scanned as it is ("no match") and with ten rules' literals planted ("10 rules match").
   The TOML engine is measured with RE2 (what ships) and with its bounded ``re`` fallback.

The rules are generated in a temporary folder that is removed afterwards.

    python3 benchmarks/signatures_bench.py [--rules 1000] [--repeat 30] [--data DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig, Signatures
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers.signatures import SignaturesLayer
from malwaresnipper.engine.rules import RuleSet, parse_rule_file
from malwaresnipper.engine.yara_rules import YARA_X_VERSION, load_yara_rules

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))
CHUNK = 100_000


def synthetic_rules(count: int, seed: int = 18) -> list[tuple[str, str, str]]:
    """``count`` rules as (literal, literal, regex): made-up tokens that ordinary code does not
    contain, so "no match" really scans without matching."""
    rng = random.Random(seed)
    letters = "bcdfghjklmnpqrstvwxz"

    def token(n: int) -> str:
        return "".join(rng.choice(letters) for _ in range(n))

    return [(f"{token(6)}_{token(5)}", f"{token(4)}.{token(7)}(", rf"{token(5)}[0-9]{{2,8}}\(\s*[a-z_]{{1,12}}")
            for _ in range(count)]


def write_toml(rules: list[tuple[str, str, str]], path: Path) -> None:
    out = []
    for index, (a, b, regex) in enumerate(rules):
        out.append(
            f'[[rule]]\nid = "bench_{index}"\ndescription = "synthetic rule {index}"\nseverity = "medium"\n'
            f'target = ["html", "script"]\npatterns = [{{literal = "{a}"}}, {{literal = "{b}"}}, '
            f"{{regex = '{regex}'}}]\n"
        )
    path.write_text("\n".join(out), encoding="utf-8")


def write_yara(rules: list[tuple[str, str, str]], path: Path) -> None:
    out = []
    for index, (a, b, regex) in enumerate(rules):
        out.append(
            f"rule bench_{index} : html script {{\n  meta:\n    description = \"synthetic rule {index}\"\n"
            f"    severity = \"medium\"\n  strings:\n    $a = \"{a}\" nocase\n    $b = \"{b}\" nocase\n"
            f"    $c = /{regex}/i\n  condition:\n    any of them\n}}\n"
        )
    path.write_text("\n".join(out), encoding="utf-8")


def best_of(repeat: int, work: Callable[[], object]) -> float:
    """The fastest of ``repeat`` runs, in seconds (compilation: the least disturbed run)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def synthetic_script(size: int, seed: int = 7) -> str:
    """Plausible application JavaScript (functions, DOM calls, strings) of ``size`` characters."""
    rng = random.Random(seed)
    names = ["cart", "item", "price", "total", "user", "menu", "modal", "slider", "form", "query", "token", "render"]
    parts: list[str] = []
    while sum(map(len, parts)) < size:
        a, b, c = rng.sample(names, 3)
        n = rng.randint(0, 9999)
        parts.append(
            f"function {a}_{b}{n}(el, opts) {{\n  var {c} = document.querySelector('#{a}-{n}');\n"
            f"  if (!{c} || opts.{b} === undefined) {{ return null; }}\n"
            f"  {c}.addEventListener('click', function (e) {{ e.preventDefault(); {a}.{b}({c}.dataset.{b}, {n}); }});\n"
            f"  return fetch('/api/{a}/{b}?id=' + encodeURIComponent(opts.id)).then(function (r) {{ return r.json(); }});\n}}\n"
        )
    return "".join(parts)[:size]


def corpus_script(data: Path, size: int) -> str | None:
    """Benign corpus scripts concatenated to ``size`` characters (kept in memory)."""
    path = data / "js_corpus.train.jsonl.gz"
    if not path.exists():
        return None
    pieces: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("label") == "benign" and 2_000 <= len(row["content"]) <= 60_000:
                pieces.append(row["content"])
                if sum(map(len, pieces)) >= size:
                    break
    return "\n;\n".join(pieces)[:size]


def planted(script: str, rules: list[tuple[str, str, str]], count: int = 10) -> str:
    """``script`` with the first literal of ``count`` rules written into it, spread out."""
    step = len(script) // (count + 1)
    out = script
    for index in range(count):
        at = step * (index + 1)
        out = out[:at] + f" /* {rules[index * 37 % len(rules)][0]} */ " + out[at:]
    return out[: len(script)]


def layer_ms(layer: SignaturesLayer, script: str, repeat: int) -> tuple[float, int]:
    """Median milliseconds of ``analyze`` on one capture holding ``script``, and rules matched."""
    capture = Capture.build("https://shop.example/checkout", scripts=[
        {"text": script, "url": "https://cdn.example/app.js", "inline": False}])
    features = Features(capture)
    result = layer.analyze(capture, features)  # warm-up (and the match count)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        layer.analyze(capture, features)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(result.indicators)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    rules = synthetic_rules(args.rules)
    with tempfile.TemporaryDirectory(prefix="signatures-bench-") as tmp:
        folder = Path(tmp)
        toml_file, yara_file = folder / "bench.toml", folder / "bench.yar"
        write_toml(rules, toml_file)
        write_yara(rules, yara_file)

        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{args.rules} synthetic rules (2 literals + 1 regex each); yara-x {YARA_X_VERSION}; load average {load}")
        print("\n1. compilation (best of 3)")
        compile_toml = best_of(3, lambda: RuleSet(parse_rule_file(toml_file), use_re2=True))
        compile_fallback = best_of(3, lambda: RuleSet(parse_rule_file(toml_file), use_re2=False))
        compile_yara = best_of(3, lambda: load_yara_rules([yara_file]))
        print(f"   {'engine':<24} {'seconds':>8} {'rules/s':>10}")
        for name, seconds in (("TOML (RE2 set)", compile_toml), ("TOML (re fallback)", compile_fallback),
                              ("YARA-X", compile_yara)):
            print(f"   {name:<24} {seconds:8.3f} {args.rules / seconds:10,.0f}")

        def config(**signatures: object) -> EngineConfig:
            return EngineConfig(signatures=Signatures(include_default_rules=False, **signatures),  # type: ignore[arg-type]
                                base_dir=str(folder))

        layers = {
            "TOML (RE2 set)": SignaturesLayer(config(rule_files=[toml_file.name]), use_re2=True),
            "TOML (re fallback)": SignaturesLayer(config(rule_files=[toml_file.name]), use_re2=False),
            "YARA-X": SignaturesLayer(config(yara_files=[yara_file.name])),
        }
        scripts = {"synthetic JS": synthetic_script(CHUNK)}
        corpus = corpus_script(args.data, CHUNK)
        if corpus is not None:
            scripts["benign corpus JS"] = corpus
        else:
            print(f"\n(no corpus at {args.data}: synthetic script only)")

        print(f"\n2. signatures layer, one 100 KB script, {args.rules} rules (median of {args.repeat} scans)")
        print(f"   {'script':<34} {'engine':<20} {'ms/100 KB':>10} {'MB/s':>7} {'matched':>8}")
        for script_name, script in scripts.items():
            for variant, text in (("no match", script), ("10 rules match", planted(script, rules))):
                for engine, layer in layers.items():
                    ms, matched = layer_ms(layer, text, args.repeat)
                    per_100k = ms * CHUNK / len(text)
                    print(f"   {script_name + ', ' + variant:<34} {engine:<20} {per_100k:10.2f} "
                          f"{len(text) / ms / 1000:7.1f} {matched:8d}")


if __name__ == "__main__":
    main()
