"""Known code on real code from ../shared/data: real libraries, real skimmers injected into them at
test time, in memory (samples are never written anywhere, never run)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from helpers.corpus import DATA_DIR, needs_corpus
from helpers.known_code import EXFIL
from malwaresnipper.cli.main import main
from malwaresnipper.engine import Capture, EngineConfig, RiskEngine, ThreatLevel
from malwaresnipper.engine.config import KnownCode as KnownCodeSettings
from malwaresnipper.engine.known_code import BUNDLED_DATABASE, KnownCode, Status
from malwaresnipper.engine.known_code.canonical import statement_offsets
from malwaresnipper.engine.known_code.verify import verify

pytestmark = [needs_corpus, pytest.mark.corpus]

CORPUS = ("js_corpus.train.jsonl.gz", "js_corpus_v2.train.jsonl.gz")
JQUERY = ("npm:jquery.easing@1.4.1", "bower_components/jquery/dist/jquery.min.js")  # jQuery v2.1.4
#: Real skimmers (gwillem/magento-malware-scanner) that the javascript layer flags on their own.
SKIMMERS = ("js-525a21feb0307716", "js-9c829a4f82d34b22")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    out: list[dict] = []
    for name in CORPUS:
        with gzip.open(DATA_DIR / name, "rt", encoding="utf-8") as handle:
            out.extend(json.loads(line) for line in handle)
    return out


@pytest.fixture(scope="module")
def known() -> KnownCode:
    return KnownCode.load([])


def library(rows: list[dict], source: str, path: str) -> str:
    return next(r["content"] for r in rows if r["source"] == source and r["source_path"] == path)


def by_id(rows: list[dict], row_id: str) -> str:
    return next(r["content"] for r in rows if r["id"] == row_id)


def insertion_point(text: str, code: str) -> int:
    """The statement start nearest the middle where inserted code still parses (as an attacker
    would insert it: a script with a syntax error runs nothing)."""
    starts = sorted(statement_offsets(text), key=lambda s: abs(s - len(text) // 2))
    return next(s for s in starts[:40] if verify(text[:s] + code + text[s:]).ok)


def scan(engine: RiskEngine, text: str):
    return engine.scan(Capture.build("https://shop.example/checkout/", scripts=[
        {"url": "https://shop.example/js/jquery.min.js", "text": text, "inline": False}]))


def test_the_bundled_database_is_what_the_build_command_makes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "known_code.bin"
    assert main(["known-code", "build", "--quiet", "--out", str(out), "--corpus",
                 *(str(DATA_DIR / name) for name in CORPUS)]) == 0
    assert out.read_bytes() == BUNDLED_DATABASE.read_bytes(), (
        "engine/data/known_code.bin is stale: rebuild it with the command in docs/configuration.md")
    assert BUNDLED_DATABASE.stat().st_size < 4_000_000


def test_every_library_file_of_the_database_is_recognised_unmodified(rows: list[dict], known: KnownCode) -> None:
    db = known.databases[0]
    entered = {(f.source, f.path) for f in db.files}
    misses = [(r["source"], r["source_path"]) for r in rows
              if (r["source"], r["source_path"]) in entered and known.match(r["content"]).status is not Status.UNMODIFIED]
    assert len(entered) > 3000 and not misses


def test_a_real_library_is_on_the_fast_path_whatever_its_banner_and_whitespace(rows: list[dict], known: KnownCode) -> None:
    jquery = library(rows, *JQUERY)
    served = "/*! jQuery v2.1.4 | patched by shop | see LICENSE */\r\n" + jquery.split("\n", 1)[1].replace("\n", "\r\n")
    served += "\r\n//# sourceMappingURL=jquery.min.map\r\n"
    for text in (jquery, served):
        match = known.match(text)
        assert match.status is Status.UNMODIFIED
        assert match.description == "jQuery v2.1.4 (unmodified)"
    engine = RiskEngine(EngineConfig(), layers=["javascript", "ml"])
    verdict = scan(engine, served)
    assert [i.title for i in verdict.indicators] == ["Known library: jQuery v2.1.4 (unmodified)"]
    assert verdict.threat_level is ThreatLevel.BENIGN
    ml = next(r for r in verdict.layers if r.layer == "ml")
    assert "js_probability" not in ml.details


@pytest.mark.parametrize("skimmer_id", SKIMMERS)
@pytest.mark.parametrize("place", ["appended", "prepended", "inserted"])
def test_a_real_skimmer_in_a_real_library_is_isolated_and_caught(rows: list[dict], known: KnownCode,
                                                                skimmer_id: str, place: str) -> None:
    jquery = library(rows, *JQUERY)
    skimmer = by_id(rows, skimmer_id)
    if place == "appended":
        text, start = jquery + "\n" + skimmer, len(jquery) + 1
    elif place == "prepended":
        text, start = skimmer + "\n" + jquery, 0
    else:
        start = insertion_point(jquery, skimmer)
        text = jquery[:start] + skimmer + jquery[start:]
    match = known.match(text)
    assert match.status is Status.FOREIGN, match.reason
    assert match.placement == place
    assert match.description.startswith("jQuery v2.1.4 with ")
    code_end = start + len(skimmer.rstrip())
    assert any(s <= start and code_end <= e for s, e in match.foreign), (start, code_end, match.foreign)
    assert match.foreign_chars < len(skimmer) + 8000  # the skimmer and a little library around it

    # Scanned in full, the skimmer drowns in 84 KB of jQuery; scanned alone, it is caught.
    isolated = scan(RiskEngine(EngineConfig(), layers=["javascript", "ml"]), text)
    diluted = scan(RiskEngine(EngineConfig(known_code=KnownCodeSettings(enabled=False)), layers=["javascript", "ml"]), text)
    ids = {i.id for i in isolated.indicators}
    assert {"javascript.skimmer", "javascript.known_library_foreign_code"} <= ids
    assert isolated.threat_level is ThreatLevel.MALICIOUS
    assert "javascript.skimmer" not in {i.id for i in diluted.indicators}
    assert diluted.risk_score < isolated.risk_score


LIBRARIES = [
    JQUERY,
    ("npm:jquery.easing@1.4.1", "bower_components/jquery/dist/jquery.js"),
    ("npm:slick-carousel@1.8.1", "slick/slick.min.js"),
    ("npm:dayjs@1.11.23", "dayjs.min.js"),
    ("npm:chart.js@4.6.1", "dist/chart.umd.js"),
    ("github:bitwiseshiftleft/sjcl", "sjcl.js"),
]


@pytest.mark.parametrize("source, path", LIBRARIES)
def test_one_inserted_statement_is_never_unmodified(rows: list[dict], known: KnownCode, source: str, path: str) -> None:
    text = library(rows, source, path)
    assert known.match(text).status is Status.UNMODIFIED
    starts = statement_offsets(text)
    # Statement starts are in code; at the end, a line break first: text appended to a last line
    # "//# sourceMappingURL=..." is that comment's text, for the browser too.
    text += "\n"
    for fraction in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        at = starts[min(len(starts) - 1, int(fraction * len(starts)))] if fraction < 1 else len(text)
        changed = text[:at] + EXFIL + text[at:]
        match = known.match(changed)
        assert match.status is not Status.UNMODIFIED, (path, at)
        if match.status is Status.FOREIGN:
            assert any(s <= at and at + len(EXFIL) <= e for s, e in match.foreign)


def test_no_malicious_row_is_unmodified_library_code(rows: list[dict], known: KnownCode) -> None:
    bad = [r for r in rows if r["label"] == "malicious"]
    statuses = [known.match(r["content"]).status for r in bad]
    assert len(bad) > 2700
    assert statuses.count(Status.UNMODIFIED) == 0
