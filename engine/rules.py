"""Signature rules: TOML files in, one compiled multi-pattern matcher per target out.

The rule format is documented at the top of ``engine/data/default_rules.toml``. Loading checks
every key and value and raises :class:`~malwaresnipper.engine.errors.RuleError` naming the file,
the rule id and what is wrong, because a typo in a security rule must not silently disable it.

Matching is built once, at start-up, and never backtracks:

* with ``google-re2`` installed, all literals (escaped) and regexes of a target form one RE2 set
  that is run once over the text's UTF-8 bytes and says which patterns match (linear time,
  about 90 MB/s on the JS corpus); only those patterns are searched again, for evidence. Very
  long literal lists go to one Aho-Corasick automaton (``pyahocorasick``) instead;
* without it, literals go to Aho-Corasick and each regex runs on Python's ``re`` over a prefix
  of the text sized so that its worst-case backtracking stays within
  :data:`FALLBACK_STEP_BUDGET` steps (:func:`fallback_scan_chars`; at most
  :data:`FALLBACK_REGEX_SCAN_CHARS` characters). Regexes with ambiguous adjacent repeats such as
  ``\\s*\\s*x`` then see very little text: install ``google-re2``.

Either way, a regex that could backtrack catastrophically (nested variable quantifiers) or that
RE2 cannot run (backreferences, lookaround) is refused when the rule file is loaded, so a rule
file behaves the same on every install.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick

from .errors import RuleError
from .results import Severity

import tomllib

try:  # google-re2: linear-time regex matching with multi-pattern sets.
    import re2 as _re2

    HAVE_RE2 = True
except ImportError:  # pragma: no cover - exercised through the forced fallback in tests
    _re2 = None
    HAVE_RE2 = False

# The stdlib's own regex parser (what the ``re`` fallback would compile) checks each pattern's
# shape; typeshed has no stubs for these private modules.
import re._constants as _sre_constants  # type: ignore[import-not-found]
import re._parser as _sre_parser  # type: ignore[import-not-found]

TARGETS = ("url", "html", "script")
RULE_KEYS = frozenset(
    {"id", "description", "severity", "target", "patterns", "condition", "case_sensitive",
     "classification", "category", "enabled", "strength"}
)
PATTERN_KINDS = ("literal", "regex")
#: Strengths a rule may claim (engine/findings.py); "model" and "context" are not a rule's.
RULE_STRENGTHS = ("decisive", "behaviour", "trait")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
CONDITION_RE = re.compile(r"^(any|all|at_least:(\d+))$")
MAX_PATTERN_CHARS = 2000
MAX_PATTERNS_PER_RULE = 200
#: Characters a regex sees per scanned text when RE2 is missing (Python's ``re`` is not linear).
FALLBACK_REGEX_SCAN_CHARS = 262_144
#: Worst-case backtracking steps one regex may take per text under the ``re`` fallback.
FALLBACK_STEP_BUDGET = 2e7
#: Above this many literals per target, literals go to Aho-Corasick rather than the RE2 set.
MAX_LITERALS_IN_RE2_SET = 2000
DEFAULT_RULES_FILE = Path(__file__).parent / "data" / "default_rules.toml"


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: str  # "literal" | "regex"
    value: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule. ``min_matches`` is the condition as a number of distinct patterns."""

    id: str
    description: str
    severity: Severity
    targets: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    min_matches: int
    case_sensitive: bool = False
    classification: str | None = None
    category: str = "signature"
    source: str = ""
    #: what a match proves on its own (engine/findings.py): critical rules are decisive, others
    #: traits unless the rule says ``strength = "behaviour"``
    strength: str = "trait"

    @property
    def condition(self) -> str:
        if self.min_matches == 1:
            return "any"
        if self.min_matches == len(self.patterns):
            return "all"
        return f"at_least:{self.min_matches}"


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that matched one scanned text, with where its patterns matched."""

    rule: Rule
    #: (pattern index, start, end) of the first match of each matched pattern.
    spans: tuple[tuple[int, int, int], ...]


# -- loading ---------------------------------------------------------------------------------


def load_rule_files(paths: Iterable[str | Path], *, include_default: bool = True) -> list[Rule]:
    """Read and validate rule files (the bundled defaults first). Ids must be unique overall."""
    files: list[Path] = [DEFAULT_RULES_FILE] if include_default else []
    files += [Path(p) for p in paths]
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in files:
        for rule in parse_rule_file(path):
            if rule.id in seen:
                raise RuleError(
                    f"{path}: rule '{rule.id}': duplicate id (already defined in {seen[rule.id]})"
                )
            seen[rule.id] = str(path)
            rules.append(rule)
    return rules


def parse_rule_file(path: str | Path) -> list[Rule]:
    """Parse one TOML rule file into validated rules, or raise :class:`RuleError`."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise RuleError(f"{path}: no such rule file") from None
    except UnicodeDecodeError as exc:
        raise RuleError(f"{path}: not UTF-8: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc}") from None
    return parse_rules(data, source=str(path), lines=rule_header_lines(text))


def rule_header_lines(text: str) -> list[int]:
    """The line number of each ``[[rule]]`` header, so errors can say where a rule starts."""
    return [number for number, line in enumerate(text.splitlines(), 1) if _RULE_HEADER.match(line)]


_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]\s*(#.*)?$")


def parse_rules(data: Any, *, source: str, lines: Sequence[int] = ()) -> list[Rule]:
    """Validate the parsed TOML of one rule file (``source`` names it in errors; ``lines``, the
    line of each ``[[rule]]`` header, adds where the faulty rule starts)."""
    if not isinstance(data, dict):
        raise RuleError(f"{source}: expected a table at the top level")
    unknown = [k for k in data if k != "rule"]
    if unknown:
        raise RuleError(f"{source}: unknown top-level key(s) {unknown} (rules go in [[rule]] tables)")
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise RuleError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    rules: list[Rule] = []
    ids: set[str] = set()
    # Line numbers only when each table of the array has its own header (not `rule = [...]`).
    where = list(lines) if len(lines) == len(raw_rules) else []
    for index, raw in enumerate(raw_rules):
        at_line = f" (line {where[index]})" if where else ""
        try:
            rule = _parse_rule(raw, source, index)
        except RuleError as exc:
            raise RuleError(f"{exc}{at_line}") from None
        if rule is None:
            continue
        if rule.id in ids:
            raise RuleError(f"{source}: rule '{rule.id}': duplicate id in the same file{at_line}")
        ids.add(rule.id)
        rules.append(rule)
    return rules


def _parse_rule(raw: Any, source: str, index: int) -> Rule | None:
    where = f"{source}: rule #{index + 1}"
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: expected a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not ID_RE.match(rule_id):
        raise RuleError(
            f"{where}: 'id' must be a string of letters, digits, '_', '.' or '-' "
            f"(1-80 characters), got {rule_id!r}"
        )
    where = f"{source}: rule '{rule_id}'"

    def fail(message: str) -> RuleError:
        return RuleError(f"{where}: {message}")

    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {unknown} (known keys: {', '.join(sorted(RULE_KEYS))})")
    for key in ("description", "severity", "target", "patterns"):
        if key not in raw:
            raise fail(f"missing required key '{key}'")
    description = raw["description"]
    if not isinstance(description, str) or not description.strip():
        raise fail("'description' must be a non-empty string")
    try:
        severity = Severity.parse(raw["severity"]) if isinstance(raw["severity"], str) else None
    except ValueError as exc:
        raise fail(f"bad severity: {exc}") from None
    if severity is None:
        raise fail(f"bad severity {raw['severity']!r} (expected info, low, medium, high or critical)")
    targets_raw = raw["target"]
    targets_list = [targets_raw] if isinstance(targets_raw, str) else targets_raw
    if (
        not isinstance(targets_list, list)
        or not targets_list
        or any(t not in TARGETS for t in targets_list)
    ):
        raise fail(f"bad target {targets_raw!r} (expected one of {list(TARGETS)} or a list of them)")
    case_sensitive = raw.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise fail("'case_sensitive' must be true or false")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail("'enabled' must be true or false")
    for key in ("classification", "category"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise fail(f"'{key}' must be a non-empty string")
    patterns = _parse_patterns(raw["patterns"], fail, case_sensitive)
    condition = raw.get("condition", "any")
    if not isinstance(condition, str) or not (m := CONDITION_RE.match(condition.strip())):
        raise fail(f"bad condition {condition!r} (expected 'any', 'all' or 'at_least:N')")
    if m.group(1) == "any":
        min_matches = 1
    elif m.group(1) == "all":
        min_matches = len(patterns)
    else:
        min_matches = int(m.group(2))
        if not 1 <= min_matches <= len(patterns):
            raise fail(
                f"bad condition {condition!r}: N must be between 1 and the number of patterns "
                f"({len(patterns)})"
            )
    strength = raw.get("strength", default_strength(severity))
    if strength not in RULE_STRENGTHS:
        raise fail(f"bad strength {strength!r} (expected one of {', '.join(RULE_STRENGTHS)})")
    if not enabled:
        return None
    return Rule(
        id=rule_id,
        description=description.strip(),
        severity=severity,
        targets=tuple(dict.fromkeys(targets_list)),
        patterns=patterns,
        min_matches=min_matches,
        case_sensitive=case_sensitive,
        classification=raw.get("classification"),
        category=raw.get("category", "signature"),
        source=source,
        strength=strength,
    )


def default_strength(severity: Severity) -> str:
    """What a rule's match proves when the rule does not say: a critical rule is decisive (it
    forces MALICIOUS), any other a trait. TOML and YARA rules share this default."""
    return "decisive" if severity is Severity.CRITICAL else "trait"


def _parse_patterns(raw: Any, fail: Any, case_sensitive: bool) -> tuple[Pattern, ...]:
    if not isinstance(raw, list) or not raw:
        raise fail("'patterns' must be a non-empty list of {literal = \"...\"} or {regex = \"...\"}")
    if len(raw) > MAX_PATTERNS_PER_RULE:
        raise fail(f"too many patterns ({len(raw)} > {MAX_PATTERNS_PER_RULE})")
    out: list[Pattern] = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"literal": item}  # a bare string is a literal: convenient and unambiguous
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in PATTERN_KINDS:
            raise fail(f"patterns[{i}] must be a table with exactly one key, 'literal' or 'regex'")
        kind, value = next(iter(item.items()))
        if not isinstance(value, str) or not value:
            raise fail(f"patterns[{i}].{kind} must be a non-empty string")
        if len(value) > MAX_PATTERN_CHARS:
            raise fail(f"patterns[{i}].{kind} is longer than {MAX_PATTERN_CHARS} characters")
        if kind == "regex":
            problem = regex_problem(value, case_sensitive)
            if problem:
                raise fail(f"bad regex in patterns[{i}] {value!r}: {problem}")
        out.append(Pattern(kind, value))
    return tuple(out)


def regex_problem(pattern: str, case_sensitive: bool = True) -> str | None:
    """Why ``pattern`` is refused as a rule regex, or None when it is fine.

    Refused: syntax errors (under Python's ``re`` and, when installed, RE2), backreferences and
    lookaround (RE2 cannot run them), nested variable quantifiers such as ``(a+)+`` and
    alternations inside an unbounded or long repeat such as ``(a|ab)*`` (both backtrack
    exponentially under ``re``), and patterns that match the empty string (they would match
    every page). RE2 runs everything else in linear time; the ``re`` fallback still bounds the
    input, because adjacent quantifiers (``\\s*\\s*x``) are polynomial under backtracking.
    """
    try:
        parsed = _sre_parser.parse(pattern, 0 if case_sensitive else re.IGNORECASE)
    except re.error as exc:
        return f"invalid regex: {exc}"
    except RecursionError:
        return "regex nests too deeply"
    problem = _walk(parsed, unbounded_outer=False)
    if problem:
        return problem
    if re.compile(pattern).fullmatch("") is not None:
        return "it matches the empty string (it would match every page)"
    if HAVE_RE2:
        try:
            _re2.compile(pattern, _re2_options(case_sensitive))
        except Exception as exc:  # noqa: BLE001 - re2 raises re2.error and ValueError
            return f"RE2 cannot compile it: {exc}"
    return None


_UNBOUNDED = _sre_constants.MAXREPEAT


def _walk(parsed: Any, *, unbounded_outer: bool, multi_outer: bool = False) -> str | None:
    """Look through an ``sre`` parse tree for constructs a linear-time matcher cannot promise.

    ``unbounded_outer``: inside a repeat without a (small) upper bound; ``multi_outer``: inside
    any repeat that runs more than once. A variable repeat inside the former, or an unbounded
    one inside the latter, can be split in exponentially many ways when backtracking.
    """
    c = _sre_constants
    for op, arg in parsed:
        if op is c.GROUPREF or op is c.GROUPREF_EXISTS:
            return "backreferences are not supported (no linear-time matcher can run them)"
        if op in (c.ASSERT, c.ASSERT_NOT):
            return "lookahead/lookbehind is not supported (RE2 cannot run it)"
        if op is getattr(c, "ATOMIC_GROUP", ()) or op is getattr(c, "POSSESSIVE_REPEAT", ()):
            return "atomic groups and possessive quantifiers are not supported (RE2 cannot run them)"
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, body = arg
            variable = low != high  # a fixed count such as {4} cannot be split two ways
            unbounded = high is _UNBOUNDED or high > 32
            if variable and (unbounded_outer or (multi_outer and unbounded)):
                return "nested quantifiers such as (a+)+ or (.*a){3} can take exponential time; flatten it"
            problem = _walk(
                body,
                unbounded_outer=unbounded_outer or unbounded,
                multi_outer=multi_outer or high > 1,
            )
            if problem:
                return problem
        elif op is c.SUBPATTERN:
            problem = _walk(arg[-1], unbounded_outer=unbounded_outer, multi_outer=multi_outer)
            if problem:
                return problem
        elif op is c.BRANCH:
            if unbounded_outer:
                return (
                    "alternation inside a repeated group such as (a|ab)* can take exponential "
                    "time; use a character class or bound the repeat"
                )
            for branch in arg[1]:
                problem = _walk(branch, unbounded_outer=unbounded_outer, multi_outer=multi_outer)
                if problem:
                    return problem
    return None


def _backtrack_cost(parsed: Any, ignore_case: bool = False, *, top: bool = False) -> tuple[float, int]:
    """Rough worst-case work per start position under backtracking: (factor, unbounded count).

    A bounded repeat ``{a,b}`` multiplies the work by ``b - a + 1``; each unbounded one by the
    text length. A repeat fenced on both sides by characters its body cannot match
    (``eval\\s*\\(``) has one possible extent and runs that never overlap between start
    positions, so it costs nothing extra; a repeat followed by such a fence splits the pattern
    into segments whose costs add instead of multiplying. Used only by the ``re`` fallback to
    bound how much text a regex may see.
    """
    c = _sre_constants
    best: tuple[int, float] = (0, 1.0)  # (unbounded, factor) of the costliest closed segment
    seg_factor, seg_unbounded = 1.0, 0
    items = list(parsed)
    for index, (op, arg) in enumerate(items):
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, body = arg
            before = _edge_items(items[index - 1], last=True) if index > 0 else None
            after = _edge_items(items[index + 1], last=False) if index + 1 < len(items) else None
            fenced_before = _disjoint(body, before, ignore_case)
            # At the very end of the pattern a greedy repeat never has to give characters back.
            at_end = index + 1 == len(items)
            fenced_after = (top and at_end) or _disjoint(body, after, ignore_case)
            inner, inner_unbounded = _backtrack_cost(body, ignore_case)
            if fenced_before and fenced_after and inner_unbounded == 0 and inner == 1.0:
                best = max(best, (seg_unbounded, seg_factor))
                seg_factor, seg_unbounded = 1.0, 0
                continue
            if high is _UNBOUNDED:
                seg_unbounded += 1 + inner_unbounded
                seg_factor *= inner
            else:
                seg_factor *= (high - low + 1) * inner ** min(high, 8)
                seg_unbounded += inner_unbounded * min(high, 8)
            if fenced_after:  # the repeat's extent is forced: what follows adds, not multiplies
                best = max(best, (seg_unbounded, seg_factor))
                seg_factor, seg_unbounded = 1.0, 0
        elif op is c.SUBPATTERN:
            inner, inner_unbounded = _backtrack_cost(arg[-1], ignore_case)
            seg_factor *= inner
            seg_unbounded += inner_unbounded
        elif op is c.BRANCH:
            costs = [_backtrack_cost(branch, ignore_case) for branch in arg[1]]
            seg_factor *= sum(f for f, _ in costs)
            seg_unbounded += max(u for _, u in costs)
    best = max(best, (seg_unbounded, seg_factor))
    return min(best[1], 1e18), best[0]


_SINGLE_CHAR_OPS = ("LITERAL", "NOT_LITERAL", "IN", "ANY")
#: Characters tried when deciding whether two one-character matchers can match the same one.
_PROBES = [chr(i) for i in range(128)] + [
    "\u00a0", "\u2003", "\u00e9", "\u00c9", "\u65e5", "\u0430", "\ufeff",
]


def _edge_items(item: tuple[Any, Any], *, last: bool) -> list[tuple[Any, Any]] | None:
    """The one-character matchers that can start (or end) ``item``; None when unknown."""
    c = _sre_constants
    op, arg = item
    if op.name in _SINGLE_CHAR_OPS:
        return [item]
    if op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[0] >= 1 and len(arg[2]) == 1:
        return _edge_items(list(arg[2])[0], last=last)
    if op is c.SUBPATTERN and len(arg[-1]):
        inner = list(arg[-1])
        return _edge_items(inner[-1] if last else inner[0], last=last)
    if op is c.BRANCH:
        out: list[tuple[Any, Any]] = []
        for branch in arg[1]:
            inner = list(branch)
            edge = _edge_items(inner[-1] if last else inner[0], last=last) if inner else None
            if edge is None:
                return None
            out += edge
        return out
    return None


def _disjoint(body: Any, edges: list[tuple[Any, Any]] | None, ignore_case: bool) -> bool:
    """Whether a one-character repeat body and the edge matchers never match the same char."""
    body_items = list(body)
    if edges is None or len(body_items) != 1 or body_items[0][0].name not in _SINGLE_CHAR_OPS:
        return False
    for ch in _PROBES:
        variants = {ch, ch.lower(), ch.upper()} if ignore_case else {ch}
        variants = {v for v in variants if len(v) == 1}
        if any(_char_matches(body_items[0], v) for v in variants) and any(
            _char_matches(edge, v) for edge in edges for v in variants
        ):
            return False
    return True


def _char_matches(item: tuple[Any, Any], ch: str) -> bool:
    c = _sre_constants
    op, arg = item
    code = ord(ch)
    if op is c.LITERAL:
        return bool(arg == code)
    if op is c.NOT_LITERAL:
        return bool(arg != code)
    if op is c.ANY:
        return ch != "\n"
    if op is c.IN:
        return _in_set(arg, code)
    return True


def _in_set(members: Any, code: int) -> bool:
    c = _sre_constants
    negate = False
    found = False
    ch = chr(code)
    for op, arg in members:
        if op is c.NEGATE:
            negate = True
        elif op is c.LITERAL:
            found = found or arg == code
        elif op is c.RANGE:
            found = found or arg[0] <= code <= arg[1]
        elif op is c.CATEGORY:
            tests = {
                c.CATEGORY_SPACE: ch.isspace(),
                c.CATEGORY_NOT_SPACE: not ch.isspace(),
                c.CATEGORY_DIGIT: ch.isdigit(),
                c.CATEGORY_NOT_DIGIT: not ch.isdigit(),
                c.CATEGORY_WORD: ch.isalnum() or ch == "_",
                c.CATEGORY_NOT_WORD: not (ch.isalnum() or ch == "_"),
            }
            found = found or tests.get(arg, True)
        else:
            return True  # unknown member kind: assume it matches
    return found != negate


def required_literals(pattern: str, flags: int = 0) -> list[str] | None:
    """Lower-cased literals one of which every match of ``pattern`` contains, or None.

    The ``re`` fallback runs a regex only when one of its literals occurs in the text (found in
    the same Aho-Corasick pass as the rule literals), which skips most regexes on most texts.
    """
    try:
        return _anchors(_sre_parser.parse(pattern, flags))
    except (re.error, RecursionError):
        return None


def _anchors(parsed: Any) -> list[str] | None:
    c = _sre_constants
    items = list(parsed)
    best = ""
    run: list[str] = []
    nested: list[str] | None = None
    for op, arg in items + [(None, None)]:
        if op is c.LITERAL:
            run.append(chr(arg))
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
        if nested is None:
            if op is c.BRANCH:
                options = [_anchors(branch) for branch in arg[1]]
                if all(options):
                    nested = [a for option in options for a in option or ()]
            elif op is c.SUBPATTERN:
                nested = _anchors(arg[-1])
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[0] >= 1:
                nested = _anchors(arg[2])
    if len(best) >= 3 or (best and nested is None and len(best) >= 2):
        return [best.lower()]
    return nested


def fallback_scan_chars(pattern: str, flags: int = 0) -> int:
    """How many characters the ``re`` fallback lets ``pattern`` see, so that even its worst case
    (about ``n * factor * n ** unbounded`` steps) stays near :data:`FALLBACK_STEP_BUDGET`."""
    factor, unbounded = _backtrack_cost(
        _sre_parser.parse(pattern, flags), bool(flags & re.IGNORECASE), top=True
    )
    n = (FALLBACK_STEP_BUDGET / max(factor, 1.0)) ** (1.0 / (1 + unbounded))
    return int(min(FALLBACK_REGEX_SCAN_CHARS, max(1.0, n)))


def _re2_options(case_sensitive: bool) -> Any:
    options = _re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = 64 << 20
    return options


# -- matching --------------------------------------------------------------------------------


@dataclass
class _TargetMatcher:
    """Every pattern of every rule for one target, compiled for as few passes as possible.

    With RE2, literals and regexes together form one RE2 set run once over the UTF-8 bytes
    (measured: about 4x the throughput of pyahocorasick on ``str``), and only the patterns the
    set reports are searched again, for their first offset. Very large literal lists (more than
    :data:`MAX_LITERALS_IN_RE2_SET`) go to Aho-Corasick instead, which scales to any number.
    Without RE2: Aho-Corasick for literals, Python ``re`` (bounded input) for regexes.
    """

    rules: list[Rule]
    #: Aho-Corasick automata over lower-cased literals (case-insensitive rules) and exact ones.
    folded: Any = None
    exact: Any = None
    #: Patterns in the RE2 set (or the fallback regex list): keys and single compiled forms.
    set_keys: list[tuple[int, int]] = field(default_factory=list)
    regex_set: Any = None
    singles: list[Any] = field(default_factory=list)
    #: Fallback only: characters each regex may see (see :func:`fallback_scan_chars`), and an
    #: automaton of required literals -> regex entries (regexes without one always run).
    scan_limits: list[int] = field(default_factory=list)
    anchors: Any = None
    unanchored: list[int] = field(default_factory=list)

    def scan(self, text: str) -> list[RuleHit]:
        if not text:
            return []
        first: dict[tuple[int, int], tuple[int, int]] = {}
        lowered = text.lower() if self.folded is not None or self.anchors is not None else ""
        if self.folded is not None:
            _scan_automaton(self.folded, lowered, first)
        if self.exact is not None:
            _scan_automaton(self.exact, text, first)
        if self.set_keys:
            if self.regex_set is not None:
                self._scan_re2(text, first)
            else:
                self._scan_re(text, lowered, first)
        if not first:
            return []
        by_rule: dict[int, list[tuple[int, int, int]]] = {}
        for (rule_index, pattern_index), (start, end) in first.items():
            by_rule.setdefault(rule_index, []).append((pattern_index, start, end))
        hits = []
        for rule_index, spans in by_rule.items():
            rule = self.rules[rule_index]
            if len(spans) >= rule.min_matches:
                hits.append(RuleHit(rule, tuple(sorted(spans))))
        return hits

    def _scan_re2(self, text: str, first: dict[tuple[int, int], tuple[int, int]]) -> None:
        data = text.encode("utf-8", errors="surrogatepass")
        matched = self.regex_set.Match(data)
        if not matched:
            return
        ascii_only = len(data) == len(text)
        for entry in matched:
            m = self.singles[entry].search(data)
            if m is None:
                continue
            start, end = m.start(), m.end()
            if not ascii_only:  # byte offsets -> character offsets
                start = len(data[:start].decode("utf-8", errors="surrogatepass"))
                end = start + len(data[m.start() : end].decode("utf-8", errors="surrogatepass"))
            first.setdefault(self.set_keys[entry], (start, end))

    def _scan_re(self, text: str, lowered: str, first: dict[tuple[int, int], tuple[int, int]]) -> None:
        entries = set(self.unanchored)
        if self.anchors is not None:
            for _, anchored in self.anchors.iter(lowered):
                entries.update(anchored)
        # Skip the regexes of rules that cannot reach their condition any more.
        possible: dict[int, int] = {}
        for rule_index, _ in first:
            possible[rule_index] = possible.get(rule_index, 0) + 1
        for entry in entries:
            rule_index = self.set_keys[entry][0]
            possible[rule_index] = possible.get(rule_index, 0) + 1
        entries = {
            e for e in entries if possible[self.set_keys[e][0]] >= self.rules[self.set_keys[e][0]].min_matches
        }
        for entry in sorted(entries):
            regex = self.singles[entry]
            m = regex.search(text, 0, self.scan_limits[entry])
            if m is not None:
                first.setdefault(self.set_keys[entry], (m.start(), m.end()))


def _scan_automaton(automaton: Any, text: str, first: dict[tuple[int, int], tuple[int, int]]) -> None:
    seen_literals: set[int] = set()
    for end, (literal_index, length, keys) in automaton.iter(text):
        if literal_index in seen_literals:
            continue  # this literal matched before: its first offset is already recorded
        seen_literals.add(literal_index)
        start = end - length + 1
        for key in keys:
            first.setdefault(key, (start, end + 1))


class RuleSet:
    """Compiled rules: ``scan(target, text)`` returns the rules that match ``text``."""

    def __init__(self, rules: Sequence[Rule], *, use_re2: bool | None = None) -> None:
        self.rules = list(rules)
        self.use_re2 = HAVE_RE2 if use_re2 is None else (use_re2 and HAVE_RE2)
        self._matchers: dict[str, _TargetMatcher] = {}
        for target in TARGETS:
            chosen = [r for r in self.rules if target in r.targets]
            if chosen:
                self._matchers[target] = self._compile(chosen)

    @property
    def engine(self) -> str:
        return "re2" if self.use_re2 else "re (bounded)"

    def targets(self) -> list[str]:
        return list(self._matchers)

    def scan(self, target: str, text: str) -> list[RuleHit]:
        matcher = self._matchers.get(target)
        return matcher.scan(text) if matcher is not None else []

    def _compile(self, rules: list[Rule]) -> _TargetMatcher:
        matcher = _TargetMatcher(rules=rules)
        literal_count = sum(1 for r in rules for p in r.patterns if p.kind == "literal")
        literals_in_set = self.use_re2 and literal_count <= MAX_LITERALS_IN_RE2_SET
        folded: dict[str, list[tuple[int, int]]] = {}
        exact: dict[str, list[tuple[int, int]]] = {}
        set_patterns: list[tuple[str, bool]] = []
        for rule_index, rule in enumerate(rules):
            for pattern_index, pattern in enumerate(rule.patterns):
                key = (rule_index, pattern_index)
                if pattern.kind == "literal" and not literals_in_set:
                    if rule.case_sensitive:
                        exact.setdefault(pattern.value, []).append(key)
                    else:
                        folded.setdefault(pattern.value.lower(), []).append(key)
                    continue
                value = _re2.escape(pattern.value) if pattern.kind == "literal" else pattern.value
                matcher.set_keys.append(key)
                set_patterns.append((value, rule.case_sensitive))
        matcher.folded = _automaton(folded)
        matcher.exact = _automaton(exact)
        if not set_patterns:
            return matcher
        if not self.use_re2:
            anchors: dict[str, list[int]] = {}
            for entry, (value, case_sensitive) in enumerate(set_patterns):
                flags = 0 if case_sensitive else re.IGNORECASE
                matcher.singles.append(re.compile(value, flags))
                matcher.scan_limits.append(fallback_scan_chars(value, flags))
                required = required_literals(value, flags)
                if required is None:
                    matcher.unanchored.append(entry)
                for literal in required or ():
                    anchors.setdefault(literal, []).append(entry)
            if anchors:
                automaton = ahocorasick.Automaton()
                for literal, entries in anchors.items():
                    automaton.add_word(literal, tuple(entries))
                automaton.make_automaton()
                matcher.anchors = automaton
            return matcher
        regex_set = _re2.Set.SearchSet(_re2_options(True))
        for value, case_sensitive in set_patterns:
            matcher.singles.append(_re2.compile(value, _re2_options(case_sensitive)))
            regex_set.Add(value if case_sensitive else f"(?i:{value})")
        try:
            regex_set.Compile()
        except Exception as exc:  # noqa: BLE001 - re2 reports memory limits this way
            raise RuleError(f"the rules' patterns cannot be compiled together: {exc}") from None
        matcher.regex_set = regex_set
        return matcher


def _automaton(literals: dict[str, list[tuple[int, int]]]) -> Any:
    if not literals:
        return None
    automaton = ahocorasick.Automaton()
    for index, (literal, keys) in enumerate(literals.items()):
        automaton.add_word(literal, (index, len(literal), tuple(keys)))
    automaton.make_automaton()
    return automaton
