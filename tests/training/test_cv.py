"""Grouped k-fold cross-validation: whole groups per fold, reproducible from the seed, held-out
rows never trained on, thresholds from other folds only, and ``malwaresnipper cv`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from malwaresnipper.engine.training import train as train_mod
from malwaresnipper.engine.training.corpus import Corpus, Sample, load_corpus
from malwaresnipper.engine.training.cv import run_cv
from malwaresnipper.engine.training.evaluate import url_path_kind
from malwaresnipper.engine.training.split import FoldPlan
from malwaresnipper.engine.training.synthetic import write_all, write_corpus


def _url(i: str, group: str, host: str, domain: str, label: str = "benign") -> Sample:
    return Sample(id=i, kind="url", label=label, category=label, text=f"https://{host}/x", group=group,
                  meta={"host": host, "reg_domain": domain})


def _corpus(name: str, samples: list[Sample]) -> Corpus:
    return Corpus(path=Path(name), kind=samples[0].kind, samples=samples, sha256="0" * 64)


def test_fold_plan_keeps_one_site_in_one_fold_across_files() -> None:
    """The v1 and v2 URL files name their groups differently: a site present in both must still
    land in one fold; a platform domain that a file splits by host stays split by host."""
    v1 = _corpus("v1", [
        _url("a", "v1-shop", "www.shop.example", "shop.example"),
        _url("b", "v1-x", "x.weebly.com", "weebly.com", "phishing"),
        _url("c", "v1-y", "y.weebly.com", "weebly.com"),
    ] + [_url(f"f{k}", f"v1-filler{k}", f"s{k}.example", f"s{k}.example") for k in range(200)])
    v2 = _corpus("v2", [
        _url("d", "v2-shop", "blog.shop.example", "shop.example"),  # same domain, other host
        _url("e", "v2-y", "y.weebly.com", "weebly.com"),  # same host as a v1 row
        _url("g", "v2-z", "z.weebly.com", "weebly.com"),  # another site of the platform
    ])
    for seed in range(20):
        plan = FoldPlan([v1, v2], folds=5, seed=seed)
        assert plan.fold_of("v1-shop") == plan.fold_of("v2-shop")
        assert plan.fold_of("v1-y") == plan.fold_of("v2-y")
    plan = FoldPlan([v1, v2], folds=5, seed=0)
    assert plan.merged_group("v2-shop") == plan.merged_group("v1-shop")
    assert plan.merged_group("v2-z") not in {plan.merged_group("v1-x"), plan.merged_group("v1-y")}
    assert plan.merged_group("v1-x") != plan.merged_group("v1-y")
    # The seed draws the assignment; the same seed gives the same one; folds are all used.
    folds = {seed: [FoldPlan([v1, v2], seed=seed).fold_of(f"v1-filler{k}") for k in range(200)] for seed in (1, 2)}
    assert folds[1] == [FoldPlan([v1, v2], seed=1).fold_of(f"v1-filler{k}") for k in range(200)]
    assert folds[1] != folds[2]
    assert set(folds[1]) == set(range(5))
    with pytest.raises(ValueError):
        FoldPlan([v1], folds=1)


def test_rows_of_a_group_never_straddle_folds(tmp_path: Path) -> None:
    corpora = [load_corpus(p) for p in write_all(tmp_path, n=40)]
    plan = FoldPlan(corpora, folds=5, seed=7)
    by_group: dict[str, set[int]] = {}
    for corpus in corpora:
        for s in corpus.samples:
            by_group.setdefault(s.group, set()).add(plan.fold_of(s.group))
    assert all(len(f) == 1 for f in by_group.values())
    assert len({next(iter(f)) for f in by_group.values()}) == 5


def _planted_js(tmp_path: Path) -> list[Path]:
    """The synthetic JS corpus plus one group of benign-looking widgets labelled malicious, each
    carrying a token no other row has: a model that trained on them remembers them."""
    import gzip

    path = write_corpus(tmp_path / "js.jsonl.gz", "js", n=40)
    with gzip.open(path, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    benign = [r for r in rows if r["label"] == "benign"][:3]
    for k, r in enumerate(benign):
        rows.append({**r, "id": f"js-planted{k}", "label": "malicious", "category": "skimmer",
                     "split_group": "planted", "content": r["content"] + f"\nvar zqxplanted{k} = zqxplanted;"})
    with gzip.open(path, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return [path]


def test_held_out_rows_are_scored_by_models_that_never_saw_them(tmp_path: Path) -> None:
    corpora, by_kind = train_mod.load_all(_planted_js(tmp_path))
    plan = FoldPlan(corpora, folds=5)
    matrices, _ = train_mod.prepare_matrices(by_kind, plan, ["js"], quiet=True)
    cv = train_mod.cross_validate(matrices, plan, final=True, quiet=True)
    m = matrices["js"]
    planted = [i for i, s in enumerate(m.prepared.samples) if s.group == "planted"]
    final = train_mod.score_rows(cv.final["js"], m, np.array(planted))
    # Fitted on them, the final model knows them; out of fold they look like the widgets they are.
    assert min(final) > 0.5
    assert max(cv.oof["js"][planted]) < 0.5
    assert not np.isnan(cv.oof["js"]).any()


def test_a_folds_thresholds_come_from_the_other_folds_only(tmp_path: Path) -> None:
    corpora, by_kind = train_mod.load_all(write_all(tmp_path, n=40))
    plan = FoldPlan(corpora, folds=5)
    matrices, pages = train_mod.prepare_matrices(by_kind, plan, ["js", "html"], quiet=True)
    cv = train_mod.cross_validate(matrices, plan, pages=pages, final=False, quiet=True)
    m = matrices["js"]
    own = (m.folds == 2) & (m.y == 0) & m.measured
    before_fold, before_all = cv.calibration("js", exclude_fold=2), cv.calibration("js")
    cv.oof["js"][own] = 0.999  # fold 2's benign rows now score like attacks
    assert cv.calibration("js", exclude_fold=2) == before_fold
    assert cv.calibration("js")["malicious"] > before_all["malicious"]
    assert cv.fold_bundles(2)["js"].calibration == before_fold
    # The page-level points of the JS model follow the same rule.
    assert {"page_suspicious", "page_malicious"} <= set(before_fold)


@pytest.fixture(scope="module")
def cv_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, list[dict]]]:
    """The same cross-validation three times: twice with one seed (one and two worker
    processes), once with another seed."""
    import io

    root = tmp_path_factory.mktemp("cv")
    data = write_all(root / "data", n=30)
    runs = {}
    for name, seed, jobs in (("a", 11, 1), ("b", 11, 2), ("c", 12, 1)):
        out = io.StringIO()
        report = run_cv(data, folds=3, seed=seed, jobs=jobs, oof_out=out, quiet=True)
        runs[name] = (report, [json.loads(line) for line in out.getvalue().splitlines()])
    return runs


def test_cv_is_reproducible_from_its_seed(cv_runs: dict[str, tuple[dict, list[dict]]]) -> None:
    (report_a, oof_a), (report_b, oof_b), (report_c, oof_c) = cv_runs["a"], cv_runs["b"], cv_runs["c"]
    for report in (report_a, report_b, report_c):
        report.pop("seconds")
    assert oof_a == oof_b
    assert report_a == report_b
    assert [r["fold"] for r in oof_a] != [r["fold"] for r in oof_c]
    assert report_a["first_class"] != report_c["first_class"] or oof_a != oof_c


def test_oof_rows_hold_what_thresholds_and_fusion_are_chosen_on(cv_runs: dict[str, tuple[dict, list[dict]]]) -> None:
    report, oof = cv_runs["a"]
    assert len(oof) == 3 * 60  # every row of the three files, once
    assert len({(r["kind"], r["id"]) for r in oof}) == len(oof)
    for r in oof:
        assert set(r) >= {"id", "label", "category", "source", "topic", "fold", "layers", "probabilities",
                          "model_probability", "risk", "level", "indicators"}
        assert r["level"] == ("MALICIOUS" if r["risk"] >= 70 else "SUSPICIOUS" if r["risk"] >= 40 else "BENIGN")
        assert {"score", "confidence"} <= set(r["layers"]["ml"])
    # The report's figures are the rows' figures.
    for kind in ("js", "url", "html"):
        rows = [r for r in oof if r["kind"] == kind]
        benign = [r for r in rows if r["y"] == 0]
        fpr = sum(r["risk"] >= 40 for r in benign) / len(benign)
        assert report["first_class"][f"{kind}.engine.benign_fpr_suspicious"]["pooled"] == pytest.approx(fpr)
        per_fold = [sum(r["risk"] >= 40 for r in benign if r["fold"] == f) / sum(r["fold"] == f for r in benign)
                    for f in range(3)]
        assert report["first_class"][f"{kind}.engine.benign_fpr_suspicious"]["mean"] == pytest.approx(np.mean(per_fold))
        assert report["kinds"][kind]["fold_sizes"] == [sum(r["fold"] == f for r in rows) for f in range(3)]
    url = [r for r in oof if r["kind"] == "url"]
    assert all("url" in r["probabilities"] for r in url)  # the engine asked the fold's URL model


def test_cv_command_writes_report_and_oof(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from malwaresnipper.cli.main import main

    data = write_all(tmp_path / "data", n=20)
    oof = tmp_path / "out" / "oof.jsonl"
    assert main(["cv", "--data", *map(str, data), "--folds", "3", "--json", "--quiet", "--oof", str(oof)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["folds"] == 3
    assert {"js.engine.benign_fpr_suspicious", "js.engine.benign_fpr_malicious", "js.engine.skimmer_recall_malicious",
            "js.engine.web_at_fpr_0.001", "js.model.tpr_at_fpr_0.001", "url.engine.benign_feed_fpr_suspicious",
            "url.model.tpr_at_fpr_0.01", "html.engine.login_fpr_suspicious"} <= set(report["first_class"])
    assert len(oof.read_text().splitlines()) == 120
    assert main(["cv", "--data", *map(str, data), "--folds", "1", "--quiet"]) == 2
    assert "--folds" in capsys.readouterr().err


@pytest.mark.parametrize(("url", "kind"), [
    ("https://blog.example.org/", "bare"),
    ("https://blog.example.org", "bare"),
    ("https://blog.example.org/feed.xml", "feed"),
    ("https://blog.example.org/index.xml", "feed"),
    ("https://blog.example.org/rss", "feed"),
    ("https://blog.example.org/feed/", "feed"),
    ("https://blog.example.org/blog/atom.xml", "feed"),
    ("https://blog.example.org/posts/feeding-cats", "other"),
    ("http://paypal.example.net/webscr.php?cmd=login", "other"),
])
def test_url_path_kind_sets_feed_addresses_apart(url: str, kind: str) -> None:
    assert url_path_kind(url) == kind
