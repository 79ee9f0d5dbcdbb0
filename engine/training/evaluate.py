"""Detection metrics for a scored, labelled corpus.

One function, :func:`compute_metrics`, used both by ``malwaresnipper eval`` (scores are the
engine's risk scores, 0-100) and by ``train`` (scores are a model's probabilities on the dev
split). Thresholds "at FPR x" are chosen on the scores themselves: the lowest score ``t`` such
that the share of benign samples scoring ``>= t`` is at most ``x``; the TPR is then the share of
positives scoring ``>= t``. ``>=`` matches how the engine applies its own thresholds.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .corpus import Sample

FPR_TARGETS = (0.01, 0.001)


def threshold_at_fpr(negative_scores: Sequence[float], max_fpr: float) -> float | None:
    """The lowest threshold whose FPR (share of negatives ``>= t``) is at most ``max_fpr``.

    Returns None without negatives. When even the top negative score would exceed the budget,
    the threshold sits just above it (nothing negative flagged).
    """
    if not negative_scores:
        return None
    neg = sorted(negative_scores, reverse=True)
    n = len(neg)
    allowed = int(max_fpr * n + 1e-9)  # negatives that may score >= t
    if allowed >= n:
        return neg[-1]
    # Candidate: the allowed-th highest negative score is the lowest t keeping the count <= allowed,
    # provided ties do not pull more negatives in; otherwise step just above the tied value.
    boundary = neg[allowed]  # the first negative that must stay below t
    return _next_above(boundary)


def _next_above(value: float) -> float:
    import math

    return math.nextafter(value, math.inf)


def rate(scores: Sequence[float], threshold: float | None) -> float | None:
    """Share of ``scores`` at or above ``threshold``."""
    if threshold is None or not scores:
        return None
    return sum(1 for s in scores if s >= threshold) / len(scores)


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (ties count half); None unless both classes are present."""
    pos = [s for y, s in zip(labels, scores, strict=False) if y == 1]
    neg = [s for y, s in zip(labels, scores, strict=False) if y == 0]
    if not pos or not neg:
        return None
    # Rank-sum (Mann-Whitney) with average ranks for ties.
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    pos_rank_sum = sum(r for r, y in zip(ranks, labels, strict=False) if y == 1)
    n_pos, n_neg = len(pos), len(neg)
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _at(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, float | None]:
    tp = sum(1 for y, s in zip(labels, scores, strict=False) if y == 1 and s >= threshold)
    fp = sum(1 for y, s in zip(labels, scores, strict=False) if y == 0 and s >= threshold)
    n_pos = sum(1 for y in labels if y == 1)
    n_neg = len(labels) - n_pos
    return {
        "threshold": threshold,
        "tpr": tp / n_pos if n_pos else None,
        "fpr": fp / n_neg if n_neg else None,
        "precision": tp / (tp + fp) if tp + fp else None,
    }


def compute_metrics(
    labels: Sequence[int],
    scores: Sequence[float],
    categories: Sequence[str],
    *,
    thresholds: Mapping[str, float],
    samples_per_s: float | None = None,
    extra: Mapping[str, Any] | None = None,
    breakdowns: Mapping[str, Sequence[str | None]] | None = None,
) -> dict[str, Any]:
    """The metrics ``eval --json`` prints (top-level keys fixed by the issue).

    ``thresholds`` holds the operating points to report (``suspicious`` and ``malicious``).
    ``per_category`` gives, for each category, its label side, count and the share flagged at
    each operating point: recall for malicious categories, FPR for benign ones. Each entry of
    ``breakdowns`` (name -> a group per row, or None) adds ``per_<name>`` in the same form.
    """
    labels = [int(y) for y in labels]
    scores = [float(s) for s in scores]
    negatives = [s for y, s in zip(labels, scores, strict=False) if y == 0]
    positives = [s for y, s in zip(labels, scores, strict=False) if y == 1]
    tpr_at_fpr: dict[str, Any] = {}
    fpr_thresholds: dict[str, float | None] = {}
    for target in FPR_TARGETS:
        t = threshold_at_fpr(negatives, target)
        fpr_thresholds[str(target)] = t
        tpr_at_fpr[str(target)] = {"tpr": rate(positives, t), "threshold": t, "fpr": rate(negatives, t)}
    at_thresholds = {name: _at(labels, scores, float(t)) for name, t in thresholds.items()}

    out: dict[str, Any] = {
        "n": len(labels),
        "roc_auc": roc_auc(labels, scores),
        "tpr_at_fpr": tpr_at_fpr,
        "at_thresholds": at_thresholds,
        "per_category": _per_group(labels, scores, categories, thresholds, fpr_thresholds),
        "samples_per_s": samples_per_s,
    }
    # Other ways of cutting the same rows (per source, per topic ...), at the same thresholds.
    for name, groups in (breakdowns or {}).items():
        out[f"per_{name}"] = _per_group(labels, scores, groups, thresholds, fpr_thresholds)
    if extra:
        out.update(extra)
    return out


def _per_group(
    labels: Sequence[int], scores: Sequence[float], groups: Sequence[str | None],
    thresholds: Mapping[str, float], fpr_thresholds: Mapping[str, float | None],
) -> dict[str, Any]:
    """For each group (rows whose group is None are left out): its label side, count and the
    share flagged at each operating point (recall for malicious groups, FPR for benign ones)."""
    by_group: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for y, s, g in zip(labels, scores, groups, strict=False):
        if g is not None:
            by_group[g].append((y, s))
    out: dict[str, Any] = {}
    for group in sorted(by_group):
        rows = by_group[group]
        ys = {y for y, _ in rows}
        group_scores = [s for _, s in rows]
        side = "positive" if ys == {1} else "negative" if ys == {0} else "mixed"
        entry: dict[str, Any] = {
            "n": len(rows),
            "side": side,
            "metric": "recall" if side == "positive" else "fpr" if side == "negative" else "flagged",
        }
        for name, t in thresholds.items():
            entry[f"at_{name}"] = rate(group_scores, float(t))
        for target, fpr_t in fpr_thresholds.items():
            entry[f"at_fpr_{target}"] = rate(group_scores, fpr_t)
        out[group] = entry
    return out


def group_rate(metrics: Mapping[str, Any], categories: Sequence[str], key: str) -> float | None:
    """Pooled share flagged over several categories (e.g. the JS web categories) at ``key``."""
    total = flagged = 0.0
    for cat in categories:
        entry = metrics["per_category"].get(cat)
        if entry and entry.get(key) is not None:
            total += entry["n"]
            flagged += entry[key] * entry["n"]
    return flagged / total if total else None


def headline(metrics: Mapping[str, Any], *, web: bool = False) -> dict[str, float | None]:
    """The figures a fold is summed up by (flat, so folds can be averaged)."""
    out: dict[str, float | None] = {"roc_auc": metrics["roc_auc"]}
    for target, entry in metrics["tpr_at_fpr"].items():
        out[f"tpr_at_fpr_{target}"] = entry["tpr"]
    for name, entry in metrics["at_thresholds"].items():
        out[f"tpr_at_{name}"] = entry["tpr"]
        out[f"fpr_at_{name}"] = entry["fpr"]
    if web:
        cats = [c for c in metrics["per_category"] if c in WEB_CATEGORIES]
        for target in ("0.01", "0.001"):
            out[f"web_at_fpr_{target}"] = group_rate(metrics, cats, f"at_fpr_{target}")
    return out


#: The JavaScript categories a web gateway meets in pages (the rest are e-mail droppers).
WEB_CATEGORIES = ("exploit_kit", "skimmer", "cryptominer", "injected_legit_page")


def mean_and_spread(rows: Sequence[Mapping[str, float | None]]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Mean and standard deviation (population) of each figure over the folds that have it."""
    import statistics

    mean: dict[str, float | None] = {}
    spread: dict[str, float | None] = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        values = [v for r in rows if (v := r.get(key)) is not None]
        mean[key] = statistics.fmean(values) if values else None
        spread[key] = statistics.pstdev(values) if len(values) > 1 else None
    return mean, spread


def fold_summary(per_fold: Sequence[Mapping[str, Any]], *, web: bool = False) -> dict[str, Any]:
    """Each fold's headline figures, with their mean and standard deviation across folds."""
    rows = [headline(m, web=web) for m in per_fold]
    mean, spread = mean_and_spread(rows)
    return {"per_fold": rows, "mean": mean, "std": spread, "n_per_fold": [m["n"] for m in per_fold]}


# -- how rows are cut in reports ------------------------------------------------------------------

_FEED = re.compile(r"(?:^|/)(?:feed|feeds|rss|atom|index\.xml|rss\.xml|atom\.xml|feed\.xml)(?:[/.?]|$)|\.(?:xml|rss|atom)(?:\?|$)")


def url_path_kind(url: str) -> str:
    """'bare' (no path), 'feed' (an RSS/Atom address) or 'other'."""
    rest = url.split("://", 1)[-1]
    path = rest[rest.find("/"):] if "/" in rest else "/"
    if path in ("", "/"):
        return "bare"
    return "feed" if _FEED.search(path.lower()) else "other"


def short_source(sample: Sample) -> str:
    source = str(sample.meta.get("source") or "unknown")
    return source.split(" (", 1)[0][:60]


#: URL sources with fewer rows are reported together.
SMALL_SOURCE = 400


def breakdowns(kind: str, samples: Sequence[Sample]) -> dict[str, list[str | None]]:
    """The ways each kind's rows are cut in the report (None: the row is not in that cut)."""
    out: dict[str, list[str | None]] = {}
    if kind == "js":
        out["minified"] = [None if s.y or "minified" not in s.meta else
                           "minified" if s.meta["minified"] else "plain" for s in samples]
        out["topic"] = [s.meta.get("topic") for s in samples]
        out["v2_source"] = [short_source(s) if s.meta.get("topic") else None for s in samples]
        out["file"] = [str(s.meta.get("file")) for s in samples]
    elif kind == "url":
        sources = [short_source(s) for s in samples]
        sizes = Counter(sources)
        # The 48 small v2 link lists are pooled (each alone says little).
        out["source"] = [src if sizes[src] >= SMALL_SOURCE or not src.startswith("links in github:")
                         else "links in smaller v2 lists" for src in sources]
        out["path"] = [f"{s.label}/{url_path_kind(s.text)}" for s in samples]
        out["source_path"] = [f"{src} | {url_path_kind(s.text)}" if s.y == 0 else None
                              for src, s in zip(out["source"], samples, strict=False)]
    elif kind == "html":
        out["source"] = [short_source(s) for s in samples]
        out["format"] = [f"{s.label}/{s.format or 'html'}" for s in samples]
    return out
