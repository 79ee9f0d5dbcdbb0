"""One catalogue of findings: what every indicator means, how much it counts, and what it proves.

Findings are values (:class:`Finding`); what a finding *is* lives in one catalogue, data in
``engine/data/findings.toml`` (and the signature rules, which are catalogue entries of their
own): its id, the sentence a user reads, its severity, its points, its category, what it says
the page is, its *strength*, and a paragraph of documentation that ``docs/findings.md``
publishes. Layers only say which finding they saw, where, and fill in the title's blanks; one
function, :func:`combine`, turns a layer's findings into its score.

Strength is what a finding proves on its own, and the verdict's corroboration rule reads it
(``engine/verdict.py``):

* ``decisive``: a list the user keeps, a critical rule, a known-malicious hash: MALICIOUS alone;
* ``behaviour``: something harmful the content does (drops a file, sends form fields to another
  site, injects a hidden frame), measured rare on benign code: may make a verdict MALICIOUS;
* ``trait``: what benign code does too (run-time decoding, escapes, long hosts): only adds up;
* ``model``: a trained model's opinion: only adds up;
* ``context``: says how the scan went (a known library, a truncation); no points.

A verdict is MALICIOUS only with a decisive or a behaviour finding among its reasons, or with two
independent layers that each found something: one layer of traits or a model's score alone
makes it SUSPICIOUS at most (``engine/verdict.py``).
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

import tomllib

from .errors import ConfigError
from .results import Evidence, Indicator, Severity

CATALOGUE_FILE = Path(__file__).with_name("data") / "findings.toml"


class Strength(str, Enum):
    """What a finding proves on its own (see the module docstring)."""

    DECISIVE = "decisive"
    BEHAVIOUR = "behaviour"
    TRAIT = "trait"
    MODEL = "model"
    CONTEXT = "context"

    @property
    def corroborates(self) -> bool:
        """Whether a finding of this strength can carry a verdict to MALICIOUS."""
        return self in (Strength.DECISIVE, Strength.BEHAVIOUR)


@dataclass(frozen=True, slots=True)
class Variant:
    """One grade of a finding (``deep_subdomains`` with 3 levels is weaker than with 5)."""

    title: str
    severity: Severity
    points: float | None


@dataclass(frozen=True, slots=True)
class FindingSpec:
    """A catalogue entry. ``points`` None: the layer computes them (a model's calibrated score,
    a rule's weight); the title is a template whose ``{names}`` the layer fills in."""

    id: str
    layer: str
    title: str
    severity: Severity
    points: float | None
    category: str
    classification: str | None
    strength: Strength
    doc: str
    variants: Mapping[str, Variant] = field(default_factory=dict)

    @property
    def fields(self) -> frozenset[str]:
        """The blanks of the title (and of every variant's title)."""
        return frozenset().union(*(_blanks(t) for t in (self.title, *(v.title for v in self.variants.values()))))

    def variant(self, name: str) -> Variant:
        if not name:
            return Variant(self.title, self.severity, self.points)
        try:
            return self.variants[name]
        except KeyError:
            raise KeyError(f"finding {self.id!r} has no variant {name!r}") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding seen in one capture: which, where, and the title's blanks filled in."""

    spec: FindingSpec
    evidence: tuple[Evidence, ...] = ()
    values: tuple[tuple[str, str], ...] = ()
    variant: str = ""
    #: points computed by the layer (specs whose points are None)
    computed_points: float | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def points(self) -> float:
        grade = self.spec.variant(self.variant)
        points = grade.points if grade.points is not None else self.computed_points
        return float(points or 0.0)

    @property
    def severity(self) -> Severity:
        return self.spec.variant(self.variant).severity

    @property
    def title(self) -> str:
        return self.spec.variant(self.variant).title.format_map(dict(self.values))

    def with_evidence(self, evidence: Iterable[Evidence]) -> Finding:
        return replace(self, evidence=tuple(evidence))

    def indicator(self) -> Indicator:
        spec = self.spec
        return Indicator(id=spec.id, title=self.title, severity=self.severity, layer=spec.layer,
                         evidence=self.evidence, category=spec.category, classification=spec.classification,
                         strength=spec.strength.value)


def combine(points: Iterable[float]) -> float:
    """A layer's score from its findings' points: the noisy-OR ``100 * (1 - prod(1 - p/100))``,
    so one weak sign stays weak and independent signs add up. The one combination of findings."""
    log_keep = 0.0
    for p in points:
        p = min(max(float(p), 0.0), 99.0) / 100.0
        if p > 0:
            log_keep += math.log1p(-p)
    return 100.0 * (1.0 - math.exp(log_keep))


class Catalogue:
    """Every finding the engine can report, by id."""

    def __init__(self, specs: Iterable[FindingSpec]) -> None:
        self._specs: dict[str, FindingSpec] = {}
        for spec in specs:
            if spec.id in self._specs:
                raise ConfigError(f"finding {spec.id!r} is defined twice")
            self._specs[spec.id] = spec

    def __contains__(self, finding_id: object) -> bool:
        return finding_id in self._specs

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def spec(self, finding_id: str) -> FindingSpec:
        try:
            return self._specs[finding_id]
        except KeyError:
            raise KeyError(f"{finding_id!r} is not in the findings catalogue ({CATALOGUE_FILE.name})") from None

    def finding(self, finding_id: str, *evidence: Evidence, variant: str = "", points: float | None = None,
                **values: object) -> Finding:
        """A finding of catalogue entry ``finding_id``; ``values`` fill the title's blanks."""
        spec = self.spec(finding_id)
        grade = spec.variant(variant)
        if grade.points is None and points is None:
            raise ValueError(f"finding {finding_id!r} needs its points computed by the layer")
        missing = _blanks(grade.title) - values.keys()
        if missing:
            raise ValueError(f"finding {finding_id!r} needs {sorted(missing)} for its title")
        return Finding(spec, tuple(evidence), tuple((k, str(v)) for k, v in values.items()), variant, points)

    def extended(self, specs: Iterable[FindingSpec]) -> Catalogue:
        """This catalogue plus ``specs`` (the signature rules a configuration loads)."""
        return Catalogue([*self._specs.values(), *specs])

    def markdown(self) -> str:
        """The catalogue as a reference page (``docs/findings.md``)."""
        lines = [
            "# Findings",
            "",
            "Every indicator the engine can report, from `engine/data/findings.toml` (and the bundled",
            "signature rules). Generated by `malwaresnipper findings --markdown`; a test keeps this page",
            "equal to the catalogue. *Strength* is what a finding proves on its own: a verdict is",
            "MALICIOUS only with a `decisive` or a `behaviour` finding among its reasons, or with two",
            "independent layers that each found something (`engine/verdict.py`). *Points* feed the",
            "layer's noisy-OR score; \"computed\" ones come from a model or a rule.",
            "",
        ]
        by_layer: dict[str, list[FindingSpec]] = {}
        for spec in self._specs.values():
            by_layer.setdefault(spec.layer, []).append(spec)
        for layer in sorted(by_layer):
            lines += [f"## {layer}", "", "| id | title | severity | points | strength | category | means |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for spec in sorted(by_layer[layer], key=lambda s: s.id):
                grades = [spec.variant("")] if not spec.variants else list(spec.variants.values())
                title = " / ".join(dict.fromkeys(_md(g.title) for g in grades))
                severity = " / ".join(dict.fromkeys(g.severity.name.lower() for g in grades))
                points = " / ".join(dict.fromkeys("computed" if g.points is None else f"{g.points:g}" for g in grades))
                category = spec.category + (f" ({spec.classification})" if spec.classification else "")
                lines.append(f"| `{spec.id}` | {title} | {severity} | {points} | {spec.strength.value} | "
                             f"{category} | {_md(spec.doc)} |")
            lines.append("")
        return "\n".join(lines)


def _blanks(title: str) -> frozenset[str]:
    return frozenset(f for _, f, _, _ in string.Formatter().parse(title) if f)


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def spec_from_mapping(finding_id: str, data: Mapping[str, Any], *, source: str) -> FindingSpec:
    """One catalogue entry from its TOML table; errors name the entry and the file."""
    known = {"layer", "title", "severity", "points", "category", "classification", "strength", "doc", "variants"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{source}: finding {finding_id!r}: unknown key(s) {sorted(unknown)}")
    try:
        severity = Severity.parse(data["severity"])
        strength = Strength(data["strength"])
        points = data.get("points")
        variants = {
            name: Variant(str(v["title"]), Severity.parse(v["severity"]),
                          None if v.get("points") is None else float(v["points"]))
            for name, v in (data.get("variants") or {}).items()
        }
        return FindingSpec(
            id=finding_id, layer=str(data["layer"]), title=str(data["title"]), severity=severity,
            points=None if points is None else float(points), category=str(data["category"]),
            classification=data.get("classification") or None, strength=strength, doc=str(data["doc"]),
            variants=variants,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: finding {finding_id!r}: {exc}") from None


def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    specs = []
    for layer, entries in data.items():
        for name, entry in entries.items():
            spec = spec_from_mapping(f"{layer}.{name}", {"layer": layer, **entry}, source=str(path))
            specs.append(spec)
    return Catalogue(specs)


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The bundled catalogue (loaded once per process)."""
    return load_catalogue()
