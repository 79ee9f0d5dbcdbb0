"""Train the JavaScript, URL and page models and write them with their manifest.

Recipe (the same for the three kinds, deterministic):

1. read the corpora; a JS row stored as markup (``format == "html"``, only ever malicious) is
   reduced to its inline scripts, so the model cannot learn "markup => malicious"; two kinds of
   rows are added against the opposite shortcuts: inline scripts of benign pages (JS) and
   sign-in URLs of benign top sites (URL). Added rows are trained on, never measured;
2. featurise every row once with :func:`malwaresnipper.engine.models.featurize`, the function
   scans use;
3. grouped k-fold cross-validation (:class:`.split.FoldPlan`: whole families, packages, kits and
   sites in one fold): for each fold, fit on the other folds and score the held-out one, so
   every row gets an out-of-fold probability from a model that never saw its group;
4. the operating points the ml layer maps onto the engine's thresholds are the probabilities at
   which the out-of-fold benign FPR is 5 %, 1 % and 0.1 % (for the JS model scoring the inline
   scripts of a page, a second set from the out-of-fold maxima over benign pages' scripts);
5. the shipped model is fitted on all rows (the product learns from all data; the
   cross-validated figures in the manifest describe the method), with those points;
6. each model goes to a temporary file and ``os.replace`` puts it in place, the manifest last:
   an interrupted run leaves the previous models intact.

The fitting itself: a logistic regression (liblinear, fixed seed), the web JS categories
up-weighted because they are few and matter most to a gateway, URL rows weighted by
1/sqrt(rows of their host) so that a few big hosts do not dominate, page rows weighted so that
"stored as PHP/template source" is independent of the label. ``malwaresnipper cv`` runs the
same folds and the same fitting and scores the held-out rows with the whole engine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..features import FEATURE_VERSION
from ..features.behaviour import wall_clock_deadlines_lifted
from ..features.text import TEXT_FEATURE_VERSION, scripts_in_markup, strip_server_side
from ..models import (
    MANIFEST_NAME,
    MODEL_FILES,
    ModelBundle,
    ModelInput,
    combine_blocks,
    featurize,
    numeric_matrix,
    sha256_file,
    token_matrix,
)
from .corpus import SAMPLE_HOST, Corpus, Sample, load_corpus
from .evaluate import (
    WEB_CATEGORIES,
    breakdowns,
    compute_metrics,
    fold_summary,
    group_rate,
    url_path_kind,
)
from .progress import Progress
from .split import CV_FOLDS, CV_SEED, FoldPlan

SEED = 20260101
WEB_JS_CATEGORIES = WEB_CATEGORIES
#: Training weight of web JS categories relative to droppers (they are 17 % of the malicious JS).
WEB_JS_WEIGHT = 20.0
#: Regularisation per model kind (larger C = weaker regularisation).
C_BY_KIND = {"js": 100.0, "url": 100.0, "html": 100.0}
#: Weight of the engine's standardised numeric features next to the unit-norm hashed tokens.
#: 0 leaves them out (for URLs and JavaScript they lowered every figure measured; see the
#: model card).
NUMERIC_WEIGHT_BY_KIND = {"js": 0.0, "url": 0.0, "html": 0.1}
#: Hashing space: URLs have many distinct n-grams, so collisions cost there.
N_FEATURES_BY_KIND = {"js": 2**18, "url": 2**21, "html": 2**18}
CALIBRATION_FPRS = {"floor": 0.05, "suspicious": 0.01, "malicious": 0.001}


@dataclass
class Prepared:
    """Samples of one kind, reduced to what the model reads.

    ``augmented`` marks rows added against a shortcut (sign-in URLs, benign pages' inline
    scripts): they are trained on, never measured and never used to set a threshold.
    """

    kind: str
    samples: list[Sample]
    texts: list[str]
    augmented: list[bool] = field(default_factory=list)
    dropped: int = 0

    def add(self, sample: Sample, text: str) -> None:
        self.samples.append(sample)
        self.texts.append(text)
        self.augmented.append(True)


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
    prepared = Prepared(kind, kept, texts, [False] * len(kept), dropped)
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
    """Add the inline scripts of benign pages to the JS model's benign side.

    The ml layer scores every inline script of a page with the JS model; without these, inline
    snippets (analytics, consent, config blobs) exist only on the malicious side (the EK and
    skimmer markup rows), and the model flags ordinary pages. Each script keeps its page's
    group, so it is only trained on in folds that do not hold the page.
    """
    for page in pages:
        if page.label != "benign":
            continue
        scripts = [s for s in scripts_in_markup(strip_server_side(page.text)) if len(s.strip()) >= 40]
        for k, text in enumerate(scripts[:PAGE_SCRIPTS_PER_PAGE]):
            prepared.add(Sample(
                id=f"{page.id}-script{k}", kind="js", label="benign", category="page_inline_script",
                text=text, group=page.group, meta={"source": page.meta.get("source", ""), "file": page.meta.get("file")},
            ), text)


def augment_login_urls(prepared: Prepared) -> None:
    """Add benign sign-in URLs of the benign top-site domains (bare domains only), in their
    domain's group."""
    import hashlib

    for sample, added in zip(list(prepared.samples), list(prepared.augmented), strict=False):
        if added or sample.label != "benign" or "top" not in str(sample.meta.get("source", "")).lower():
            continue
        base = sample.text.rstrip("/")
        if base.count("/") != 2:  # bare domains only
            continue
        digest = int.from_bytes(hashlib.sha256(base.encode()).digest()[:4], "big")
        for k in range(LOGIN_PATHS_PER_SITE):
            path = LOGIN_PATHS[(digest + 5 * k) % len(LOGIN_PATHS)]
            prepared.add(Sample(
                id=f"{sample.id}-login{k}", kind="url", label="benign", category="benign",
                text=base + path, group=sample.group,
                meta={"source": "augmented: top-site sign-in path", "file": sample.meta.get("file")},
            ), base + path)


def featurize_all(kind: str, texts: Sequence[str], *, label: str, quiet: bool = False) -> list[ModelInput]:
    out: list[ModelInput] = []
    skip_numeric: list[str] | None = [] if NUMERIC_WEIGHT_BY_KIND.get(kind, 0.1) <= 0 else None
    with Progress(len(texts), label, enabled=not quiet) as bar:
        for text in texts:
            out.append(featurize(kind, text, numeric_keys=skip_numeric))
            bar.update()
    return out


@dataclass
class KindMatrix:
    """One kind's rows featurised once (hashed tokens, raw numeric features), with their fold;
    every fold's fit and every held-out score slices these rows."""

    prepared: Prepared
    tokens: Any  # CSR, unit-norm rows
    dense: Any  # raw numeric features (rows x keys), or None
    numeric_keys: list[str]
    folds: Any  # fold of each row
    y: Any
    measured: Any  # real corpus rows (not augmented)
    trainable: Any  # rows the method may learn from (fit and operating points); others are only measured

    @property
    def kind(self) -> str:
        return self.prepared.kind

    def rows(self, *, fold: int | None = None, held_out: bool = False) -> Any:
        """Row indices: the training rows of ``fold`` (of all folds for None), or with
        ``held_out`` every row of the fold."""
        import numpy as np

        if held_out:
            return np.flatnonzero(self.folds == fold)
        if fold is None:
            return np.flatnonzero(self.trainable)
        return np.flatnonzero((self.folds != fold) & self.trainable)


#: Which rows may train a model (None: all). ``cv --train-only`` uses it to measure a method on
#: data it does not learn from.
TrainFilter = Callable[[Sample], bool]


def learnable(sample: Sample) -> bool:
    """Rows the recipe learns from; the others are only measured.

    Benign RSS/Atom feed addresses (62 % of the v2 URLs, all from one list of small sites) are
    left out: with them the URL model learnt "feed path => benign" (out of fold, phishing URLs
    with their path replaced by ``/feed.xml`` fell from 87 % to 0.3 % above the 1 %-FPR point),
    and without them its TPR at 1 % FPR against the other benign URLs is unchanged (83.5 % vs
    83.2 %; models/README.md).
    """
    return not (sample.kind == "url" and sample.y == 0 and url_path_kind(sample.text) == "feed")


def build_matrix(prepared: Prepared, plan: FoldPlan, *, trainable: TrainFilter | None = None,
                 quiet: bool = False) -> KindMatrix:
    import numpy as np

    kind = prepared.kind
    inputs = featurize_all(kind, prepared.texts, label=f"featurising {kind}", quiet=quiet)
    numeric_weight = NUMERIC_WEIGHT_BY_KIND.get(kind, 0.1)
    keys = sorted({k for i in inputs for k in i.numeric}) if numeric_weight > 0 else []
    return KindMatrix(
        prepared=prepared,
        tokens=token_matrix(inputs, n_features=N_FEATURES_BY_KIND.get(kind, 2**18)),
        dense=numeric_matrix(inputs, keys) if keys else None,
        numeric_keys=keys,
        folds=np.array([plan.fold_of(s.group) for s in prepared.samples], dtype=int),
        y=np.array([s.y for s in prepared.samples], dtype=int),
        measured=~np.array(prepared.augmented, dtype=bool),
        trainable=np.array([learnable(s) and (trainable is None or trainable(s)) for s in prepared.samples],
                           dtype=bool),
    )


def fit_model(m: KindMatrix, train_idx: Any) -> ModelBundle:
    """Fit one model on rows ``train_idx``; the bundle has no operating points yet."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    kind = m.kind
    y = m.y
    if len(set(y[train_idx].tolist())) < 2:
        raise ValueError(f"{kind}: the training rows need both benign and malicious samples")
    numeric_weight = NUMERIC_WEIGHT_BY_KIND.get(kind, 0.1)
    mean = scale = None
    if m.dense is not None:
        mean = m.dense[train_idx].mean(axis=0)
        scale = m.dense[train_idx].std(axis=0)
        scale[scale < 1e-9] = 1.0
    X = combine_blocks(m.tokens[train_idx], None if m.dense is None else m.dense[train_idx], mean, scale,
                       numeric_weight=numeric_weight)
    samples = m.prepared.samples
    if kind == "js":
        weights = np.array([WEB_JS_WEIGHT if samples[i].category in WEB_JS_CATEGORIES else 1.0 for i in train_idx])
    elif kind == "url":
        weights = url_host_weights([m.prepared.texts[i] for i in train_idx])
    elif kind == "html":
        weights = source_format_weights([samples[i].format for i in train_idx], y[train_idx])
    else:
        weights = np.ones(len(train_idx))
    clf = LogisticRegression(
        C=C_BY_KIND.get(kind, 3.0), solver="liblinear", class_weight="balanced", max_iter=2000,
        random_state=SEED,
    )
    clf.fit(X, y[train_idx], sample_weight=weights)
    # float32 halves the stored size; the probabilities move by < 1e-6.
    clf.coef_ = clf.coef_.astype("float32")
    return ModelBundle(kind=kind, estimator=clf, numeric_keys=list(m.numeric_keys), numeric_mean=mean,
                       numeric_scale=scale, calibration={}, numeric_weight=numeric_weight,
                       n_features=N_FEATURES_BY_KIND.get(kind, 2**18))


def score_rows(bundle: ModelBundle, m: KindMatrix, idx: Any) -> list[float]:
    """The bundle's probabilities for rows ``idx``: the same numbers a scan computes."""
    X = combine_blocks(m.tokens[idx], None if m.dense is None else m.dense[idx], bundle.numeric_mean,
                       bundle.numeric_scale, numeric_weight=bundle.numeric_weight)
    return bundle.predict_matrix(X)


def url_host_weights(texts: Sequence[str]) -> Any:
    """1/sqrt(rows of the same host among the training rows), mean 1.

    The benign URL rows come in blocks of up to 100 from one host (ISCX, page links); without
    this, a few hosts' path styles dominate the benign side (TPR at 1 % FPR +0.8 points).
    """
    from collections import Counter

    import numpy as np

    def host_of(url: str) -> str:
        low = url.strip().lower()
        rest = low.split("://", 1)[-1]
        return rest.split("/", 1)[0]

    hosts = [host_of(t) for t in texts]
    counts = Counter(hosts)
    weights = np.array([1.0 / np.sqrt(counts[h]) for h in hosts])
    return weights / weights.mean()


#: Page formats that are server-side source as shipped, not what a browser receives.
SOURCE_FORMATS = ("php_source", "template_source")


def source_format_weights(formats: Sequence[str], y: Any) -> Any:
    """Weights under which "stored as server-side source" says nothing about the label.

    74 % of the phishing pages are PHP source but 8 % of the benign ones, and a gateway only
    ever sees rendered pages. Even with the PHP code cut out, what is left of a source file
    looks like one, so the model learnt "source => phishing": out of fold, benign WordPress and
    Cacti sources scored 0.9-0.99 and rendered phishing pages were caught less often than PHP
    ones. Each (label, format) cell of the training rows gets P(format) / P(format | label)
    (mean weight 1).
    """
    import numpy as np

    y = np.asarray(y)
    source = np.array([f in SOURCE_FORMATS for f in formats])
    weights = np.ones(len(formats))
    share_all = source.mean() if len(source) else 0.0
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        share = source[rows].mean() if len(rows) else 0.0
        for is_source, p_all, p_label in ((True, share_all, share), (False, 1 - share_all, 1 - share)):
            cell = rows[source[rows] == is_source]
            if len(cell):
                weights[cell] = p_all / p_label
    return weights


def calibration_from(negatives_desc: Sequence[float]) -> dict[str, float]:
    """Probabilities at which the benign FPR is 5 %, 1 % and 0.1 % (kept increasing)."""
    from .evaluate import threshold_at_fpr

    out: dict[str, float] = {}
    previous = 0.0
    for name, fpr in CALIBRATION_FPRS.items():
        t = threshold_at_fpr(list(negatives_desc), fpr)
        t = min(max(t if t is not None else 0.5, previous, 1e-6), 0.999999)
        out[name] = float(t)
        previous = out[name]
    return out


# -- the inline scripts of benign pages: the JS model's page-level operating points ---------------


@dataclass
class PageScripts:
    """The inline scripts of each benign page, as the engine extracts them (``parse_html``),
    featurised once. The ml layer keeps the highest probability among a page's scripts, and a
    page has many, so standalone-script points would flag far more than 1 % of benign pages."""

    folds: Any  # fold of each benign page
    owner: Any  # page index of each script row
    tokens: Any  # CSR of the scripts' tokens

    @property
    def n_pages(self) -> int:
        return len(self.folds)


def build_page_scripts(pages: Sequence[Sample], plan: FoldPlan, *, quiet: bool = False) -> PageScripts:
    import numpy as np

    from ..features.html import parse_html

    benign = [p for p in pages if p.label == "benign"]
    owner: list[int] = []
    texts: list[str] = []
    for k, page in enumerate(benign):
        for script in parse_html(page.text, SAMPLE_HOST).inline_scripts:
            if script.text:
                owner.append(k)
                texts.append(script.text)
    inputs = featurize_all("js", texts, label="featurising inline scripts of benign pages", quiet=quiet)
    return PageScripts(
        folds=np.array([plan.fold_of(p.group) for p in benign], dtype=int),
        owner=np.array(owner, dtype=int),
        tokens=token_matrix(inputs, n_features=N_FEATURES_BY_KIND["js"]),
    )


def page_maxima(bundle: ModelBundle, pages: PageScripts, fold: int | None) -> dict[int, float]:
    """{page index: highest probability among its scripts} for the pages of ``fold`` (all for
    None); a page without scripts scores 0."""
    import numpy as np

    wanted = np.arange(pages.n_pages) if fold is None else np.flatnonzero(pages.folds == fold)
    out = {int(k): 0.0 for k in wanted}
    rows = np.flatnonzero(np.isin(pages.owner, wanted))
    if len(rows):
        for k, p in zip(pages.owner[rows], bundle.predict_matrix(pages.tokens[rows]), strict=False):
            out[int(k)] = max(out[int(k)], p)
    return out


# -- cross-validation ------------------------------------------------------------------------------


@dataclass
class CrossValidation:
    """Out-of-fold probabilities and the models that made them (fold ``f``'s model never saw
    fold ``f``); ``final`` holds the models fitted on all rows when asked for."""

    plan: FoldPlan
    matrices: dict[str, KindMatrix]
    fold_models: dict[str, list[ModelBundle]]
    oof: dict[str, Any]  # kind -> probability per row of its matrix
    page_oof: Any | None  # highest out-of-fold probability among each benign page's scripts
    page_folds: Any | None
    final: dict[str, ModelBundle] = field(default_factory=dict)

    def calibration(self, kind: str, *, exclude_fold: int | None = None) -> dict[str, float]:
        """Operating points from the out-of-fold benign scores (of the other folds, for a
        fold's own model: the rows it is measured on never set its thresholds)."""
        m = self.matrices[kind]
        keep = m.measured & m.trainable & (m.y == 0)
        if exclude_fold is not None:
            keep &= m.folds != exclude_fold
        negatives = sorted(self.oof[kind][keep].tolist(), reverse=True)
        if not negatives:
            return {"floor": 0.5, "suspicious": 0.7, "malicious": 0.9}
        cal = calibration_from(negatives)
        if kind == "js" and self.page_oof is not None and len(self.page_oof):
            pages = self.page_oof if exclude_fold is None else self.page_oof[self.page_folds != exclude_fold]
            if len(pages):
                page_cal = calibration_from(sorted(pages.tolist(), reverse=True))
                # Never looser than the standalone points.
                cal.update({f"page_{k}": max(v, cal[k]) for k, v in page_cal.items()})
        return cal

    def fold_bundles(self, fold: int) -> dict[str, ModelBundle]:
        """Fold ``fold``'s models with their operating points, as ``cv`` hands them to the engine."""
        out = {}
        for kind, models in self.fold_models.items():
            bundle = models[fold]
            out[kind] = ModelBundle(
                kind=kind, estimator=bundle.estimator, numeric_keys=bundle.numeric_keys,
                numeric_mean=bundle.numeric_mean, numeric_scale=bundle.numeric_scale,
                calibration=self.calibration(kind, exclude_fold=fold), numeric_weight=bundle.numeric_weight,
                n_features=bundle.n_features,
            )
        return out


# Worker state: set before the pool forks, so the workers share the matrices copy-on-write.
_STATE: dict[str, Any] = {}


def _fit_task(task: tuple[str, int | None]) -> tuple[str, int | None, ModelBundle, list[float], dict[int, float], float]:
    """Fit ``kind`` on the training side of ``fold`` (all rows for None) and score what it held out."""
    kind, fold = task
    m: KindMatrix = _STATE["matrices"][kind]
    t0 = time.process_time()
    bundle = fit_model(m, m.rows(fold=fold))
    held = score_rows(bundle, m, m.rows(fold=fold, held_out=True)) if fold is not None else []
    pages: dict[int, float] = {}
    if kind == "js" and fold is not None and _STATE.get("pages") is not None:
        pages = page_maxima(bundle, _STATE["pages"], fold)
    return kind, fold, bundle, held, pages, time.process_time() - t0


def run_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], *, jobs: int = 1) -> Iterable[Any]:
    """``map(fn, tasks)``, in ``jobs`` forked worker processes when ``jobs > 1`` (results in
    task order; the work is deterministic, so the results do not depend on ``jobs``)."""
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap(fn, tasks)


#: Rough relative cost of fitting each kind (schedules the costly fits first).
_FIT_COST = {"url": 4, "js": 2, "html": 1}


def cross_validate(
    matrices: dict[str, KindMatrix],
    plan: FoldPlan,
    *,
    pages: PageScripts | None = None,
    final: bool = True,
    jobs: int = 1,
    quiet: bool = False,
) -> CrossValidation:
    """Fit every kind on each fold's training side (and on all rows when ``final``)."""
    import numpy as np

    folds: list[int | None] = list(range(plan.folds)) + ([None] if final else [])
    tasks = sorted(((kind, f) for kind in matrices for f in folds), key=lambda t: -_FIT_COST.get(t[0], 1))
    _STATE.update(matrices=matrices, pages=pages)
    fold_models: dict[str, list[Any]] = {kind: [None] * plan.folds for kind in matrices}
    oof = {kind: np.full(len(m.y), np.nan) for kind, m in matrices.items()}
    page_oof = np.zeros(pages.n_pages) if pages is not None else None
    finals: dict[str, ModelBundle] = {}
    try:
        with Progress(len(tasks), "cross-validation fits", enabled=not quiet) as bar:
            for kind, fold, bundle, held, page_scores, seconds in run_tasks(_fit_task, tasks, jobs=jobs):
                bar.update()
                if not quiet:
                    where = "all rows" if fold is None else f"fold {fold + 1}/{plan.folds} held out"
                    print(f"{kind}: fitted ({where}) in {seconds:.1f}s CPU", file=sys.stderr)
                if fold is None:
                    finals[kind] = bundle
                    continue
                fold_models[kind][fold] = bundle
                oof[kind][matrices[kind].rows(fold=fold, held_out=True)] = held
                if page_oof is not None:
                    for k, p in page_scores.items():
                        page_oof[k] = p
    finally:
        _STATE.clear()
    return CrossValidation(plan=plan, matrices=matrices, fold_models=fold_models, oof=oof, page_oof=page_oof,
                           page_folds=pages.folds if pages is not None else None, final=finals)


# -- metrics of the out-of-fold scores ------------------------------------------------------------

#: The cuts the manifest records besides the categories (``malwaresnipper cv`` reports them all).
MANIFEST_CUTS = ("minified", "topic", "path", "format")


def oof_metrics(cv: CrossValidation, kind: str) -> dict[str, Any]:
    """Pooled out-of-fold metrics of one model (measured rows only), plus each fold's own
    figures and their mean and spread."""
    import numpy as np

    m = cv.matrices[kind]
    idx = np.flatnonzero(m.measured & ~np.isnan(cv.oof[kind]))
    cal = cv.calibration(kind)
    samples = m.prepared.samples

    def metrics_of(rows: Any, cut: bool = False) -> dict[str, Any]:
        chosen = [samples[i] for i in rows]
        cuts = {k: v for k, v in breakdowns(kind, chosen).items() if k in MANIFEST_CUTS} if cut else None
        out = compute_metrics(
            m.y[rows].tolist(), cv.oof[kind][rows].tolist(), [s.category_key for s in chosen],
            thresholds={k: cal[k] for k in ("suspicious", "malicious")},
            samples_per_s=None,  # timings would make the manifest differ between identical runs
            breakdowns=cuts,
        )
        if kind == "js":
            web = [c for c in out["per_category"] if c in WEB_JS_CATEGORIES]
            out["web_categories_at_fpr_0.001"] = group_rate(out, web, "at_fpr_0.001")
            out["web_categories_at_fpr_0.01"] = group_rate(out, web, "at_fpr_0.01")
        return out

    pooled = metrics_of(idx, cut=True)
    per_fold = [metrics_of(idx[m.folds[idx] == f]) for f in range(cv.plan.folds)]
    pooled["folds"] = fold_summary(per_fold, web=kind == "js")
    pooled["calibration"] = cal
    return pooled


# -- writing models ----------------------------------------------------------------------------


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
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


def model_entry(bundle: ModelBundle, path: Path, digest: str) -> dict[str, Any]:
    """What the manifest says about one written model file."""
    return {
        "file": path.name,
        "sha256": digest,
        "version": f"{bundle.kind}-{digest[:12]}",
        "bytes": path.stat().st_size,
        "model": f"LogisticRegression(C={C_BY_KIND.get(bundle.kind, 3.0)}, liblinear, balanced)",
        "n_hash_features": bundle.n_features,
        "numeric_weight": bundle.numeric_weight,
        "numeric_features": bundle.numeric_keys,
        "calibration": {k: round(v, 6) for k, v in bundle.calibration.items()},
    }


def manifest_header(plan: FoldPlan) -> dict[str, Any]:
    import sklearn

    return {
        "format": 2,
        "sklearn_version": sklearn.__version__,
        "feature_version": FEATURE_VERSION,
        "text_feature_version": TEXT_FEATURE_VERSION,
        "cross_validation": {
            "folds": plan.folds, "seed": plan.seed,
            "by": "split_group, merged across files by shared group, URL host and registrable domain",
        },
        "seed": SEED,
    }


def write_models(out_dir: Path, bundles: dict[str, ModelBundle], header: dict[str, Any],
                 extra: dict[str, dict[str, Any]] | None = None,
                 keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write each bundle, then the manifest (last, atomically); returns the manifest.
    ``keep`` holds manifest entries of models already in ``out_dir`` that stay listed."""
    models: dict[str, Any] = dict(keep or {})
    for kind, bundle in bundles.items():
        path = out_dir / MODEL_FILES[kind]
        digest = save_bundle(bundle, path)
        models[kind] = {**model_entry(bundle, path, digest), **(extra or {}).get(kind, {})}
    manifest = {**header, "models": dict(sorted(models.items()))}
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    write_atomic(out_dir / MANIFEST_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return manifest


def write_fold_models(cv: CrossValidation, root: Path) -> list[Path]:
    """Each fold's models, with operating points from the other folds, in ``root/fold-<k>``:
    folders the engine loads like the shipped one (``[engine.ml] models_dir``)."""
    header = manifest_header(cv.plan)
    folders = []
    for fold in range(cv.plan.folds):
        folder = root / f"fold-{fold}"
        write_models(folder, cv.fold_bundles(fold), {**header, "held_out_fold": fold})
        folders.append(folder)
    return folders


# -- the whole recipe ----------------------------------------------------------------------------


def load_all(data: Sequence[str | Path], *, limit: int | None = None) -> tuple[list[Corpus], dict[str, list[Sample]]]:
    corpora = [load_corpus(p, limit=limit) for p in data]
    by_kind: dict[str, list[Sample]] = {}
    for corpus in corpora:
        for s in corpus.samples:
            by_kind.setdefault(s.kind, []).append(s)
    return corpora, by_kind


def prepare_matrices(
    by_kind: dict[str, list[Sample]], plan: FoldPlan, kinds: Sequence[str], *,
    trainable: TrainFilter | None = None, quiet: bool = False,
) -> tuple[dict[str, KindMatrix], PageScripts | None]:
    """Every wanted kind prepared and featurised, plus the benign pages' inline scripts."""
    matrices: dict[str, KindMatrix] = {}
    pages = None
    for kind in kinds:
        prepared = prepare(kind, by_kind[kind])
        if kind == "js" and "html" in by_kind:
            add_benign_page_scripts(prepared, by_kind["html"])
        matrices[kind] = build_matrix(prepared, plan, trainable=trainable, quiet=quiet)
    if "js" in kinds and "html" in by_kind:
        pages = build_page_scripts([p for p in by_kind["html"] if trainable is None or trainable(p)], plan,
                                   quiet=quiet)
    return matrices, pages


def train(
    data: Sequence[str | Path],
    out_dir: str | Path,
    *,
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
    folds: int = CV_FOLDS,
    seed: int = CV_SEED,
    jobs: int = 1,
    fold_models_dir: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train a model for each kind present in ``data``; returns the manifest it wrote.

    ``fold_models_dir``: also write each fold's models there (see :func:`write_fold_models`),
    to score that fold's rows with the whole engine as ``malwaresnipper cv`` does.
    """
    import sklearn

    out_dir = Path(out_dir)
    corpora, by_kind = load_all(data, limit=limit)
    wanted = [k for k in ("js", "url", "html") if k in by_kind and (kinds is None or k in kinds)]
    if not wanted:
        raise ValueError("no JS, URL or HTML samples in the given files")
    plan = FoldPlan(corpora, folds=folds, seed=seed)
    with wall_clock_deadlines_lifted():  # features must not depend on how busy the machine is
        matrices, pages = prepare_matrices(by_kind, plan, wanted, quiet=quiet)
    for kind, m in matrices.items():
        present = {int(f) for f in m.folds[m.y == 1]} & {int(f) for f in m.folds[m.y == 0]}
        if len(set(m.y.tolist())) < 2:
            raise ValueError(f"{kind}: the data needs both benign and malicious samples")
        if not present:
            raise ValueError(f"{kind}: no fold holds both benign and malicious groups; add data or folds")
    cv = cross_validate(matrices, plan, pages=pages, final=True, jobs=jobs, quiet=quiet)
    if fold_models_dir is not None:
        write_fold_models(cv, Path(fold_models_dir))

    manifest_path = out_dir / MANIFEST_NAME
    previous: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = {}
    header = manifest_header(plan)
    same_versions = all(previous.get(k) == header[k] for k in ("feature_version", "text_feature_version")) and (
        previous.get("sklearn_version") == sklearn.__version__)
    bundles: dict[str, ModelBundle] = {}
    extra: dict[str, dict[str, Any]] = {}
    for kind in wanted:
        bundle = cv.final[kind]
        bundle.calibration = cv.calibration(kind)
        bundles[kind] = bundle
        metrics = oof_metrics(cv, kind)
        metrics["dropped_markup_rows_without_scripts"] = matrices[kind].prepared.dropped
        if kind == "js" and cv.page_oof is not None:
            metrics["benign_pages_inline_scripts"] = {"n": len(cv.page_oof)}
        extra[kind] = {"n_train": len(matrices[kind].y), "cv_metrics": _rounded(metrics)}
    header["data"] = [{"file": c.path.name, "sha256": c.sha256, "kind": c.kind, "counts": c.counts()} for c in corpora]
    # Models of kinds not retrained this time stay listed (same versions only).
    kept = {k: v for k, v in previous.get("models", {}).items() if same_versions and k not in bundles}
    return write_models(out_dir, bundles, header, extra, keep=kept)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value
