"""RiskEngine: run the enabled layers over a capture and merge them into a verdict.

Build one engine per process (layers compile rules and load models in their constructors) and
call :meth:`RiskEngine.scan` for each capture. ``scan`` never raises: a layer that fails becomes a
``engine.layer_error`` indicator and the scan goes on with the other layers.

The time budget (``[engine.limits] time_budget_ms``) counts this process's CPU time, not wall
time: whether a layer is skipped then depends on the content, not on how busy the machine is
(a skipped layer makes the verdict incomplete, which is never BENIGN, so a wall-clock budget
would turn load into false alarms). The pool's wall-clock timeout still bounds a scan that hangs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__
from .capture import Capture
from .config import EngineConfig
from .features import Features
from .findings import catalogue
from .known_code import KnownCode
from .layers.base import Layer, registered_layers
from .results import Evidence, Indicator, LayerResult
from .verdict import Verdict, build_verdict, combine_scores

log = logging.getLogger(__name__)

ENGINE_VERSION = __version__


@dataclass(frozen=True, slots=True)
class Progress:
    """Reported after each layer: the addon and the API turn it into a ``SCAN_UPDATE`` event."""

    layer: str
    done: int
    total: int
    partial_score: float

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 100


ProgressCallback = Callable[[Progress], None]


class RiskEngine:
    """The six layers behind one ``scan`` call."""

    def __init__(self, config: EngineConfig | None = None, *, layers: list[str] | None = None) -> None:
        """``layers`` restricts the run to some layers (``eval --layers`` ablations)."""
        self.config = config or EngineConfig()
        wanted = layers if layers is not None else self.config.layers.enabled
        extra = self.config.extra_layers
        self.layers: list[Layer] = [cls(self.config) for cls in registered_layers(extra)
                                    if cls.name in wanted or f"{cls.__module__}:{cls.__qualname__}" in extra]
        self.known_code = load_known_code(self.config)

    @property
    def model_versions(self) -> dict[str, str]:
        versions: dict[str, str] = {}
        for layer in self.layers:
            versions.update(getattr(layer, "model_versions", {}))
        return versions

    def scan(self, capture: Capture, progress: ProgressCallback | None = None) -> Verdict:
        """Score ``capture``; never raises."""
        started = time.perf_counter()
        cpu_started = time.process_time()
        budget_s = self.config.limits.time_budget_ms / 1000.0
        features = Features(capture, self.known_code)
        results: list[LayerResult] = []
        extra: list[Indicator] = []
        incomplete: list[str] = [f"cut: {note}" for note in capture.truncations]
        for index, layer in enumerate(self.layers):
            if time.process_time() - cpu_started > budget_s:
                skipped = [later.name for later in self.layers[index:]]
                extra.append(_budget_indicator(skipped, self.config.limits.time_budget_ms))
                incomplete.append(
                    f"the {self.config.limits.time_budget_ms} ms time budget ran out: "
                    f"{', '.join(skipped)} did not run"
                )
                break
            results.append(self._run_layer(layer, capture, features))
            if progress is not None:
                try:
                    progress(Progress(layer.name, index + 1, len(self.layers), combine_scores(results, self.config)))
                except Exception:  # a broken callback must not break the scan
                    log.exception("progress callback failed")
        incomplete += [f"the {r.layer} layer failed: {r.error}" for r in results if r.error]
        if capture.truncations:
            extra.append(_truncation_indicator(capture.truncations))
        page = features.__dict__.get("page")  # only when a layer parsed the HTML
        reductions = list(capture.reductions) + (list(page.reductions) if page is not None else [])
        if reductions:
            extra.append(_reduction_indicator(reductions))
        scripts = _script_summaries(features)
        return build_verdict(
            url=capture.url,
            results=results,
            extra_indicators=extra,
            config=self.config,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            engine_version=ENGINE_VERSION,
            model_versions=self.model_versions,
            source=capture.source.value,
            scripts=scripts,
            scanned_chars=capture.total_chars,
            truncated=bool(capture.truncations),
            incomplete=incomplete,
        )

    def _run_layer(self, layer: Layer, capture: Capture, features: Features) -> LayerResult:
        t0 = time.perf_counter()
        try:
            result = layer.analyze(capture, features)
        except Exception as exc:  # noqa: BLE001 - any layer bug must become an indicator, not a crash
            log.warning("layer %s failed on %s: %r", layer.name, capture.url[:200], exc)
            result = LayerResult(
                layer=layer.name,
                score=0.0,
                confidence=0.0,
                error=f"{type(exc).__name__}: {exc}"[:500],
                indicators=(catalogue().finding(
                    "engine.layer_error", Evidence(snippet=f"{type(exc).__name__}: {exc}"[:160], location=layer.name),
                    layer=layer.name).indicator(),),
            )
        elapsed = (time.perf_counter() - t0) * 1000.0
        return LayerResult(
            layer=result.layer,
            score=result.score,
            indicators=result.indicators,
            confidence=result.confidence,
            duration_ms=elapsed,
            details=result.details,
            error=result.error,
        )


def load_known_code(config: EngineConfig) -> KnownCode | None:
    """The known-code databases of ``[known_code]``; a user file that cannot be read raises.

    A missing bundled database only costs the fast path (every script is then scanned in full),
    so it is logged, not fatal.
    """
    settings = config.known_code
    if not settings.enabled:
        return None
    user_files = [config.resolve(path) for path in settings.files]
    bundled = settings.use_bundled
    from .known_code import BUNDLED_DATABASE

    if bundled and not BUNDLED_DATABASE.exists():
        log.warning("bundled known-code database %s is missing: known libraries are scanned in full",
                    BUNDLED_DATABASE)
        bundled = False
    return KnownCode.load(user_files, bundled=bundled)


def _truncation_indicator(notes: tuple[str, ...]) -> Indicator:
    evidence = [Evidence(snippet=n[:160], location="capture") for n in notes[:5]]
    return catalogue().finding("engine.truncated", *evidence).indicator()


def _reduction_indicator(notes: list[str]) -> Indicator:
    evidence = [Evidence(snippet=n[:160], location="capture") for n in notes[:5]]
    return catalogue().finding("engine.reduced", *evidence).indicator()


def _budget_indicator(skipped: list[str], budget_ms: int) -> Indicator:
    evidence = Evidence(snippet="skipped: " + ", ".join(skipped), location="engine")
    return catalogue().finding("engine.time_budget", evidence, budget_ms=budget_ms).indicator()


def _script_summaries(features: Features) -> tuple[dict[str, object], ...]:
    return tuple(
        {
            "location": view.location,
            "url": view.script.url,
            "inline": view.script.inline,
            "sha256": view.script.sha256,
            "chars": len(view.text),
            "truncated": view.script.truncated,
        }
        for view in features.scripts
    )
