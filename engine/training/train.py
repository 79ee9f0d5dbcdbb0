"""Train the JavaScript, URL and page models and write them with their manifest.

Recipe (the same for the three kinds, deterministic):

1. read the corpora; a JS row stored as markup (``format == "html"``, only ever malicious) is
   reduced to its inline scripts, so the model cannot learn "markup => malicious"; the train
   side gets two additions against the opposite shortcuts: inline scripts of benign pages (JS)
   and sign-in URLs of benign top sites (URL) — never the dev side;
2. split by ``split_group`` (:mod:`.split`), so the dev figures are on unseen families, kits,
   packages and domains;
3. featurise with :func:`malwaresnipper.engine.models.featurize`, the function scans use;
4. fit a logistic regression (liblinear, fixed seed) on the train side, the web JS categories
   up-weighted because they are few and matter most to a gateway, URL rows weighted by
   1/sqrt(rows of their host) so that a few big hosts do not dominate, page rows weighted so
   that "stored as PHP/template source" is independent of the label;
5. measure it on the dev side and record the probabilities at dev FPR 5 %, 1 % and 0.1 %; the
   ml layer maps those onto the engine's thresholds (for the JS model scoring the inline
   scripts of a page, a second set measured on benign dev pages);
6. write each model to a temporary file and ``os.replace`` it into place, then the manifest
   last: an interrupted run leaves the previous models intact.

The shipped models are the ones trained on the train side only, so the dev figures in the
manifest describe exactly the files that ship.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..features import FEATURE_VERSION
from ..features.text import TEXT_FEATURE_VERSION, scripts_in_markup, strip_server_side
from ..models import MANIFEST_NAME, MODEL_FILES, ModelBundle, ModelInput, design_matrix, featurize, sha256_file
from .corpus import Corpus, Sample, load_corpus
from .evaluate import compute_metrics, group_rate
from .progress import Progress
from .split import DEV_PERCENT, SPLIT_SALT, is_dev

SEED = 20260101
WEB_JS_CATEGORIES = ("exploit_kit", "skimmer", "cryptominer", "injected_legit_page")
#: Training weight of web JS categories relative to droppers (they are 17 % of the malicious JS).
#: Chosen on the dev split: 5 -> 20 (with C 30 -> 100) lifts the web categories at 0.1 % FPR
#: from 82.5 % to 85 % and all JS from 96.2 % to 97.2 %.
WEB_JS_WEIGHT = 20.0
#: Regularisation per model kind (chosen on the dev split; larger C = weaker regularisation).
C_BY_KIND = {"js": 100.0, "url": 100.0, "html": 100.0}
#: Weight of the engine's standardised numeric features next to the unit-norm hashed tokens.
#: 0 leaves them out. Measured on the dev split: for pages they lift TPR at 1 % FPR from 65 % to
#: 89 %; for URLs they lowered it from 85 % to 77 %, and for JavaScript TPR at 0.1 % FPR fell
#: from 96 % to 80 % (a few benign bundles with extreme values set the threshold).
NUMERIC_WEIGHT_BY_KIND = {"js": 0.0, "url": 0.0, "html": 0.1}
#: Hashing space: URLs have many distinct n-grams, so collisions cost there (2**20: +2 points,
#: 2**21: +0.7 more).
N_FEATURES_BY_KIND = {"js": 2**18, "url": 2**21, "html": 2**18}
CALIBRATION_FPRS = {"floor": 0.05, "suspicious": 0.01, "malicious": 0.001}


@dataclass
class Prepared:
    """Samples of one kind, reduced to what the model reads, with their side of the split."""

    kind: str
    samples: list[Sample]
    texts: list[str]
    dev: list[bool]
    dropped: int


def prepare(kind: str, samples: Sequence[Sample]) -> Prepared:
    """Apply the per-kind shortcut removal that must happen before featurising."""
    kept: list[Sample] = []
    texts: list[str] = []
    dropped = 0
    for s in samples:
        text = s.text
        if kind == "js" and s.format == "html":
            text = "\n".join(scripts_in_markup(text))
            if not text.strip():
                dropped += 1
                continue
        kept.append(s)
        texts.append(text)
    prepared = Prepared(kind, kept, texts, [is_dev(s.group) for s in kept], dropped)
    if kind == "url":
        augment_login_urls(prepared)
    return prepared


#: Sign-in paths real sites use. The benign URL corpus has almost none (303 benign vs 7,796
#: malicious URLs mention login/signin/account), so without these the URL model learns
#: "a login path is phishing" and flags https://github.com/login.
LOGIN_PATHS = (
    "/login", "/signin", "/sign-in", "/account/login", "/accounts/login", "/user/login",
    "/auth/login", "/login?next=%2F", "/session/new", "/account", "/myaccount", "/password/reset",
    "/register", "/signup", "/account/signin", "/login.php",
)
LOGIN_PATHS_PER_SITE = 4


#: At most this many inline scripts per benign page join the JS training set.
PAGE_SCRIPTS_PER_PAGE = 10


def add_benign_page_scripts(prepared: Prepared, pages: Sequence[Sample]) -> None:
    """Add the inline scripts of benign train-side pages to the JS model's benign side.

    The ml layer scores every inline script of a page with the JS model; without these, inline
    snippets (analytics, consent, config blobs) exist only on the malicious side (the EK and
    skimmer markup rows), and the model flags ordinary pages. Dev rows are left out, so the JS
    dev figures stay those of the JS corpus.
    """
    for page in pages:
        if page.label != "benign" or is_dev(page.group):
            continue
        scripts = [s for s in scripts_in_markup(strip_server_side(page.text)) if len(s.strip()) >= 40]
        for k, text in enumerate(scripts[:PAGE_SCRIPTS_PER_PAGE]):
            prepared.samples.append(Sample(
                id=f"{page.id}-script{k}", kind="js", label="benign", category="page_inline_script",
                text=text, group=page.group, meta={"source": page.meta.get("source", "")},
            ))
            prepared.texts.append(text)
            prepared.dev.append(False)


def page_script_calibration(
    bundle: ModelBundle, pages: Sequence[Sample], *, quiet: bool = False
) -> tuple[dict[str, float], dict[str, Any]]:
    """Operating points of the JS model when it scores every inline script of a page.

    The layer keeps the highest probability among a page's scripts, and a page has many, so the
    standalone-script thresholds would flag far more than 1 % of benign pages. These points are
    set on the benign *dev* pages of the HTML corpus, with the same script extraction the engine
    uses (``parse_html``): at ``page_suspicious`` 1 % of them are flagged, and so on.
    """
    from ..features.html import parse_html

    dev_pages = [p for p in pages if is_dev(p.group)]
    maxima: list[float] = []
    with Progress(len(dev_pages), "calibrating js on dev pages", enabled=not quiet) as bar:
        for page in dev_pages:
            bar.update()
            if page.label != "benign":
                continue
            scripts = [s.text for s in parse_html(page.text, "https://sample.invalid/").inline_scripts if s.text]
            maxima.append(max(bundle.score_raw(scripts)) if scripts else 0.0)
    if not maxima:
        return {}, {"n": 0}
    page_cal = calibration_from(sorted(maxima, reverse=True))
    # Never looser than the standalone points.
    out = {f"page_{k}": max(v, bundle.calibration.get(k, 0.0)) for k, v in page_cal.items()}
    flagged_standalone = sum(m >= bundle.calibration.get("suspicious", 1.0) for m in maxima) / len(maxima)
    return out, {"n": len(maxima), "flagged_at_standalone_suspicious": flagged_standalone}


def augment_login_urls(prepared: Prepared) -> None:
    """Add benign sign-in URLs of the benign top-site domains, on the train side only.

    Dev rows stay untouched, so dev figures are still measured on real rows only.
    """
    import hashlib

    extra_samples: list[Sample] = []
    for sample, dev in zip(list(prepared.samples), list(prepared.dev)):
        if dev or sample.label != "benign" or "top" not in str(sample.meta.get("source", "")).lower():
            continue
        base = sample.text.rstrip("/")
        if base.count("/") != 2:  # bare domains only
            continue
        digest = int.from_bytes(hashlib.sha256(base.encode()).digest()[:4], "big")
        for k in range(LOGIN_PATHS_PER_SITE):
            path = LOGIN_PATHS[(digest + 5 * k) % len(LOGIN_PATHS)]
            extra_samples.append(Sample(
                id=f"{sample.id}-login{k}", kind="url", label="benign", category="benign",
                text=base + path, group=sample.group, meta={"source": "augmented: top-site sign-in path"},
            ))
    prepared.samples.extend(extra_samples)
    prepared.texts.extend(s.text for s in extra_samples)
    prepared.dev.extend(False for _ in extra_samples)


def featurize_all(kind: str, texts: Sequence[str], *, label: str, quiet: bool = False) -> list[ModelInput]:
    out: list[ModelInput] = []
    skip_numeric = [] if NUMERIC_WEIGHT_BY_KIND.get(kind, 0.1) <= 0 else None
    with Progress(len(texts), label, enabled=not quiet) as bar:
        for text in texts:
            out.append(featurize(kind, text, numeric_keys=skip_numeric))
            bar.update()
    return out


def fit_kind(prepared: Prepared, inputs: Sequence[ModelInput], *, quiet: bool = False) -> tuple[ModelBundle, dict[str, Any]]:
    """Fit one model on the train side; return it with its dev metrics."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    kind = prepared.kind
    dev = np.array(prepared.dev, dtype=bool)
    y = np.array([s.y for s in prepared.samples], dtype=int)
    train_idx = np.flatnonzero(~dev)
    dev_idx = np.flatnonzero(dev)
    if len(set(y[train_idx].tolist())) < 2:
        raise ValueError(f"{kind}: the train side needs both benign and malicious samples")
    numeric_weight = NUMERIC_WEIGHT_BY_KIND.get(kind, 0.1)
    n_features = N_FEATURES_BY_KIND.get(kind, 2**18)
    keys = sorted({k for i in train_idx for k in inputs[i].numeric}) if numeric_weight > 0 else []
    if keys:
        dense = np.array([[inputs[i].numeric.get(k, 0.0) for k in keys] for i in train_idx], dtype=np.float64)
        dense = np.nan_to_num(dense, nan=0.0, posinf=0.0, neginf=0.0)
        mean = dense.mean(axis=0)
        scale = dense.std(axis=0)
        scale[scale < 1e-9] = 1.0
    else:
        mean = scale = None
    X = design_matrix(inputs, keys, mean, scale, numeric_weight=numeric_weight, n_features=n_features)
    weights = np.ones(len(y))
    if kind == "js":
        for i, s in enumerate(prepared.samples):
            if s.category in WEB_JS_CATEGORIES:
                weights[i] = WEB_JS_WEIGHT
    elif kind == "url":
        weights = url_host_weights(prepared.texts, train_idx)
    elif kind == "html":
        weights = source_format_weights([s.format for s in prepared.samples], y, train_idx)
    clf = LogisticRegression(
        C=C_BY_KIND.get(kind, 3.0), solver="liblinear", class_weight="balanced", max_iter=2000,
        random_state=SEED,
    )
    t0 = time.perf_counter()
    clf.fit(X[train_idx], y[train_idx], sample_weight=weights[train_idx])
    fit_s = time.perf_counter() - t0
    if not quiet:
        print(f"{kind}: fitted on {len(train_idx)} samples in {fit_s:.1f}s", file=sys.stderr)

    # float32 halves the stored size; the probabilities move by < 1e-6.
    clf.coef_ = clf.coef_.astype("float32")
    bundle = ModelBundle(kind=kind, estimator=clf, numeric_keys=keys, numeric_mean=mean,
                         numeric_scale=scale, calibration={}, numeric_weight=numeric_weight,
                         n_features=n_features)
    metrics: dict[str, Any] = {"n_train": int(len(train_idx)), "n_dev": int(len(dev_idx))}
    if len(dev_idx) and len(set(y[dev_idx].tolist())) == 2:
        probs = [float(p) for p in clf.predict_proba(X[dev_idx])[:, 1]]
        cats = [prepared.samples[i].category_key for i in dev_idx]
        negatives = sorted((p for p, i in zip(probs, dev_idx) if y[i] == 0), reverse=True)
        bundle.calibration = calibration_from(negatives)
        metrics.update(compute_metrics(
            y[dev_idx].tolist(), probs, cats,
            thresholds={k: v for k, v in bundle.calibration.items() if k != "floor"},
            samples_per_s=None,  # timings would make the manifest differ between identical runs
        ))
        if kind == "js":
            web = [c for c in metrics["per_category"] if c in WEB_JS_CATEGORIES]
            metrics["web_categories_at_fpr_0.001"] = group_rate(metrics, web, "at_fpr_0.001")
            metrics["web_categories_at_fpr_0.01"] = group_rate(metrics, web, "at_fpr_0.01")
    else:
        bundle.calibration = {"floor": 0.5, "suspicious": 0.7, "malicious": 0.9}
        metrics["note"] = "no dev split with both classes; default calibration"
    metrics["calibration"] = bundle.calibration
    return bundle, metrics


def url_host_weights(texts: Sequence[str], train_idx: Any) -> Any:
    """1/sqrt(rows of the same host on the train side), mean 1 over the train side.

    The benign URL rows come in blocks of up to 100 from one host (ISCX, page links); without
    this, a few hosts' path styles dominate the benign side. Measured on the dev split: TPR at
    1 % FPR +0.8 points.
    """
    from collections import Counter

    import numpy as np

    def host_of(url: str) -> str:
        low = url.strip().lower()
        rest = low.split("://", 1)[-1]
        return rest.split("/", 1)[0]

    hosts = [host_of(t) for t in texts]
    counts = Counter(hosts[i] for i in train_idx)
    weights = np.array([1.0 / np.sqrt(counts[h]) if counts[h] else 1.0 for h in hosts])
    return weights / weights[train_idx].mean()


#: Page formats that are server-side source as shipped, not what a browser receives.
SOURCE_FORMATS = ("php_source", "template_source")


def source_format_weights(formats: Sequence[str], y: Any, train_idx: Any) -> Any:
    """Weights under which "stored as server-side source" says nothing about the label.

    74 % of the train-side phishing pages are PHP source but 8 % of the benign ones, and a
    gateway only ever sees rendered pages. Even with the PHP code cut out, what is left of a
    source file looks like one, so the model learnt "source => phishing": out of fold, benign
    WordPress and Cacti sources scored 0.9-0.99 and rendered phishing pages were caught less
    often than PHP ones. Each (label, format) cell gets P(format) / P(format | label), computed
    on the train side (mean weight 1). Measured with every page scored by a model that never saw
    its group (train side out of fold + dev): TPR at 1 % FPR 64-69 % -> 72-80 % over three fold
    assignments, rendered phishing pages 59-63 % -> 71-84 %.
    """
    import numpy as np

    source = np.array([f in SOURCE_FORMATS for f in formats])
    weights = np.ones(len(formats))
    share_all = source[train_idx].mean()
    for label in (0, 1):
        rows = train_idx[y[train_idx] == label]
        share = source[rows].mean() if len(rows) else 0.0
        for is_source, p_all, p_label in ((True, share_all, share), (False, 1 - share_all, 1 - share)):
            cell = rows[source[rows] == is_source]
            if len(cell):
                weights[cell] = p_all / p_label
    return weights


def calibration_from(negatives_desc: Sequence[float]) -> dict[str, float]:
    """Probabilities at which the dev benign FPR is 5 %, 1 % and 0.1 % (kept increasing)."""
    from .evaluate import threshold_at_fpr

    out: dict[str, float] = {}
    previous = 0.0
    for name, fpr in CALIBRATION_FPRS.items():
        t = threshold_at_fpr(list(negatives_desc), fpr)
        t = min(max(t if t is not None else 0.5, previous, 1e-6), 0.999999)
        out[name] = float(t)
        previous = out[name]
    return out


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; models are package data everyone reads
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(bundle: ModelBundle, path: Path) -> str:
    import joblib

    write_atomic(path, lambda tmp: joblib.dump(bundle.to_payload(), tmp, compress=3))
    return sha256_file(path)


def train(
    data: Sequence[str | Path],
    out_dir: str | Path,
    *,
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train a model for each kind present in ``data``; returns the manifest it wrote."""
    import sklearn

    out_dir = Path(out_dir)
    corpora: list[Corpus] = [load_corpus(p, limit=limit) for p in data]
    by_kind: dict[str, list[Sample]] = {}
    for corpus in corpora:
        for s in corpus.samples:
            by_kind.setdefault(s.kind, []).append(s)
    wanted = [k for k in ("js", "url", "html") if k in by_kind and (kinds is None or k in kinds)]
    if not wanted:
        raise ValueError("no JS, URL or HTML samples in the given files")

    manifest_path = out_dir / MANIFEST_NAME
    previous: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = {}
    same_versions = (
        previous.get("feature_version") == FEATURE_VERSION
        and previous.get("text_feature_version") == TEXT_FEATURE_VERSION
        and previous.get("sklearn_version") == sklearn.__version__
    )
    models: dict[str, Any] = dict(previous.get("models", {})) if same_versions else {}
    for kind in wanted:
        prepared = prepare(kind, by_kind[kind])
        if kind == "js" and "html" in by_kind:
            add_benign_page_scripts(prepared, by_kind["html"])
        inputs = featurize_all(kind, prepared.texts, label=f"featurising {kind}", quiet=quiet)
        bundle, metrics = fit_kind(prepared, inputs, quiet=quiet)
        if kind == "js" and "html" in by_kind:
            page_cal, page_metrics = page_script_calibration(bundle, by_kind["html"], quiet=quiet)
            bundle.calibration.update(page_cal)
            metrics["calibration"] = bundle.calibration
            metrics["benign_dev_pages_inline_scripts"] = page_metrics
        path = out_dir / MODEL_FILES[kind]
        digest = save_bundle(bundle, path)
        metrics["dropped_markup_rows_without_scripts"] = prepared.dropped
        models[kind] = {
            "file": path.name,
            "sha256": digest,
            "version": f"{kind}-{digest[:12]}",
            "bytes": path.stat().st_size,
            "model": f"LogisticRegression(C={C_BY_KIND.get(kind, 3.0)}, liblinear, balanced)",
            "n_hash_features": bundle.n_features,
            "numeric_weight": bundle.numeric_weight,
            "numeric_features": bundle.numeric_keys,
            "dev_metrics": _rounded(metrics),
        }
    manifest = {
        "format": 1,
        "sklearn_version": sklearn.__version__,
        "feature_version": FEATURE_VERSION,
        "text_feature_version": TEXT_FEATURE_VERSION,
        "split": {"salt": SPLIT_SALT, "dev_percent": DEV_PERCENT, "by": "split_group"},
        "seed": SEED,
        "data": [
            {"file": c.path.name, "sha256": c.sha256, "kind": c.kind, "counts": c.counts()} for c in corpora
        ],
        "models": dict(sorted(models.items())),
    }
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    write_atomic(manifest_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return manifest


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value
