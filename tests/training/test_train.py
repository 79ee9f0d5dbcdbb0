"""Training is reproducible and leaves only complete files behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from malwaresnipper.engine.models import MODEL_FILES, load_model, sha256_file
from malwaresnipper.engine.training import train as train_mod
from malwaresnipper.engine.training.corpus import load_corpus
from malwaresnipper.engine.training.split import grouped_split, overlapping_groups
from malwaresnipper.engine.training.synthetic import write_all


def test_training_twice_gives_identical_model_files(tmp_path: Path) -> None:
    """Same data, same bytes, whether the fits run in one process or in two workers."""
    data = write_all(tmp_path / "data", n=40)
    m1 = train_mod.train(data, tmp_path / "a", quiet=True)
    train_mod.train(data, tmp_path / "b", quiet=True, jobs=2)
    assert set(m1["models"]) == {"js", "url", "html"}
    for kind, name in MODEL_FILES.items():
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        assert sha256_file(a) == sha256_file(b) == m1["models"][kind]["sha256"]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    # The manifest records the data files it was trained on and the cross-validated metrics.
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [d["file"] for d in manifest["data"]] == [p.name for p in data]
    assert manifest["data"][0]["counts"]["records"] == 80
    assert manifest["cross_validation"]["folds"] == 5
    js = manifest["models"]["js"]
    assert js["cv_metrics"]["roc_auc"] is not None
    assert len(js["cv_metrics"]["folds"]["per_fold"]) == 5
    assert js["cv_metrics"]["n"] == 80  # every real row scored out of fold, added rows never
    # And what was written loads back through the manifest check and separates the classes.
    bundle = load_model(tmp_path / "a", "js")
    assert bundle.calibration == pytest.approx(js["calibration"], abs=1e-6)
    corpus = load_corpus(data[0])
    bad = next(s for s in corpus.samples if s.y == 1)
    good = next(s for s in corpus.samples if s.y == 0)
    p_bad, p_good = bundle.score_raw([bad.text, good.text])
    assert p_bad > 0.5 > p_good


def test_split_keeps_groups_on_one_side(tmp_path: Path) -> None:
    corpus = load_corpus(write_all(tmp_path, n=60)[0])
    train, dev = grouped_split(corpus.samples, lambda s: s.group)
    assert train and dev
    assert overlapping_groups(train, dev, lambda s: s.group) == set()
    # Deterministic: the same rows land on the same side every time.
    train2, dev2 = grouped_split(corpus.samples, lambda s: s.group)
    assert [s.id for s in dev] == [s.id for s in dev2]


def test_markup_rows_of_js_corpus_are_reduced_to_their_scripts() -> None:
    from malwaresnipper.engine.training.corpus import Sample

    wrapped = Sample(id="js-1", kind="js", label="malicious", category="exploit_kit",
                     text="<html><body><p>x</p><script>var a=1;eval(a)</script></body></html>",
                     group="g", format="html")
    empty = Sample(id="js-2", kind="js", label="malicious", category="exploit_kit",
                   text="<html><body>no scripts</body></html>", group="g", format="html")
    prepared = train_mod.prepare("js", [wrapped, empty])
    assert prepared.texts == ["var a=1;eval(a)"]
    assert prepared.dropped == 1


def test_interrupted_write_leaves_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "m.joblib"
    target.write_bytes(b"previous")

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_mod.write_atomic(target, boom)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.joblib"]


def test_train_command_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from malwaresnipper.cli.main import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_augmented_rows_keep_their_sites_group() -> None:
    """Sign-in URLs are made from bare top-site domains only, marked as added (trained on, never
    measured) and in the site's own group, so they never train a fold that holds the site."""
    from malwaresnipper.engine.training.corpus import Sample

    groups = [f"site{i}.example" for i in range(40)]
    rows = [Sample(id=f"u{i}", kind="url", label="benign", category="benign", text=f"https://{g}/",
                   group=g, meta={"source": "npm:top-sites"}) for i, g in enumerate(groups)]
    rows.append(Sample(id="deep", kind="url", label="benign", category="benign",
                       text="https://deep.example/a/b", group="deep.example", meta={"source": "npm:top-sites"}))
    prepared = train_mod.prepare("url", rows)
    added = prepared.samples[len(rows):]
    assert len(added) == train_mod.LOGIN_PATHS_PER_SITE * len(groups)
    assert all(s.label == "benign" for s in added)
    assert all(s.group == s.text.split("/")[2] for s in added)
    assert not any(s.text.startswith("https://deep.example") for s in added)  # bare domains only
    assert prepared.augmented == [False] * len(rows) + [True] * len(added)


def test_benign_page_scripts_join_the_js_training_side() -> None:
    from malwaresnipper.engine.training.corpus import Sample

    pages = [Sample(id=f"p{i}", kind="html", label=label, category="article_page", group=f"g{i}",
                    text=f"<html><script>var config{i} = {{ name: 'page', items: [1, 2, 3] }};</script>"
                         f"<?php echo $x; ?><script>x</script></html>")
             for i in range(30) for label in ("benign", "phishing")]
    prepared = train_mod.prepare("js", [])
    train_mod.add_benign_page_scripts(prepared, pages)
    assert len(prepared.samples) == 30  # one script per benign page: the short "x" is skipped
    assert all(s.label == "benign" and "<?php" not in s.text for s in prepared.samples)
    assert [s.group for s in prepared.samples] == [f"g{i}" for i in range(30)]
    assert prepared.augmented == [True] * 30


def test_source_format_weights_make_the_format_say_nothing_about_the_label() -> None:
    import numpy as np

    # Phishing 6 PHP + 2 rendered, benign 1 template + 7 rendered.
    formats = ["php_source"] * 6 + ["html"] * 2 + ["template_source"] + ["html"] * 7
    y = np.array([1] * 8 + [0] * 8)
    w = train_mod.source_format_weights(formats, y)
    source = np.array([f in train_mod.SOURCE_FORMATS for f in formats])
    for label in (0, 1):
        rows = y == label
        weighted_share = w[rows][source[rows]].sum() / w[rows].sum()
        assert weighted_share == pytest.approx(7 / 16)  # the training rows' share of source rows
    assert w.mean() == pytest.approx(1.0)
    assert w[1] < 1 < w[8]  # a phishing PHP row counts less, a benign source row more


def test_benign_feed_addresses_are_measured_but_never_learnt_from() -> None:
    """62 % of the v2 benign URLs are RSS/Atom feeds of small sites: learning from them taught the
    URL model "feed path => benign". They stay in the measurements and out of the fits and of
    the operating points."""
    import numpy as np

    from malwaresnipper.engine.training.corpus import Sample
    from malwaresnipper.engine.training.split import FoldPlan

    def url(i: int, text: str, label: str) -> Sample:
        return Sample(id=f"u{i}", kind="url", label=label, category=label, text=text, group=f"g{i}")

    rows = [url(0, "https://blog.example.org/feed.xml", "benign"), url(1, "https://blog2.example.org/rss", "benign"),
            url(2, "https://blog3.example.org/posts/cats", "benign"), url(3, "http://evil.example.net/rss", "phishing")]
    prepared = train_mod.prepare("url", rows)
    m = train_mod.build_matrix(prepared, FoldPlan([], folds=2), quiet=True)
    assert m.trainable.tolist() == [False, False, True, True]
    assert m.measured.tolist() == [True] * 4
    for fold in (0, 1):
        assert not set(m.rows(fold=fold).tolist()) & {0, 1}
        assert set(m.rows(fold=fold, held_out=True).tolist()) == set(np.flatnonzero(m.folds == fold).tolist())
