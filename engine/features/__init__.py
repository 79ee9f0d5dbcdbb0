"""Feature extraction shared by the layers and the models: raw text in, facts and numbers out.

:class:`Features` is a per-scan cache: each extractor runs at most once per capture, whichever
layers ask for it, and the ml layer reads the same values the heuristic layers do (one source of
truth for training and for scanning).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from ..capture import Capture, DomFacts, Script

if TYPE_CHECKING:
    from .behaviour import ScriptFacts
    from ..known_code import KnownCode, KnownCodeMatch
    from .html import ParsedPage
    from .javascript import JsFeatures
    from .url import UrlFeatures

#: Bump when any extractor's output changes; models record it and refuse a mismatch.
FEATURE_VERSION = "1"


@dataclass(frozen=True, slots=True)
class ScriptView:
    """A script to analyse, with a stable place name for evidence."""

    index: int
    script: Script
    text: str
    location: str


class Features:
    """Lazily computed facts about one capture, shared by all layers of one scan."""

    def __init__(self, capture: Capture, known_code: KnownCode | None = None) -> None:
        """``known_code`` (the engine's databases) lets layers skip known library code."""
        self.capture = capture
        self.known_code = known_code
        self._js: dict[int, JsFeatures] = {}
        self._behaviour: dict[int, ScriptFacts] = {}
        self._known: dict[int, KnownCodeMatch | None] = {}

    @cached_property
    def url(self) -> UrlFeatures:
        from .url import extract_url_features

        return extract_url_features(self.capture.url)

    @cached_property
    def page(self) -> ParsedPage | None:
        """The parsed HTML, or None when the capture carries none."""
        if not self.capture.html:
            return None
        from .html import parse_html

        return parse_html(self.capture.html, self.capture.url)

    @cached_property
    def dom(self) -> DomFacts | None:
        """DOM facts: the browser's (extension) when present, else derived from the HTML."""
        if self.capture.dom is not None:
            return self.capture.dom
        return self.page.dom if self.page is not None else None

    @cached_property
    def title(self) -> str:
        if self.capture.title:
            return self.capture.title
        return self.page.title if self.page is not None else ""

    @cached_property
    def scripts(self) -> tuple[ScriptView, ...]:
        """Every script with text: the capture's own, then inline scripts found in its HTML."""
        views: list[ScriptView] = []
        seen: set[str] = set()
        for script in self.capture.scripts:
            if script.text:
                seen.add(script.sha256 or "")
                views.append(ScriptView(len(views), script, script.text, _location(len(views), script)))
        if self.page is not None:
            for script in self.page.inline_scripts:
                if script.text and (script.sha256 or "") not in seen:
                    seen.add(script.sha256 or "")
                    views.append(ScriptView(len(views), script, script.text, _location(len(views), script)))
        return tuple(views)

    # -- known code (issue 14 item 3; the lead moves the indicators into the findings catalogue) --

    def known(self, view: ScriptView) -> KnownCodeMatch | None:
        """What the known-code databases say about a script (None without databases)."""
        if self.known_code is None:
            return None
        if view.index not in self._known:
            from ..known_code.matcher import cached_match

            self._known[view.index] = cached_match(self.known_code, view.text, truncated=view.script.truncated)
        return self._known[view.index]

    @cached_property
    def analysed_scripts(self) -> tuple[ScriptView, ...]:
        """The scripts the heavy per-script analysis (javascript layer, JS model) should read.

        An unmodified known library is left out; a known library with foreign code is replaced
        by its foreign part alone (a view of its own, so its features are its own); any other
        script is itself. Without known-code databases, every script.
        """
        from ..known_code import Status

        views: list[ScriptView] = []
        for view in self.scripts:
            match = self.known(view)
            if match is None or match.status is Status.UNKNOWN:
                views.append(view)
            elif match.status is Status.FOREIGN:
                where = ", ".join(f"{s:,}-{e:,}" for s, e in match.foreign[:3])
                views.append(ScriptView(
                    len(self.scripts) + view.index, view.script, match.foreign_text(view.text),
                    f"{view.location} (foreign code at characters {where})",
                ))
        return tuple(views)

    def js(self, view: ScriptView) -> JsFeatures:
        """Static features of one script (cached per scan)."""
        if view.index not in self._js:
            from .javascript import extract_js_features

            self._js[view.index] = extract_js_features(view.text)
        return self._js[view.index]

    def behaviour(self, view: ScriptView) -> ScriptFacts:
        """Behaviour facts of one script from the parser (cached per scan and per process).

        Only scripts (or parts of scripts) that could hold a behaviour are parsed
        (:func:`.behaviour.parse_plan`); the others get facts with ``skipped`` saying so.
        """
        if view.index not in self._behaviour:
            from .behaviour import script_behaviour

            self._behaviour[view.index] = script_behaviour(self.js(view), view.text)
        return self._behaviour[view.index]


def _location(index: int, script: Script) -> str:
    if script.url:
        return f"script #{index + 1} {script.url}"
    return f"script #{index + 1} (inline)"
