"""The ml layer: trained models score the URL, each script and the page.

Models load once, in ``__init__``, through the manifest check of
:mod:`malwaresnipper.engine.models` (sha256, scikit-learn and feature versions). Each model's
probability is mapped onto a layer score with the probabilities recorded at training time
(out-of-fold benign FPR 5 %, 1 % and 0.1 % under grouped cross-validation): below the 5 % point the score is near 0, so ordinary
benign content adds next to nothing to the noisy-OR; at the 1 % point the layer alone reaches the engine's
SUSPICIOUS threshold and at the 0.1 % point its MALICIOUS threshold (given the ml weight).
Below the 5 % point the score stays under :data:`SUB_FLOOR_SCORE` (1 of 100) and no indicator
is emitted: it only keeps samples ranked for ROC curves.

The URL model alone makes an address SUSPICIOUS at its 1 %-FPR point, never MALICIOUS: above
the SUSPICIOUS score its scores are compressed (monotonically, so addresses still rank) to stay
under :data:`URL_MODEL_CEILING` risk points, and MALICIOUS needs another layer to agree. Its
training data now holds 41,718 long-tail benign URLs besides the popular hosts, and
cross-validation shows long-tail sites are no longer what it flags (models/README.md, "The URL
model off its data"); the earlier cap at 30 points, which kept it below SUSPICIOUS on every
unfamiliar host, is retired. It is still not asked about hosts no training row resembles
(loopback, private addresses, ``localhost``, single-label names, special-use TLDs such as ``.test``).

The page model is corroborating evidence only on pages that ask nothing of the user: no form,
no input, no frame, no refresh or download. The corpus's phishing kits include near-empty
auxiliary pages (redirect stubs, "loading" screens), so the model rates any near-empty page as a
kit page (``<body>hi</body>`` 0.9); the web is full of such stubs. On those pages it may add at
most :data:`PAGE_MODEL_CEILING` risk points (a script they load is scored on its own).

Where a model is missing or was refused, the layer says so with an ``ml.model_unavailable``
indicator and confidence 0, never a silent zero.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import OrderedDict
from typing import ClassVar

from ..capture import Capture
from ..config import EngineConfig
from ..features import Features
from ..features.html import ParsedPage
from ..features.javascript import on_clear_cache
from ..models import LoadedModels, ModelBundle, ModelInput, featurize, load_models
from ..findings import catalogue
from ..results import Evidence, Indicator, LayerResult

log = logging.getLogger(__name__)

#: Ceiling of the layer score below the 5 %-FPR point: with the default weight it moves the
#: risk by at most 2 points, so ordinary content stays BENIGN, yet samples still rank by it.
SUB_FLOOR_SCORE = 1.0

#: The most risk the URL model can add on its own (see the module docstring): SUSPICIOUS at
#: most; one point under the MALICIOUS threshold (or this, if lower).
URL_MODEL_CEILING = 69.0

#: The most risk the page model can add on its own to a page that asks nothing of the user.
PAGE_MODEL_CEILING = 30.0

#: Special-use and private-network TLDs (RFC 2606, 6761, 6762, 8375, ICANN's .internal): no
#: training URL had one, so the URL model has nothing to say about them.
SPECIAL_TLDS = frozenset({"test", "example", "invalid", "localhost", "local", "internal", "lan", "home", "corp", "intranet"})

#: The JS model scores at most this many scripts per page (the largest first).
MAX_SCRIPTS_SCORED = 40


class ScriptScoreCache:
    """Per-process LRU of JS model probabilities, keyed by model sha256 and the script text itself.

    Tokenising a script is most of the ml layer's cost, and a gateway sees the same library files
    on page after page: a repeat then costs one lookup. Keys hold the text, not a hash of it (no
    collision can hand one script another's score), and the texts are bounded in characters.
    Emptied by ``features.javascript.clear_cache()`` with the feature cache, so cold scans stay cold.
    """

    MIN_CHARS = 512  # shorter scripts are cheap to score again
    MAX_CHARS = 8_000_000

    def __init__(self) -> None:
        self._scores: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, model: str, text: str) -> float | None:
        if len(text) < self.MIN_CHARS:
            return None
        with self._lock:
            prob = self._scores.get((model, text))
            if prob is not None:
                self._scores.move_to_end((model, text))
            return prob

    def put(self, model: str, text: str, prob: float) -> None:
        if not self.MIN_CHARS <= len(text) <= self.MAX_CHARS // 4:
            return
        with self._lock:
            if (model, text) in self._scores:
                return
            self._scores[(model, text)] = prob
            self._chars += len(text)
            while self._chars > self.MAX_CHARS and self._scores:
                (_, old), _ = self._scores.popitem(last=False)
                self._chars -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._scores.clear()
            self._chars = 0


SCRIPT_SCORES = ScriptScoreCache()
on_clear_cache(SCRIPT_SCORES.clear)
#: The page model's probabilities, keyed by model sha256 and page URL (links resolve against it)
#: and the HTML itself: a page loaded again (a reload, a static page, back and forward) is
#: scored once. Same bounds, same clearing.
PAGE_SCORES = ScriptScoreCache()
on_clear_cache(PAGE_SCORES.clear)

#: The catalogue's finding for each model (engine/data/findings.toml).
_FINDING_IDS = {"js": "ml.js_model", "url": "ml.url_model", "html": "ml.page_model"}


class MlLayer:
    """Scores from the trained models, calibrated onto the engine's thresholds."""

    name: ClassVar[str] = "ml"
    version: ClassVar[str] = "1"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        models_dir = config.resolve(config.ml.models_dir) if config.ml.models_dir else None
        self.loaded: LoadedModels = load_models(models_dir)
        self.model_versions: dict[str, str] = self.loaded.versions
        weight = config.weight(self.name)
        self._score_suspicious = _score_for(config.thresholds.suspicious, weight)
        self._score_malicious = _score_for(config.thresholds.malicious, weight)
        self._url_ceiling_score = _score_for(min(URL_MODEL_CEILING, config.thresholds.malicious - 1), weight)
        self._page_ceiling_score = _score_for(min(PAGE_MODEL_CEILING, config.thresholds.suspicious - 1), weight)

    # -- scoring --------------------------------------------------------------------------

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        scored: dict[str, tuple[float, float, str]] = {}  # kind -> (score, prob, where)
        unavailable: list[str] = []
        details: dict[str, object] = {"models": dict(self.model_versions)}

        wanted = []
        # ``synthetic_url``: a placeholder address (``eval`` of scripts and pages) is not scored.
        if capture.scheme in ("http", "https") and not capture.synthetic_url:
            skip = url_model_skip_reason(capture.host)
            if skip:
                details["url_model_skipped"] = skip
            else:
                wanted.append("url")
        if features.analysed_scripts:  # unmodified known libraries are not scored (javascript layer says so)
            wanted.append("js")
        if capture.html:
            wanted.append("html")

        for kind in wanted:
            bundle = self.loaded.bundles.get(kind)
            if bundle is None:
                unavailable.append(kind)
                continue
            prob, where = self._probability(kind, bundle, capture, features)
            if prob is None:
                continue
            details[f"{kind}_probability"] = round(prob, 6)
            score = self._map(prob, self._calibration(kind, bundle, capture))
            if kind == "url":
                score = self._compress_above_suspicious(score, self._url_ceiling_score)
            elif kind == "html" and asks_nothing(features.page):
                score *= self._page_ceiling_score / 100.0
                details["page_model_capped"] = "the page has no form, input, frame, refresh or download"
            scored[kind] = (score, prob, where)

        indicators: list[Indicator] = []
        found = catalogue().finding
        for kind, (score, prob, where) in scored.items():
            grade = (
                "high" if score >= self._score_malicious
                else "medium" if score >= self._score_suspicious
                else "low"
            )
            # Below the 5 %-FPR point, or under even odds on the LOW grade, a model says nothing a
            # user should read as "likely malicious": the score still ranks the sample, silently.
            if score <= SUB_FLOOR_SCORE or (grade == "low" and prob < 0.5):
                continue
            evidence = Evidence(snippet=f"probability {prob:.4f} ({self.model_versions.get(kind + '_model', kind)})",
                                location=where)
            indicators.append(found(_FINDING_IDS[kind], evidence, variant=grade, points=score,
                                    probability=f"{prob:.3f}").indicator())
        for kind in unavailable:
            reason = self.loaded.problems.get(kind, f"no {kind} model")
            indicators.append(found("ml.model_unavailable", Evidence(snippet=reason[:160], location=_NAMES[kind]),
                                    model=_NAMES[kind]).indicator())
        if unavailable:
            details["unavailable"] = unavailable
        score = max((s for s, _, _ in scored.values()), default=0.0)
        return LayerResult(
            layer=self.name, score=score, indicators=tuple(indicators),
            confidence=1.0 if scored else 0.0, details=details,
        )

    def _probability(
        self, kind: str, bundle: ModelBundle, capture: Capture, features: Features
    ) -> tuple[float | None, str]:
        if kind == "url":
            return bundle.predict([featurize("url", capture.url, numeric_keys=bundle.numeric_keys)])[0], "url"
        if kind == "html":
            html = capture.html or ""
            sha = str(bundle.meta.get("sha256") or "")
            key = f"{sha}\x00{capture.url}" if sha else ""  # sha256 is hex: the NUL cannot be in it
            page_prob = PAGE_SCORES.get(key, html) if key else None
            if page_prob is None:
                inp = featurize("html", html, base_url=capture.url, numeric_keys=bundle.numeric_keys)
                page_prob = bundle.predict([inp])[0]
                if key:
                    PAGE_SCORES.put(key, html, page_prob)
            return page_prob, "html"
        views = sorted(features.analysed_scripts, key=lambda v: -len(v.text))[:MAX_SCRIPTS_SCORED]
        if not views:
            return None, ""
        # Only a model loaded from a file (sha256 known) is cached: the key must name it exactly.
        model = str(bundle.meta.get("sha256") or "")
        cached = [SCRIPT_SCORES.get(model, view.text) if model else None for view in views]
        missing = [i for i, prob in enumerate(cached) if prob is None]
        inputs: list[ModelInput] = []
        for i in missing:
            numeric = dict(features.js(views[i]).vector()) if bundle.numeric_keys else {}
            inputs.append(featurize("js", views[i].text, numeric_keys=bundle.numeric_keys, numeric=numeric))
        # One batched call; a row's probability does not depend on the other rows of the batch.
        fresh = dict(zip(missing, bundle.predict(inputs), strict=True))
        probs = [fresh[i] if prob is None else prob for i, prob in enumerate(cached)]
        if model:
            for i, prob in fresh.items():
                SCRIPT_SCORES.put(model, views[i].text, prob)
        best = max(range(len(probs)), key=lambda i: probs[i])
        return probs[best], views[best].location

    @staticmethod
    def _calibration(kind: str, bundle: ModelBundle, capture: Capture) -> dict[str, float]:
        """Scripts of a page use the page-level points (the max over many scripts is higher)."""
        cal = bundle.calibration
        if kind == "js" and capture.html and "page_suspicious" in cal:
            return {k: cal[f"page_{k}"] for k in ("floor", "suspicious", "malicious") if f"page_{k}" in cal}
        return cal

    def _compress_above_suspicious(self, score: float, ceiling: float) -> float:
        """Scores above the SUSPICIOUS score squeezed linearly into [SUSPICIOUS score, ceiling]:
        the model alone reaches SUSPICIOUS at its own operating point and never the ceiling's
        level, and higher probabilities still rank higher."""
        low = min(self._score_suspicious, ceiling)
        if score <= low:
            return score
        return low + (score - low) * (ceiling - low) / max(100.0 - low, 1e-12)

    def _map(self, prob: float, calibration: dict[str, float]) -> float:
        """Piecewise-linear probability -> layer score through the calibration points."""
        floor = calibration.get("floor", 0.5)
        susp = max(calibration.get("suspicious", 0.7), floor)
        mal = max(calibration.get("malicious", 0.9), susp)
        s_susp, s_mal = self._score_suspicious, self._score_malicious
        if prob < floor:
            # At most SUB_FLOOR_SCORE: no real baseline, but scores still rank (ROC curves).
            return SUB_FLOOR_SCORE * (max(prob, 0.0) / max(floor, 1e-12)) ** 2
        if prob < susp:
            return SUB_FLOOR_SCORE + (s_susp - SUB_FLOOR_SCORE) * (prob - floor) / max(susp - floor, 1e-12)
        if prob < mal:
            return s_susp + (s_mal - s_susp) * (prob - susp) / max(mal - susp, 1e-12)
        return s_mal + (100.0 - s_mal) * (prob - mal) / max(1.0 - mal, 1e-12)


_NAMES = {"js": "JavaScript model", "url": "URL model", "html": "page model"}


def url_model_skip_reason(host: str) -> str | None:
    """Why the URL model should not judge ``host`` (outside anything it was trained on), or None."""
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        return "no host"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified or ip.is_reserved:
            return "loopback or private address"
        return None
    if "." not in host:
        return "single-label host name"
    if host.rsplit(".", 1)[1] in SPECIAL_TLDS:
        return "special-use top-level domain"
    return None


def asks_nothing(page: ParsedPage | None) -> bool:
    """True for a page with no form, input, frame, meta refresh or automatic download."""
    if page is None:
        return False
    dom = page.dom
    return not (dom.forms or page.input_count or page.password_inputs or dom.iframes
                or dom.meta_refresh is not None or dom.auto_download is not None)


def _score_for(threshold: float, weight: float) -> float:
    """The layer score that alone lifts the noisy-OR risk to ``threshold`` (plus a hair)."""
    if weight <= 0:
        return min(100.0, threshold + 0.01)
    t = min(max(threshold / 100.0, 0.0), 0.999)
    return min(100.0, 100.0 * (1.0 - float((1.0 - t) ** (1.0 / weight))) + 0.01)
