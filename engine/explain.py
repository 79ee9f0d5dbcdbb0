"""One plain voice: the sentences users read about a verdict, and which findings are reasons.

The block page, the extension's overlay and popup, and the notification say the same thing in the
same words, because they read one file, ``engine/data/explain.json``: a headline per
classification ("This page looks like a phishing page: it may try to steal your passwords or card
details."), one per threat level when no classification says more, and the rule of which
findings a user reads as reasons. The extension cannot read Python, so ``malwaresnipper extension
explain`` writes the same data into ``extension/lib/explain_data.js`` (a test keeps it current).

The reasons rule reads each finding's *strength* from the catalogue (:mod:`.findings`): a context
finding (a known library, a truncation) is never a reason; under "No threat found" only a
finding that proves something on its own is; otherwise the findings that carry the verdict. So
jQuery's own ``globalEval`` (a low ``trait``: run-time code, which benign libraries have) is not
listed as a reason under "No threat found", nor next to the skimmer that got a page blocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

EXPLAIN_FILE = Path(__file__).with_name("data") / "explain.json"


@lru_cache(maxsize=1)
def explain_data() -> dict[str, Any]:
    """The parsed ``explain.json`` (read once)."""
    data: dict[str, Any] = json.loads(EXPLAIN_FILE.read_text(encoding="utf-8"))
    return data


def headline(classification: str | None, level: str | None = "MALICIOUS") -> str:
    """The sentence that says what the page is: its classification's, else its level's."""
    data = explain_data()
    if level != "BENIGN" and classification and classification in data["headlines"]:
        return str(data["headlines"][classification])
    return str(data["levels"].get(level or "MALICIOUS", data["levels"]["MALICIOUS"]))


def _field(indicator: Any, name: str, default: str = "") -> str:
    value = indicator.get(name, default) if isinstance(indicator, Mapping) else getattr(indicator, name, default)
    if name == "severity" and not isinstance(value, str):  # an engine Severity
        value = getattr(value, "name", str(value))
    return str(value if value is not None else default)


def is_reason(indicator: Any, level: str, *, strong_only: bool) -> bool:
    """Whether ``indicator`` (an Indicator or its dict) may be shown to a user as a reason."""
    rule = explain_data()["reasons"]
    strength = _field(indicator, "strength", "trait").lower()
    if strength in rule["never"]:
        return False
    if level == "BENIGN":
        return strength in rule["benign"]
    if strong_only:
        return strength in rule["strong"] or _field(indicator, "severity").upper() in rule["notable_severities"]
    return True


def user_reasons(indicators: Iterable[Any], level: str, limit: int | None = None) -> list[Any]:
    """The findings a user reads as reasons for a verdict of ``level``, in the verdict's order
    (most severe first). The same rule runs in the extension (``userReasons``)."""
    items = list(indicators)
    limit = limit if limit is not None else int(explain_data()["reasons"]["limit"])
    chosen = [i for i in items if is_reason(i, level, strong_only=True)]
    if not chosen and level != "BENIGN":
        chosen = [i for i in items if is_reason(i, level, strong_only=False)]
    return chosen[:limit]


def extension_module() -> str:
    """``extension/lib/explain_data.js``: the same data as an ES module (generated; do not edit)."""
    data = {key: value for key, value in explain_data().items() if not key.startswith("_")}
    body = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)
    return ("// Generated from engine/data/explain.json by `malwaresnipper extension explain`: do not edit.\n"
            f"export const EXPLAIN = {body};\n")
