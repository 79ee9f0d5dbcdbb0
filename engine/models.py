"""Trained models: manifest-checked loading and the one featurisation shared by training and scans.

A model file is a joblib pickle, and unpickling runs code, so a file is loaded only when its
sha256 equals the one recorded in ``manifest.json`` next to it (the manifest is committed with
the models; a swapped or edited file is refused). The manifest also records the scikit-learn
version and the feature versions the models were trained with:

* a different FEATURE_VERSION or TEXT_FEATURE_VERSION refuses (the model would read other
  numbers than it learned from, silently);
* a different scikit-learn *minor* version refuses (pickles are not portable across them and
  scikit-learn itself only warns), a different patch release only warns. Either message says
  which version trained the model and how to retrain.

:func:`featurize` is the single place that turns raw text into a model's input; ``train`` and the
ml layer both call it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import ModelError
from .features import FEATURE_VERSION
from .features.text import (
    N_HASH_FEATURES,
    TEXT_FEATURE_VERSION,
    js_tokens,
    page_tokens,
    sanitize_html,
    url_tokens,
)

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MODEL_KINDS = ("js", "url", "html")
MODEL_FILES = {"js": "js_model.joblib", "url": "url_model.joblib", "html": "page_model.joblib"}
RETRAIN_HINT = (
    "retrain with: malwaresnipper train --data js_corpus.jsonl.gz url_corpus.jsonl.gz "
    "html_corpus.jsonl.gz --out {dir}"
)


def default_models_dir() -> Path:
    """The models shipped with the package (the repo's ``models/`` folder)."""
    import malwaresnipper

    return Path(malwaresnipper.__file__).resolve().parent / "models"


# -- featurisation (training and scanning share this) -----------------------------------------


#: URL features left out of the model: the corpus's phishing URLs are 76 % http:// (README caveat).
URL_SHORTCUT_KEYS = frozenset({"scheme_http", "scheme_https"})


def numeric_vector(kind: str, raw: str, base_url: str = "https://sample.invalid/") -> dict[str, float]:
    """The engine's own numeric features for one input: the extractors the layers use.

    Returns {} when the extractor is not available in this build (models trained without it
    record an empty key list and never ask).
    """
    if kind == "js":
        from .features.javascript import extract_js_features

        return dict(extract_js_features(raw).vector())
    if kind == "url":
        from .features.url import extract_url_features

        values = extract_url_features(raw).vector()
        return {k: v for k, v in values.items() if k not in URL_SHORTCUT_KEYS}
    if kind == "html":
        from .features.html import parse_html

        return dict(parse_html(raw, base_url).vector())
    raise ValueError(f"unknown model kind {kind!r}")


def model_text(kind: str, raw: str) -> str:
    """What a model reads of the raw input (for pages: the sanitised HTML)."""
    return sanitize_html(raw) if kind == "html" else raw


def text_tokens(kind: str, text: str) -> dict[str, float]:
    if kind == "js":
        return js_tokens(text)
    if kind == "url":
        return url_tokens(text)
    if kind == "html":
        return page_tokens(text)
    raise ValueError(f"unknown model kind {kind!r}")


@dataclass(frozen=True)
class ModelInput:
    """One featurised input: hashed tokens plus the engine's numeric features."""

    tokens: dict[str, float]
    numeric: dict[str, float]


def featurize(
    kind: str,
    raw: str,
    *,
    base_url: str = "https://sample.invalid/",
    numeric_keys: Sequence[str] | None = None,
    numeric: Mapping[str, float] | None = None,
) -> ModelInput:
    """Raw script / URL / page to a :class:`ModelInput`.

    ``numeric`` may be passed in when the scan already computed it for the same text (the
    javascript layer's cached features); ``numeric_keys=[]`` skips numeric features.
    """
    text = model_text(kind, raw)
    if numeric is None:
        if numeric_keys is not None and not numeric_keys:
            numeric = {}
        else:
            try:
                numeric = numeric_vector(kind, text, base_url)
            except ImportError:
                numeric = {}
    return ModelInput(tokens=text_tokens(kind, text), numeric=dict(numeric))


def token_matrix(inputs: Sequence[ModelInput], *, n_features: int = N_HASH_FEATURES) -> Any:
    """Sparse rows of hashed tokens, each scaled to unit L2 norm (independent of other rows).

    The same numbers as ``normalize(FeatureHasher(...).transform(...))``, computed with the two
    compiled routines those call, without their per-call input validation and copies (about
    half of the cost for one page); :func:`token_matrix_reference` is the public-API version
    (tests hold the two equal bit for bit, and it serves if the routines move).
    """
    import scipy.sparse as sp

    if not inputs:
        return sp.csr_matrix((0, n_features))
    routines = _hashing_routines()
    if routines is None:
        return token_matrix_reference(inputs, n_features=n_features)
    hashing_transform, normalize_rows = routines
    import numpy as np

    indices, indptr, values = hashing_transform(
        (iter(i.tokens.items()) for i in inputs), n_features, np.float64, False, 0
    )
    X = sp.csr_matrix((values, indices, indptr), dtype=np.float64, shape=(len(inputs), n_features))
    X.sum_duplicates()  # also sorts the indices, as FeatureHasher does
    normalize_rows(X)
    return X


def token_matrix_reference(inputs: Sequence[ModelInput], *, n_features: int = N_HASH_FEATURES) -> Any:
    """:func:`token_matrix` through scikit-learn's public API (what the models were trained on)."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.preprocessing import normalize

    if not inputs:
        import scipy.sparse as sp

        return sp.csr_matrix((0, n_features))
    hasher = FeatureHasher(n_features=n_features, input_type="dict", alternate_sign=False)
    return normalize(hasher.transform(i.tokens for i in inputs)).tocsr()


_ROUTINES: list[tuple[Any, Any] | None] = []


def _hashing_routines() -> tuple[Any, Any] | None:
    """scikit-learn's compiled feature hashing and in-place row L2 normalisation, or None."""
    if not _ROUTINES:
        try:
            from sklearn.feature_extraction._hashing_fast import transform
            from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2
        except ImportError:  # another layout: the public API gives the same numbers, slower
            _ROUTINES.append(None)
        else:
            _ROUTINES.append((transform, inplace_csr_row_normalize_l2))
    return _ROUTINES[0]


def numeric_matrix(inputs: Sequence[ModelInput], numeric_keys: Sequence[str]) -> Any:
    """The raw numeric features of ``inputs`` in ``numeric_keys`` order (NaN and inf as 0)."""
    import numpy as np

    dense = np.array([[float(i.numeric.get(k, 0.0)) for k in numeric_keys] for i in inputs], dtype=np.float64)
    return np.nan_to_num(dense.reshape(len(inputs), len(numeric_keys)), nan=0.0, posinf=0.0, neginf=0.0)


def combine_blocks(tokens: Any, dense: Any, mean: Any, scale: Any, *, numeric_weight: float) -> Any:
    """Tokens next to the numeric columns, standardised with the training rows' mean and scale
    and clipped; tokens alone when there are no numeric columns.

    Built row by row rather than with ``sp.hstack`` (a third of a page's predict time); the
    entries, their order and the dropped zeros are ``hstack``'s, so products are unchanged.
    """
    import numpy as np
    import scipy.sparse as sp

    if dense is None or dense.shape[1] == 0 or tokens.shape[0] > 64:  # training: hstack is quicker
        return combine_blocks_reference(tokens, dense, mean, scale, numeric_weight=numeric_weight)
    tokens = tokens.tocsr()
    scaled = np.clip((dense - mean) / scale, -5.0, 5.0) * numeric_weight
    rows, width = tokens.shape[0], tokens.shape[1]
    nonzero = scaled != 0  # what csr_matrix(scaled) keeps (NaN included)
    dtype = np.result_type(tokens.dtype, scaled.dtype)
    data_parts: list[Any] = []
    index_parts: list[Any] = []
    indptr = np.zeros(rows + 1, dtype=np.int64)
    for r in range(rows):
        lo, hi = tokens.indptr[r], tokens.indptr[r + 1]
        cols = np.flatnonzero(nonzero[r])
        data_parts += [tokens.data[lo:hi], scaled[r, cols]]
        index_parts += [tokens.indices[lo:hi], cols + width]
        indptr[r + 1] = indptr[r] + (hi - lo) + len(cols)
    data = np.concatenate(data_parts).astype(dtype, copy=False) if data_parts else np.zeros(0, dtype=dtype)
    indices = np.concatenate(index_parts) if index_parts else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((data, indices, indptr), shape=(rows, width + scaled.shape[1]))


def combine_blocks_reference(tokens: Any, dense: Any, mean: Any, scale: Any, *, numeric_weight: float) -> Any:
    """:func:`combine_blocks` with ``sp.hstack`` (tests hold the two equal)."""
    import numpy as np
    import scipy.sparse as sp

    if dense is None or dense.shape[1] == 0:
        return tokens.tocsr()
    scaled = np.clip((dense - mean) / scale, -5.0, 5.0) * numeric_weight
    return sp.hstack([tokens, sp.csr_matrix(scaled)], format="csr")


def design_matrix(
    inputs: Sequence[ModelInput], numeric_keys: Sequence[str], mean: Any, scale: Any,
    *, numeric_weight: float = 0.3, n_features: int = N_HASH_FEATURES,
) -> Any:
    """Sparse matrix: L2-normalised hashed tokens, then standardised numeric columns (clipped)."""
    tokens = token_matrix(inputs, n_features=n_features)
    dense = numeric_matrix(inputs, numeric_keys) if numeric_keys else None
    return combine_blocks(tokens, dense, mean, scale, numeric_weight=numeric_weight)


# -- bundles and the manifest ------------------------------------------------------------------


@dataclass
class ModelBundle:
    """A loaded model with what it needs to score raw inputs."""

    kind: str
    estimator: Any
    numeric_keys: list[str]
    numeric_mean: Any
    numeric_scale: Any
    #: Probabilities at which the out-of-fold benign FPR was 5 % (floor), 1 % and 0.1 % (JS: also
    #: page_floor, page_suspicious, page_malicious for the highest-scoring script of a page).
    calibration: dict[str, float]
    numeric_weight: float = 0.3
    n_features: int = N_HASH_FEATURES
    version: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(self, inputs: Sequence[ModelInput]) -> list[float]:
        """Probability of malicious for each input."""
        if not inputs:
            return []
        X = design_matrix(inputs, self.numeric_keys, self.numeric_mean, self.numeric_scale,
                          numeric_weight=self.numeric_weight, n_features=self.n_features)
        return self.predict_matrix(X)

    def predict_matrix(self, X: Any) -> list[float]:
        """Probability of malicious for each row of a :func:`design_matrix` (training scores
        held-out rows through this too, so its figures are the scan's numbers)."""
        if X.shape[0] == 0:
            return []
        linear = self._binary_logistic
        if linear is None:
            return [float(p) for p in self.estimator.predict_proba(X)[:, 1]]
        from scipy.special import expit

        weights, intercept = linear
        probabilities: list[float] = expit(X @ weights + intercept).tolist()
        return probabilities

    @cached_property
    def _binary_logistic(self) -> tuple[Any, float] | None:
        """(weights, intercept) of a two-class LogisticRegression, else None.

        Its ``predict_proba(X)[:, 1]`` is ``expit(X @ coef_[0] + intercept_[0])``; computing that
        directly gives the same numbers without scikit-learn's per-call input validation, which
        costs more than the product itself for one page (about 0.5 ms a call). Cached: a bundle's
        estimator is set once, when it is built.
        """
        from sklearn.linear_model import LogisticRegression

        est = self.estimator
        if type(est) is not LogisticRegression or len(getattr(est, "classes_", ())) != 2:
            return None
        coef = est.coef_
        if coef.ndim != 2 or coef.shape[0] != 1:
            return None
        import numpy as np

        # The models store float32 weights: scikit-learn widens them to float64 on every call
        # (a 4-8 MB copy for the URL model); widening once here gives the same products.
        return np.ascontiguousarray(coef[0], dtype=np.float64), float(est.intercept_[0])

    def score_raw(self, raws: Sequence[str], base_url: str = "https://sample.invalid/") -> list[float]:
        keys = self.numeric_keys
        return self.predict([featurize(self.kind, r, base_url=base_url, numeric_keys=keys) for r in raws])

    def to_payload(self) -> dict[str, Any]:
        """What goes into the joblib file (plain dict + scikit-learn objects + numpy arrays)."""
        return {
            "kind": self.kind,
            "estimator": self.estimator,
            "numeric_keys": list(self.numeric_keys),
            "numeric_mean": self.numeric_mean,
            "numeric_scale": self.numeric_scale,
            "calibration": dict(self.calibration),
            "numeric_weight": self.numeric_weight,
            "n_features": self.n_features,
            "feature_version": FEATURE_VERSION,
            "text_feature_version": TEXT_FEATURE_VERSION,
        }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(models_dir: Path) -> dict[str, Any]:
    path = models_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no model manifest (no trained models in {models_dir})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model manifest: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ModelError(f"{path}: not a model manifest (no 'models' object)")
    return manifest


def check_versions(manifest: Mapping[str, Any], models_dir: Path) -> None:
    """Refuse models built for other feature extractors or another scikit-learn minor version."""
    hint = RETRAIN_HINT.format(dir=models_dir)
    trained_fv = str(manifest.get("feature_version"))
    if trained_fv != FEATURE_VERSION:
        raise ModelError(
            f"{models_dir}: models were trained with feature version {trained_fv}, this engine "
            f"computes feature version {FEATURE_VERSION}; {hint}"
        )
    trained_tv = str(manifest.get("text_feature_version"))
    if trained_tv != TEXT_FEATURE_VERSION:
        raise ModelError(
            f"{models_dir}: models were trained with text feature version {trained_tv}, this engine "
            f"computes text feature version {TEXT_FEATURE_VERSION}; {hint}"
        )
    trained_sk = str(manifest.get("sklearn_version", "?"))
    try:
        import sklearn
    except ImportError:
        raise ModelError(
            f"scikit-learn is not installed; the models in {models_dir} need scikit-learn "
            f"{trained_sk} (pip install 'scikit-learn=={trained_sk}')"
        ) from None
    installed = sklearn.__version__
    if installed != trained_sk:
        message = (
            f"the models in {models_dir} were trained with scikit-learn {trained_sk}, but "
            f"scikit-learn {installed} is installed; install scikit-learn=={trained_sk} or {hint}"
        )
        if installed.split(".")[:2] != trained_sk.split(".")[:2]:
            raise ModelError(message)
        warnings.warn(message, stacklevel=3)
        log.warning(message)


def load_model(models_dir: str | Path, kind: str, manifest: Mapping[str, Any] | None = None) -> ModelBundle:
    """Load one model after checking its sha256 and versions. Raises :class:`ModelError`."""
    models_dir = Path(models_dir)
    manifest = manifest if manifest is not None else read_manifest(models_dir)
    entry = manifest["models"].get(kind)
    if not isinstance(entry, dict):
        raise ModelError(f"{models_dir / MANIFEST_NAME}: no {kind} model listed")
    check_versions(manifest, models_dir)
    name = str(entry.get("file", ""))
    path = models_dir / name
    if not name or Path(name).name != name:
        raise ModelError(f"{models_dir / MANIFEST_NAME}: bad file name {name!r} for the {kind} model")
    if not path.is_file():
        raise ModelError(f"{path}: model file listed in the manifest is missing")
    expected = str(entry.get("sha256", ""))
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"{path}: sha256 {actual[:16]}… does not match the manifest ({expected[:16]}…); "
            "refusing to load it (a model file is a pickle: loading it runs code). Restore the "
            "file or retrain."
        )
    import joblib

    try:
        payload = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a model error
        raise ModelError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        raise ModelError(f"{path}: not a {kind} model bundle")
    return ModelBundle(
        kind=kind,
        estimator=payload["estimator"],
        numeric_keys=list(payload.get("numeric_keys") or []),
        numeric_mean=payload.get("numeric_mean"),
        numeric_scale=payload.get("numeric_scale"),
        calibration=dict(payload.get("calibration") or {}),
        numeric_weight=float(payload.get("numeric_weight", 0.3)),
        n_features=int(payload.get("n_features", N_HASH_FEATURES)),
        version=str(entry.get("version") or f"{kind}-{actual[:12]}"),
        meta={"file": name, "sha256": actual},
    )


@dataclass
class LoadedModels:
    """The models that loaded, and why the others did not."""

    models_dir: Path
    bundles: dict[str, ModelBundle]
    problems: dict[str, str]

    @property
    def versions(self) -> dict[str, str]:
        return {f"{kind}_model": b.version for kind, b in self.bundles.items()}


def load_models(models_dir: str | Path | None = None) -> LoadedModels:
    """Load every model that passes the checks; never raises (problems are reported per kind)."""
    directory = Path(models_dir) if models_dir else default_models_dir()
    bundles: dict[str, ModelBundle] = {}
    problems: dict[str, str] = {}
    try:
        manifest = read_manifest(directory)
    except ModelError as exc:
        return LoadedModels(directory, {}, {kind: str(exc) for kind in MODEL_KINDS})
    for kind in MODEL_KINDS:
        if kind not in manifest["models"]:
            problems[kind] = f"no {kind} model in {directory}"
            continue
        try:
            bundles[kind] = load_model(directory, kind, manifest)
        except ModelError as exc:
            log.warning("ml: %s", exc)
            problems[kind] = str(exc)
    return LoadedModels(directory, bundles, problems)
