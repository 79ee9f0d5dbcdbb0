"""YARA rules, compiled and run by YARA-X (the VirusTotal rewrite of YARA in Rust).

Security teams already keep YARA rules (public web-skimmer and phishing-kit sets, their own);
``[engine.signatures] yara_files`` loads them next to the TOML rules of :mod:`.rules`. The
format is YARA's own (docs/yara.md has a worked example); this module decides only what YARA
does not say:

* **what a rule runs on** (:func:`rule_targets`): the tags ``url``, ``html`` and ``script``
  (any case, any combination) choose the texts a rule is offered; a rule without any of them
  takes its namespace's target when the namespace (its file's name) is ``url``, ``html`` or
  ``script`` (``rules/script.yar``), and otherwise runs on the HTML and on each script.
  Conditions can narrow that further with two external
  variables, set before each text is scanned: ``target`` (``"url"``, ``"html"`` or
  ``"script"``) and ``url`` (the address of the page the text belongs to);
* **what a match means**: the metadata ``description``, ``severity``, ``classification``,
  ``category`` and ``strength`` have the meaning (and the defaults) of the TOML rule keys of the
  same names (``engine/data/default_rules.toml``), except ``severity``, which defaults to
  ``medium`` because public rule sets do not carry it. Every other metadata key (author,
  reference, date, hash ...) is ignored. Each rule is a catalogue entry
  ``signatures.yara.<namespace>.<rule>``, the namespace being its file's name;
* **what counts as broken**: a rule file that does not compile, or a metadata value of the wrong
  type or outside its set, stops start-up with ``file:line:column`` and YARA-X's message (the
  metadata checks are YARA-X linters, so they point at the line too).

Texts are scanned as UTF-8 (the characters the browser decoded, encoded again), so offsets are
turned back into character offsets for evidence. Each text's scan stops after a timeout; the
signatures layer then reports an incomplete scan, never a clean one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yara_x

from .errors import RuleError
from .results import Severity
from .rules import RULE_STRENGTHS, TARGETS, default_strength

log = logging.getLogger(__name__)

YARA_SUFFIXES = (".yar", ".yara")
#: Targets of a rule that has none of the target tags.
DEFAULT_TARGETS = ("html", "script")
#: External variables every rule may test, with the type YARA-X checks them against.
EXTERNALS = {"target": "", "url": ""}
DEFAULT_SEVERITY = Severity.MEDIUM
#: What a scan raises when it cannot finish (the text then counts as not scanned).
SCAN_ERRORS = (yara_x.ScanError, yara_x.TimeoutError)
#: Metadata with a meaning here: key -> the regex its (string) value must match.
META_VALUES = {
    "description": r"\S",
    "severity": rf"^(?i:{'|'.join(s.name.lower() for s in Severity)})$",
    "classification": r"\S",
    "category": r"\S",
    "strength": rf"^({'|'.join(RULE_STRENGTHS)})$",
}
#: What a metadata value must be, in words (YARA-X's linter message quotes the regex above).
META_HELP = {
    "description": "a non-empty string",
    "severity": f"one of {', '.join(s.name.lower() for s in Severity)}",
    "classification": "a non-empty string",
    "category": "a non-empty string",
    "strength": f"one of {', '.join(RULE_STRENGTHS)}",
}
#: Diagnostics shown per failed compilation (the first is the one that matters).
MAX_DIAGNOSTICS = 10
_NAMESPACE_CHARS = re.compile(r"[^A-Za-z0-9_]")
_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))

try:
    YARA_X_VERSION = metadata.version("yara-x")
except metadata.PackageNotFoundError:  # pragma: no cover - a source build without metadata
    YARA_X_VERSION = "unknown"


@dataclass(frozen=True, slots=True)
class YaraRule:
    """One compiled YARA rule as the signatures layer sees it (the same fields as a TOML rule,
    so that :func:`~.layers.signatures.rule_spec` turns either into a catalogue entry)."""

    id: str  # "yara.<namespace>.<identifier>"
    namespace: str
    identifier: str
    description: str
    severity: Severity
    targets: tuple[str, ...]
    classification: str | None
    category: str
    strength: str
    source: str


@dataclass(frozen=True, slots=True)
class YaraHit:
    """A rule that matched one text: the first match of each of its patterns that matched,
    as (pattern identifier, start, end) in characters of the text."""

    rule: YaraRule
    spans: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One error or warning of YARA-X, with where it points."""

    level: str  # "error" | "warning"
    file: str
    line: int
    column: int
    code: str
    title: str
    detail: str

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail and self.detail != self.title else ""
        return f"{self.file}:{self.line}:{self.column}: {self.level}[{self.code}]: {self.title}{detail}"

    @classmethod
    def from_yara(cls, level: str, report: dict[str, Any]) -> Diagnostic:
        labels = report.get("labels") or [{}]
        label = labels[0]
        detail = str(label.get("text", ""))
        key = re.fullmatch(r"metadata `(\w+)` is not valid", str(report.get("title", "")))
        if key and key.group(1) in META_HELP:
            detail = f"'{key.group(1)}' must be {META_HELP[key.group(1)]}"
        return cls(
            level=level,
            file=str(label.get("code_origin") or ""),
            line=int(label.get("line") or report.get("line") or 0),
            column=int(label.get("column") or report.get("column") or 0),
            code=str(report.get("code", "")),
            title=str(report.get("title", "")),
            detail=detail,
        )


@dataclass(frozen=True)
class Compiled:
    """The outcome of compiling some YARA files: the rules, or the errors, and the warnings."""

    rules: YaraRuleSet | None
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]


def yara_rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.yar``/``.yara`` files named by ``paths``: files as given, folders searched
    recursively (sorted, so every worker compiles the same rules in the same order)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in YARA_SUFFIXES)
            if not found:
                raise RuleError(f"{path}: no .yar or .yara files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise RuleError(f"{path}: no such YARA rule file or folder")
    return list(dict.fromkeys(files))


def namespace_of(path: Path) -> str:
    """A file's namespace: its name without the suffix, letters, digits and '_' only."""
    return _NAMESPACE_CHARS.sub("_", path.stem) or "_"


def compile_yara(paths: Iterable[str | Path]) -> Compiled:
    """Compile every YARA file of ``paths`` into one rule set, one namespace per file.

    Errors of the rule language come back as diagnostics (``rules check`` prints them all;
    :func:`load_yara_rules` raises them); what lies outside it (a missing file, two files with
    one namespace, a metadata key given twice) raises :class:`RuleError`.
    """
    files = yara_rule_files(paths)
    namespaces: dict[str, Path] = {}
    for path in files:
        other = namespaces.setdefault(namespace_of(path), path)
        if other != path:
            raise RuleError(
                f"{path}: its namespace '{namespace_of(path)}' (the file's name) is already used by {other}; "
                "rename one of them"
            )
    compiler = yara_x.Compiler()
    for name, value in EXTERNALS.items():
        compiler.define_global(name, value)
    for key, pattern in META_VALUES.items():
        # By keyword: yara-x's stub lists the parameters in another order than the extension takes
        # them, and types MetaType's members as int.
        compiler.allowed_metadata(key, yara_x.MetaType.STRING, required=False, error=True,  # type: ignore[arg-type]
                                  regexp=pattern)
    for folder in dict.fromkeys(path.resolve().parent for path in files):
        compiler.add_include_dir(str(folder))  # `include "x.yar"` is relative to the file's folder
    origins: dict[str, str] = {}
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(f"{path}: cannot read: {exc}") from None
        namespace = namespace_of(path)
        origins[namespace] = str(path)
        compiler.new_namespace(namespace)
        try:
            compiler.add_source(source, origin=str(path))
        except yara_x.CompileError:
            pass  # collected below, with every other error of every file
    warnings = tuple(Diagnostic.from_yara("warning", w) for w in compiler.warnings())
    errors = tuple(Diagnostic.from_yara("error", e) for e in compiler.errors())
    if errors:
        return Compiled(None, errors, warnings)
    compiled = compiler.build()
    rules = [_rule_from(rule, origins.get(rule.namespace, "")) for rule in compiled]
    return Compiled(YaraRuleSet(compiled, rules), (), warnings)


def load_yara_rules(paths: Sequence[str | Path]) -> YaraRuleSet:
    """Compile ``paths`` or raise :class:`RuleError` with ``file:line:column`` and the message."""
    result = compile_yara(paths)
    if result.rules is None:
        shown = [str(d) for d in result.errors[:MAX_DIAGNOSTICS]]
        more = len(result.errors) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more (malwaresnipper rules check lists them all)")
        raise RuleError("YARA rules do not compile: " + "\n".join(shown))
    if result.warnings:
        log.warning("YARA-X has %d warning(s) about the rules in %s (slow patterns ...): "
                    "malwaresnipper rules check lists them; first: %s",
                    len(result.warnings), ", ".join(map(str, paths)), result.warnings[0])
    return result.rules


def rule_targets(tags: Iterable[str], namespace: str = "") -> tuple[str, ...]:
    """The texts a rule runs on: its target tags, else its namespace when that names a target,
    else :data:`DEFAULT_TARGETS` (see the module docstring)."""
    lowered = {tag.lower() for tag in tags}
    chosen = tuple(t for t in TARGETS if t in lowered)
    if chosen:
        return chosen
    return (namespace.lower(),) if namespace.lower() in TARGETS else DEFAULT_TARGETS


def _rule_from(compiled: Any, source: str) -> YaraRule:
    """Map a compiled rule's metadata onto the fields of a signature rule.

    Types and values were checked by the compiler's linters (with line numbers); what is left
    here is a key given twice, which YARA allows and which would be ambiguous here.
    """
    where = f"{source}: rule '{compiled.identifier}'"
    meta: dict[str, str] = {}
    for key, value in compiled.metadata:
        if key in META_VALUES:
            if key in meta:
                raise RuleError(f"{where}: metadata '{key}' is given twice")
            meta[key] = str(value).strip()
    severity = Severity.parse(meta["severity"]) if "severity" in meta else DEFAULT_SEVERITY
    return YaraRule(
        id=f"yara.{compiled.namespace}.{compiled.identifier}",
        namespace=compiled.namespace,
        identifier=compiled.identifier,
        description=meta.get("description") or f"YARA rule {compiled.namespace}.{compiled.identifier} matched",
        severity=severity,
        targets=rule_targets(compiled.tags, compiled.namespace),
        classification=meta.get("classification"),
        category=meta.get("category", "signature"),
        strength=meta.get("strength", default_strength(severity)),
        source=source,
    )


class YaraRuleSet:
    """Compiled YARA rules; :meth:`scanner` gives a scanner for one capture."""

    def __init__(self, compiled: Any, rules: Sequence[YaraRule]) -> None:
        self._compiled = compiled
        self.rules = list(rules)
        self._by_name = {(r.namespace, r.identifier): r for r in self.rules}

    def scanner(self, url: str, *, timeout_s: int = 2) -> YaraScanner:
        """A scanner for the texts of the page at ``url`` (YARA-X scanners are not shared
        between threads; making one costs about ten microseconds)."""
        return YaraScanner(self, url, timeout_s)


class YaraScanner:
    """Scans the texts of one capture: ``scan(target, text)`` returns the rules that matched."""

    def __init__(self, ruleset: YaraRuleSet, url: str, timeout_s: int) -> None:
        self._ruleset = ruleset
        self._scanner = yara_x.Scanner(ruleset._compiled)
        # Only the first match of a pattern is shown as evidence; counts (#a) stay exact.
        self._scanner.fast_scan(True)
        # YARA-X checks its timeout on a heartbeat that ticks once a second, so a timeout of N
        # seconds stops a scan after N-1 to N seconds: a scan is given at least timeout_s - 1.
        self._scanner.set_timeout(max(2, int(timeout_s)))
        self._scanner.set_global("url", url)

    def scan(self, target: str, text: str) -> list[YaraHit]:
        """Rules offered ``target`` that match ``text``. Raises ``yara_x.TimeoutError`` when the
        scan runs out of time (the caller records the text as not scanned)."""
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}")
        data = text.encode("utf-8", errors="surrogatepass")
        self._scanner.set_global("target", target)
        results = self._scanner.scan(data)
        hits: list[YaraHit] = []
        for matched in results.matching_rules:
            rule = self._ruleset._by_name.get((matched.namespace, matched.identifier))
            if rule is None or target not in rule.targets:
                continue
            spans = []
            for pattern in matched.patterns:
                if pattern.matches:
                    first = pattern.matches[0]
                    start, end = _char_span(data, len(text), first.offset, first.offset + first.length)
                    spans.append((pattern.identifier, start, end))
            hits.append(YaraHit(rule, tuple(spans)))
        return hits


def _char_span(data: bytes, chars: int, start: int, end: int) -> tuple[int, int]:
    """Byte offsets of a match in ``data`` (UTF-8) as character offsets of the text: a span
    that starts inside a character starts at that character."""
    if len(data) == chars:
        return start, end
    lead_bytes_before = len(data[: start + 1].translate(None, _UTF8_CONTINUATION))
    return max(0, lead_bytes_before - 1), len(data[:end].translate(None, _UTF8_CONTINUATION))
