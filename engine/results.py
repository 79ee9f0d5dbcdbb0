"""What a layer returns: a score and the indicators that explain it.

These types are plain frozen dataclasses with ``to_dict`` so that a result computed in a worker
process crosses the process boundary, the API and the event stream unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

#: Evidence snippets are cut to this many characters: enough to recognise, short enough to show.
MAX_SNIPPET = 160


class Severity(IntEnum):
    """How much an indicator matters. Ordered, so indicators sort by it."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        """Accept ``"high"``, ``"HIGH"``, ``3`` or ``Severity.HIGH``."""
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {value!r} (expected one of {names})") from None


def snippet(text: str, start: int = 0, end: int | None = None, context: int = 30, *, escape: bool = False) -> str:
    """A short piece of ``text`` around ``[start, end)``, for evidence.

    The snippet is raw page text: whoever renders it must escape it (the dashboard inserts it as
    text only). Control characters are replaced so that a log line stays one line; with
    ``escape``, every character that does not print (controls, zero-width and bidi marks, odd
    spaces) is written as ``\\n``, ``\\xNN`` or ``\\uNNNN`` instead, for matches of byte patterns (YARA).
    """
    if end is None:
        end = start
    lo = max(0, start - context)
    hi = min(len(text), max(end, start) + context)
    if hi - lo > MAX_SNIPPET:
        hi = lo + MAX_SNIPPET
    piece = text[lo:hi]
    if escape:
        piece = "".join(ch if ch.isprintable() else _escaped(ch) for ch in piece)
    else:
        piece = "".join(ch if ch >= " " or ch == "\t" else " " for ch in piece)
    prefix = "…" if lo > 0 else ""
    suffix = "…" if hi < len(text) else ""
    return f"{prefix}{piece}{suffix}"


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where an indicator was found and what matched there.

    ``location`` names the place in words a user follows: ``"url"``, ``"html"``,
    ``"script #2 (inline)"``, ``"script https://cdn.example/x.js"``, ``"form #1"``.
    ``offset`` is the character offset of the match inside that place, when known.
    """

    snippet: str
    location: str
    offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"snippet": self.snippet, "location": self.location, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(snippet=data["snippet"], location=data["location"], offset=data.get("offset"))


@dataclass(frozen=True, slots=True)
class Indicator:
    """One reason behind a verdict.

    ``id`` is stable across releases (``"js.eval_packer"``, ``"url.ip_host"``) so rules, tests and
    dashboards can refer to it; ``title`` is the sentence a user reads. ``category`` groups
    indicators for charts (obfuscation, phishing, cryptominer, ...). ``classification``, when set,
    is what this indicator says the page *is* (``"cryptominer"``), which the verdict may adopt.
    """

    id: str
    title: str
    severity: Severity
    layer: str
    evidence: tuple[Evidence, ...] = ()
    category: str = "general"
    classification: str | None = None
    #: what this indicator proves on its own (``engine.findings.Strength``): ``decisive`` or
    #: ``behaviour`` can carry a verdict to MALICIOUS; ``trait``, ``model``, ``context`` cannot
    strength: str = "trait"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity.name,
            "layer": self.layer,
            "category": self.category,
            "classification": self.classification,
            "strength": self.strength,
            "evidence": [e.to_dict() for e in self.evidence],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Indicator:
        return cls(
            id=data["id"],
            title=data["title"],
            severity=Severity.parse(data["severity"]),
            layer=data["layer"],
            category=data.get("category", "general"),
            classification=data.get("classification"),
            evidence=tuple(Evidence.from_dict(e) for e in data.get("evidence", ())),
            strength=data.get("strength", "trait"),
        )


@dataclass(frozen=True, slots=True)
class LayerResult:
    """A layer's answer: a score in [0, 100] and the indicators behind it.

    ``score`` is how malicious this layer alone thinks the capture is. ``confidence`` in [0, 1]
    says how much the layer could see (a URL-only capture gives the dom layer nothing to go on):
    the verdict weights each layer by ``weight * confidence``. ``details`` carries small numbers
    worth showing (feature values, model probabilities).
    """

    layer: str
    score: float
    indicators: tuple[Indicator, ...] = ()
    confidence: float = 1.0
    duration_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        # Clamp rather than raise: a layer's arithmetic slip must not crash a scan.
        object.__setattr__(self, "score", float(min(100.0, max(0.0, self.score))))
        object.__setattr__(self, "confidence", float(min(1.0, max(0.0, self.confidence))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "score": round(self.score, 4),
            "confidence": round(self.confidence, 4),
            "duration_ms": round(self.duration_ms, 3),
            "indicators": [i.to_dict() for i in self.indicators],
            "details": self.details,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerResult:
        return cls(
            layer=data["layer"],
            score=data["score"],
            confidence=data.get("confidence", 1.0),
            duration_ms=data.get("duration_ms", 0.0),
            indicators=tuple(Indicator.from_dict(i) for i in data.get("indicators", ())),
            details=dict(data.get("details") or {}),
            error=data.get("error"),
        )
