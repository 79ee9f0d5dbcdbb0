"""Grouped k-fold cross-validation of the whole method: ``malwaresnipper cv``.

For each fold, the models are fitted on the other folds by the code ``train`` uses (the fits
are :func:`.train.cross_validate`'s, the very ones whose out-of-fold scores set the shipped
models' operating points), with operating points taken from the out-of-fold scores of the
*other* folds, written to a folder as ``train`` writes them, and the **whole engine** loads them
from there (``[engine.ml] models_dir``) and scans every held-out row as a gateway would. So each
row is judged by an engine whose models and thresholds never saw its family, package, kit or
site.

Reported: each model alone (its out-of-fold probability) and the engine (risk and level),
pooled over all held-out rows and per fold (mean and spread), per category, per source, per v2
``topic``, benign URLs by path kind (feed addresses apart), and the figures the project is
steered by (:data:`FIRST_CLASS`). ``--oof`` writes one JSON line per row with every layer's score
and confidence, each model's probability, the risk, the level and the indicator ids, so that
thresholds and fusion weights can be chosen on out-of-fold scores only.

Samples are data: nothing is fetched, rendered or executed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..config import EngineConfig, Ml
from ..features.behaviour import wall_clock_deadlines_lifted
from .corpus import Sample, capture_for
from .evaluate import (
    WEB_CATEGORIES,
    breakdowns,
    compute_metrics,
    group_rate,
    headline,
    mean_and_spread,
    url_path_kind,
)
from .progress import Progress
from .split import CV_FOLDS, CV_SEED, FoldPlan
from .train import (
    CrossValidation,
    TrainFilter,
    cross_validate,
    load_all,
    prepare_matrices,
    run_tasks,
    write_fold_models,
)

#: Rows a worker scans per task (small enough to keep both workers busy to the end).
CHUNK = 1500
#: The engine's time budget during cross-validation: a busy machine must not make figures
#: depend on which layers happened to run in time (a skipped layer is never BENIGN, but it is
#: not what is being measured here).
CV_TIME_BUDGET_MS = 600_000

# -- the figures the project is steered by ------------------------------------------------------


def _cut(metrics: Mapping[str, Any], table: str, key: str, at: str) -> float | None:
    entry = metrics.get(table, {}).get(key)
    return None if entry is None else entry.get(at)


def _sum_cut(metrics: Mapping[str, Any], table: str, keys: Sequence[str], at: str) -> float | None:
    total = flagged = 0.0
    for key in keys:
        entry = metrics.get(table, {}).get(key)
        if entry and entry.get(at) is not None:
            total += entry["n"]
            flagged += entry["n"] * entry[at]
    return flagged / total if total else None


def first_class(kind: str, engine: Mapping[str, Any], model: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Named figures of one kind from the engine's and the model's metrics of one fold (or pooled)."""
    out: dict[str, float | None] = {}
    for scope, metrics in (("engine", engine), ("model", model)):
        if not metrics:
            continue
        for name, value in headline(metrics, web=kind == "js").items():
            if scope == "model" and name.startswith(("tpr_at_s", "tpr_at_m", "fpr_at_")):
                continue  # the model's own operating points differ per fold: see the engine's
            out[f"{kind}.{scope}.{name}"] = value
    e = engine
    for level in ("suspicious", "malicious"):
        at = f"at_{level}"
        if kind == "js":
            out[f"js.engine.benign_fpr_{level}"] = e["at_thresholds"][level]["fpr"]
            out[f"js.engine.minified_fpr_{level}"] = _cut(e, "per_minified", "minified", at)
            out[f"js.engine.plain_fpr_{level}"] = _cut(e, "per_minified", "plain", at)
            benign_v2 = [k for k, v in e.get("per_topic", {}).items() if v["side"] == "negative"]
            out[f"js.engine.v2_benign_fpr_{level}"] = _sum_cut(e, "per_topic", benign_v2, at)
            out[f"js.engine.skimmer_recall_{level}"] = _cut(e, "per_category", "skimmer", at)
            web = [c for c in e["per_category"] if c in WEB_CATEGORIES]
            out[f"js.engine.web_recall_{level}"] = group_rate(e, web, at)
        elif kind == "url":
            out[f"url.engine.benign_fpr_{level}"] = e["at_thresholds"][level]["fpr"]
            out[f"url.engine.phishing_recall_{level}"] = _cut(e, "per_category", "phishing", at)
            feeds = [k for k in e.get("per_path", {}) if k == "benign/feed"]
            others = [k for k in e.get("per_path", {}) if k.startswith("benign/") and k != "benign/feed"]
            out[f"url.engine.benign_feed_fpr_{level}"] = _sum_cut(e, "per_path", feeds, at)
            out[f"url.engine.benign_not_feed_fpr_{level}"] = _sum_cut(e, "per_path", others, at)
        elif kind == "html":
            out[f"html.engine.benign_fpr_{level}"] = e["at_thresholds"][level]["fpr"]
            out[f"html.engine.login_fpr_{level}"] = _cut(e, "per_category", "login_page", at)
            # What a gateway sees: pages as rendered, not PHP or template source as shipped.
            out[f"html.engine.rendered_benign_fpr_{level}"] = _cut(e, "per_format", "benign/html", at)
            phishing = [k for k, v in e["per_category"].items() if v["side"] == "positive"]
            out[f"html.engine.phishing_recall_{level}"] = _sum_cut(e, "per_category", phishing, at)
    if kind == "url" and model:
        feeds = [k for k in model.get("per_path", {}) if k == "benign/feed"]
        others = [k for k in model.get("per_path", {}) if k.startswith("benign/") and k != "benign/feed"]
        for target in ("0.01", "0.001"):
            out[f"url.model.benign_feed_at_fpr_{target}"] = _sum_cut(model, "per_path", feeds, f"at_fpr_{target}")
            out[f"url.model.benign_not_feed_at_fpr_{target}"] = _sum_cut(model, "per_path", others, f"at_fpr_{target}")
    return out


# -- scanning the held-out rows with the engine --------------------------------------------------

def fold_engine(models_dir: str | Path, config: EngineConfig | None = None,
                layers: Sequence[str] | None = None) -> Any:
    """The engine that judges a fold's held-out rows: ``config`` with the fold's models and a
    time budget no busy machine runs out of."""
    from ..engine import RiskEngine

    base = config or EngineConfig()
    fold_config = dataclasses.replace(
        base, ml=Ml(models_dir=str(models_dir)),
        limits=dataclasses.replace(base.limits, time_budget_ms=CV_TIME_BUDGET_MS),
    )
    return RiskEngine(fold_config, layers=list(layers) if layers else None)


def scan_row(engine: Any, sample: Sample) -> dict[str, Any]:
    """What the OOF file records of one row's verdict (or why it could not be scanned)."""
    from ..errors import MalwareSnipperError

    try:
        verdict = engine.scan(capture_for(sample, engine.config.capture_limits()))
    except MalwareSnipperError as exc:
        return {"error": str(exc)[:200]}
    probabilities = {}
    layers = {}
    for result in verdict.layers:
        layers[result.layer] = {"score": round(result.score, 4), "confidence": round(result.confidence, 4)}
        for model in ("js", "url", "html"):
            p = result.details.get(f"{model}_probability") if result.details else None
            if p is not None:
                probabilities[model] = p
    return {"risk": round(verdict.risk_score, 4), "level": verdict.threat_level.value,
            "indicators": sorted({ind.id for ind in verdict.indicators}), "layers": layers,
            "probabilities": probabilities}


_SCAN: dict[str, Any] = {}


def _engine_for(fold: int) -> Any:
    engines = _SCAN.setdefault("engines", {})
    if fold not in engines:
        engines.clear()  # one fold at a time per worker: keep one engine's models in memory
        engines[fold] = fold_engine(Path(_SCAN["models_root"]) / f"fold-{fold}", _SCAN["config"], _SCAN["layers"])
    return engines[fold]


def _scan_task(task: tuple[int, str, Sequence[int]]) -> list[dict[str, Any]]:
    fold, kind, indices = task
    engine = _engine_for(fold)
    return [{"i": i, **scan_row(engine, _SCAN["by_kind"][kind][i])} for i in indices]


def _tasks(by_kind: Mapping[str, Sequence[Sample]], plan: FoldPlan) -> list[tuple[int, str, list[int]]]:
    tasks = []
    for fold in range(plan.folds):
        for kind, samples in by_kind.items():
            idx = [i for i, s in enumerate(samples) if plan.fold_of(s.group) == fold]
            tasks += [(fold, kind, idx[k:k + CHUNK]) for k in range(0, len(idx), CHUNK)]
    return tasks


# -- the run --------------------------------------------------------------------------------------


@wall_clock_deadlines_lifted()  # features and verdicts must not depend on how busy the machine is
def run_cv(
    data: Sequence[str | Path],
    *,
    config: EngineConfig | None = None,
    layers: Sequence[str] | None = None,
    folds: int = CV_FOLDS,
    seed: int = CV_SEED,
    jobs: int = 1,
    limit: int | None = None,
    oof_out: TextIO | None = None,
    train_only: Sequence[str | Path] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Cross-validate models and engine over ``data``; returns the report (see module doc).

    ``train_only``: learn (fit and operating points) from the rows of these files only; the
    rows of the other files are only measured (how a method does on data it never learns from).
    """
    from ..engine import RiskEngine  # noqa: F401 - imported before the workers fork, once for all

    started = time.perf_counter()
    cpu_started = time.process_time()
    corpora, by_kind = load_all(data, limit=limit)
    kinds = [k for k in ("js", "url", "html") if k in by_kind]
    plan = FoldPlan(corpora, folds=folds, seed=seed)
    trainable: TrainFilter | None = None
    if train_only:
        names = {Path(f).name for f in train_only}
        unknown = names - {c.path.name for c in corpora}
        if unknown:
            raise ValueError(f"--train-only: {sorted(unknown)} not among the --data files")

        def trainable(s: Sample) -> bool:
            return s.meta.get("file") in names
    matrices, pages = prepare_matrices(by_kind, plan, kinds, trainable=trainable, quiet=quiet)
    featurised = time.perf_counter()
    cv = cross_validate(matrices, plan, pages=pages, final=False, jobs=jobs, quiet=quiet)
    fitted = time.perf_counter()
    model_prob = _model_probabilities(cv)

    results: dict[str, list[dict[str, Any] | None]] = {k: [None] * len(v) for k, v in by_kind.items()}
    with tempfile.TemporaryDirectory(prefix="malwaresnipper-cv-") as root:
        write_fold_models(cv, Path(root))
        _SCAN.update(config=config or EngineConfig(), layers=list(layers) if layers else None, models_root=root,
                     by_kind={k: by_kind[k] for k in kinds})
        tasks = _tasks({k: by_kind[k] for k in kinds}, plan)
        try:
            with Progress(sum(len(t[2]) for t in tasks), "cv: engine on held-out rows", enabled=not quiet) as bar:
                for (fold, kind, _), rows in zip(tasks, run_tasks(_scan_task, tasks, jobs=jobs), strict=False):
                    bar.update(len(rows))
                    for row in rows:
                        row["fold"] = fold
                        results[kind][row.pop("i")] = row
        finally:
            _SCAN.clear()
    scanned = time.perf_counter()

    t = (config or EngineConfig()).thresholds
    thresholds = {"suspicious": t.suspicious, "malicious": t.malicious}
    report: dict[str, Any] = {"folds": plan.folds, "seed": plan.seed, "files": [Path(p).name for p in data],
                              "train_only": [Path(p).name for p in train_only or ()], "kinds": {}}
    figures: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        samples = by_kind[kind]
        rows = results[kind]
        if oof_out is not None:
            _write_oof(oof_out, kind, samples, rows, model_prob.get(kind, {}))
        kind_report, kind_figures = _kind_report(kind, samples, rows, model_prob.get(kind, {}), cv, thresholds)
        report["kinds"][kind] = kind_report
        figures.update(kind_figures)
    report["first_class"] = figures
    report["seconds"] = {
        "featurise": round(featurised - started, 1), "fit": round(fitted - featurised, 1),
        "engine": round(scanned - fitted, 1), "total": round(time.perf_counter() - started, 1),
        "cpu_main_process": round(time.process_time() - cpu_started, 1), "jobs": jobs,
    }
    return report


def risk_metrics(kind: str, samples: Sequence[Sample], risks: Sequence[float], thresholds: Mapping[str, float],
                 cuts: Mapping[str, Sequence[str | None]] | None = None) -> dict[str, Any]:
    """The engine's metrics over some rows, cut every way :func:`breakdowns` cuts them."""
    return compute_metrics(
        [s.y for s in samples], list(risks), [s.category_key for s in samples], thresholds=thresholds,
        breakdowns=cuts if cuts is not None else breakdowns(kind, samples),
    )


def _model_probabilities(cv: CrossValidation) -> dict[str, dict[str, tuple[float, int]]]:
    """{kind: {sample id: (out-of-fold probability, fold)}} for the measured rows."""
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for kind, m in cv.matrices.items():
        out[kind] = {s.id: (float(cv.oof[kind][i]), int(m.folds[i]))
                     for i, s in enumerate(m.prepared.samples) if m.measured[i]}
    return out


def _write_oof(out: TextIO, kind: str, samples: Sequence[Sample], rows: Sequence[dict[str, Any] | None],
               model_prob: Mapping[str, tuple[float, int]]) -> None:
    for s, row in zip(samples, rows, strict=False):
        if row is None:
            continue
        prob = model_prob.get(s.id)
        record = {
            "id": s.id, "kind": kind, "label": s.label, "y": s.y, "category": s.category,
            "category_key": s.category_key, "source": s.meta.get("source"), "topic": s.meta.get("topic"),
            "minified": s.meta.get("minified"), "format": s.format or None, "group": s.group,
            "fold": row["fold"], "model_probability": None if prob is None else round(prob[0], 6),
            **{k: v for k, v in row.items() if k != "fold"},
        }
        if kind == "url":
            record["path_kind"] = url_path_kind(s.text)
        out.write(json.dumps(record) + "\n")


def _kind_report(kind: str, samples: Sequence[Sample], rows: Sequence[dict[str, Any] | None],
                 model_prob: Mapping[str, tuple[float, int]], cv: CrossValidation,
                 thresholds: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Engine and model metrics of one kind: pooled, per fold, and the first-class figures."""
    done = {i: r for i, r in enumerate(rows) if r is not None and "error" not in r}
    ok = list(done)
    cuts = breakdowns(kind, samples)

    def engine_metrics(idx: Sequence[int]) -> dict[str, Any]:
        return risk_metrics(kind, [samples[i] for i in idx], [done[i]["risk"] for i in idx], thresholds,
                            cuts={k: [v[i] for i in idx] for k, v in cuts.items()})

    with_model = [i for i in ok if samples[i].id in model_prob]

    def model_metrics(idx: Sequence[int], fold: int | None) -> dict[str, Any]:
        cal = cv.calibration(kind, exclude_fold=fold)
        return compute_metrics(
            [samples[i].y for i in idx], [model_prob[samples[i].id][0] for i in idx],
            [samples[i].category_key for i in idx], thresholds={k: cal[k] for k in ("suspicious", "malicious")},
            breakdowns={k: [v[i] for i in idx] for k, v in cuts.items()},
        )

    pooled_engine = engine_metrics(ok)
    pooled_model = model_metrics(with_model, None) if with_model else None
    per_fold_figures: list[dict[str, float | None]] = []
    for fold in range(cv.plan.folds):
        e_idx = [i for i in ok if done[i]["fold"] == fold]
        m_idx = [i for i in with_model if done[i]["fold"] == fold]
        if not e_idx or len({samples[i].y for i in e_idx}) < 2:
            per_fold_figures.append({})  # keeps per_fold aligned with the fold numbers
            continue
        per_fold_figures.append(first_class(kind, engine_metrics(e_idx),
                                            model_metrics(m_idx, fold) if m_idx else None))
    pooled_figures = first_class(kind, pooled_engine, pooled_model)
    mean, spread = mean_and_spread(per_fold_figures)
    figures = {
        name: {"pooled": value, "mean": mean.get(name), "std": spread.get(name),
               "min": min((v for f in per_fold_figures if (v := f.get(name)) is not None), default=None),
               "max": max((v for f in per_fold_figures if (v := f.get(name)) is not None), default=None),
               "per_fold": [f.get(name) for f in per_fold_figures]}
        for name, value in pooled_figures.items()
    }
    errors = Counter(str(r["error"]).split(":")[0][:60] for r in rows if r is not None and "error" in r)
    report = {
        "n": len(samples), "not_scannable": dict(errors),
        "fold_sizes": [sum(1 for i in ok if done[i]["fold"] == f) for f in range(cv.plan.folds)],
        "engine": pooled_engine, "model": pooled_model,
        "calibration_per_fold": [cv.calibration(kind, exclude_fold=f) for f in range(cv.plan.folds)],
    }
    return report, figures


# -- the human report ----------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "   n/a" if v is None else f"{100 * v:6.2f}"


def format_report(report: Mapping[str, Any]) -> str:
    lines = [f"cross-validation: {report['folds']} folds by split_group, seed {report['seed']}"]
    lines.append("first-class figures (%): pooled | mean ± std over folds | min - max")
    for name, f in report["first_class"].items():
        std = "" if f["std"] is None else f" ± {100 * f['std']:.2f}"
        lines.append(f"  {name:<44} {_pct(f['pooled'])} | {_pct(f['mean'])}{std:<8} | "
                     f"{_pct(f['min'])} - {_pct(f['max'])}")
    for kind, k in report["kinds"].items():
        lines.append(f"== {kind}: {k['n']} rows, per fold {k['fold_sizes']}"
                     + (f"; not scannable {k['not_scannable']}" if k["not_scannable"] else ""))
        tables = [name for name in k["engine"] if name.startswith("per_")]
        for table in tables:
            lines.append(f"  {table[4:]} (engine: at SUSPICIOUS / MALICIOUS / at FPR 0.1 %; model: at FPR 1 % / 0.1 %)")
            model_table = (k["model"] or {}).get(table, {})
            for key, e in k["engine"][table].items():
                m = model_table.get(key)
                model_part = "" if m is None else f"   model {_pct(m['at_fpr_0.01'])} {_pct(m['at_fpr_0.001'])}"
                lines.append(f"    {key[:58]:<58} n={e['n']:<6} {e['metric']:<6} {_pct(e['at_suspicious'])} "
                             f"{_pct(e['at_malicious'])} {_pct(e['at_fpr_0.001'])}{model_part}")
    s = report["seconds"]
    lines.append(f"time: {s['total']}s (featurise {s['featurise']}s, fit {s['fit']}s, engine {s['engine']}s; "
                 f"{s['jobs']} job(s))")
    return "\n".join(lines)


def print_report(report: Mapping[str, Any], *, as_json: bool, out: Callable[[str], None] = print) -> None:
    out(json.dumps(report) if as_json else format_report(report))
    sys.stdout.flush()
