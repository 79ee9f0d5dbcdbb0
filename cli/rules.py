"""``malwaresnipper rules check FILE...``: validate signature rule files before a gateway loads them.

TOML rule files (``.toml``, the format of ``engine/data/default_rules.toml``) and YARA rule files
(``.yar``, ``.yara``) are checked exactly as the signatures layer loads them: the same parser,
the same compilers, the same metadata checks, and user TOML rules against the bundled rules' ids.
A folder stands for every rule file under it. Errors go to stderr as ``file:line:column: message``
(TOML rule errors name the file, the rule and the line its ``[[rule]]`` starts at); YARA-X's
warnings (slow patterns ...) are printed too but do not fail the check. Exit code 0 when every
file loads, 2 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..engine.errors import RuleError
from ..engine.yara_rules import YARA_SUFFIXES

RULE_SUFFIXES = (".toml", *YARA_SUFFIXES)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rules", help="check signature rule files (TOML and YARA)", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate rule files (.toml, .yar, .yara, or folders of them)")
    check.add_argument("files", nargs="+", metavar="FILE", help="a rule file or a folder of rule files")
    check.add_argument("--no-default-rules", action="store_true",
                       help="do not check TOML rule ids against the bundled rules (include_default_rules = false)")
    check.set_defaults(func=check_command)


def rule_files(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """The rule files the arguments name (folders searched recursively), and the arguments that
    name none."""
    files: list[Path] = []
    problems: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in RULE_SUFFIXES)
            if not found:
                problems.append(f"{path}: no .toml, .yar or .yara files in this folder")
            files += found
        elif not path.exists():
            problems.append(f"{path}: no such file or folder")
        elif path.suffix.lower() not in RULE_SUFFIXES:
            problems.append(f"{path}: not a rule file (expected .toml, .yar or .yara)")
        else:
            files.append(path)
    return list(dict.fromkeys(files)), problems


def check_command(args: argparse.Namespace) -> int:
    files, problems = rule_files(args.files)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    toml_files = [p for p in files if p.suffix.lower() == ".toml"]
    yara_files = [p for p in files if p.suffix.lower() in YARA_SUFFIXES]
    ok = not problems
    ok &= _check_toml(toml_files, with_defaults=not args.no_default_rules)
    ok &= _check_yara(yara_files)
    return 0 if ok else 2


def _check_toml(files: list[Path], *, with_defaults: bool) -> bool:
    from ..engine.rules import (
        DEFAULT_RULES_FILE,
        RuleSet,
        load_rule_files,
        parse_rule_file,
    )

    ok = True
    for path in files:
        try:
            rules = parse_rule_file(path)
            RuleSet(rules)  # the matchers compile too (RE2's memory limit for all patterns together)
        except RuleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            ok = False
            continue
        print(f"{path}: OK ({len(rules)} TOML rules)")
    if ok and files:
        # Ids must be unique across the files, and against the bundled rules when they load.
        user_files = [p for p in files if p.resolve() != DEFAULT_RULES_FILE.resolve()]
        bundled = with_defaults or len(user_files) < len(files)
        try:
            load_rule_files(user_files, include_default=bundled)
        except RuleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            ok = False
    return ok


def _check_yara(files: list[Path]) -> bool:
    from ..engine.yara_rules import compile_yara

    ok = True
    for path in files:
        try:
            compiled = compile_yara([path])
        except RuleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            ok = False
            continue
        for diagnostic in (*compiled.errors, *compiled.warnings):
            print(diagnostic, file=sys.stderr)
        if compiled.rules is None:
            ok = False
            continue
        warned = f", {len(compiled.warnings)} warnings" if compiled.warnings else ""
        print(f"{path}: OK ({len(compiled.rules.rules)} YARA rules{warned})")
    if ok and len(files) > 1:
        try:  # together, as yara_files loads them: one namespace per file name
            together = compile_yara(files)
        except RuleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return False
        for diagnostic in together.errors:
            print(diagnostic, file=sys.stderr)
        ok = together.rules is not None
    return ok
