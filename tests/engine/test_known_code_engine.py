"""Known code in the engine: an unmodified library skips the heavy analysis, foreign code in one
is analysed alone, and the settings of ``[engine.known_code]`` work."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.known_code import acme_database, acme_library
from malwaresnipper.engine import Capture, CaptureLimits, EngineConfig, RiskEngine
from malwaresnipper.engine.config import KnownCode, load_engine_config
from malwaresnipper.engine.known_code import KnownCodeError

LIB = acme_library()
#: Dean Edwards' packer: the javascript layer's ``packer`` finding (eval of a decoder).
PACKED = ("eval(function(p,a,c,k,e,d){e=function(c){return c};if(!''.replace(/^/,String)){while(c--)"
          "{d[c]=k[c]||c}k=[function(e){return d[e]}];e=function(){return'\\\\w+'};c=1};while(c--)"
          "{if(k[c]){p=p.replace(new RegExp('\\\\b'+e(c)+'\\\\b','g'),k[c])}}return p}('0 1=2',3,3,'var|x|5'.split('|'),0,{}));\n")


@pytest.fixture(scope="module")
def acme_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("known") / "acme.known"
    acme_database().save(path)
    return path


def engine(db: Path | None, *, enabled: bool = True, layers: tuple[str, ...] = ("javascript", "ml")) -> RiskEngine:
    settings = KnownCode(enabled=enabled, use_bundled=False, files=[str(db)] if db else [])
    return RiskEngine(EngineConfig(known_code=settings), layers=list(layers))


def scan(eng: RiskEngine, text: str):
    capture = Capture.build("https://shop.example/checkout", scripts=[
        {"url": "https://shop.example/js/acme.js", "text": text, "inline": False}])
    return eng.scan(capture)


def layer(verdict, name: str):
    return next(r for r in verdict.layers if r.layer == name)


def test_an_unmodified_known_library_is_named_and_skips_the_heavy_analysis(acme_db: Path) -> None:
    # Scanned in full, the library's run-time decoder (new Function(atob(s))) is a finding ...
    full = scan(engine(acme_db, enabled=False), LIB)
    assert "javascript.eval_decoded" in {i.id for i in full.indicators}
    assert "js_probability" in layer(full, "ml").details
    # ... known, it is named and neither the heuristics nor the JS model read it.
    verdict = scan(engine(acme_db), "/*! Acme Widgets v1.4.2 | rebuilt */\n" + LIB.split("\n", 1)[1])
    ids = {i.id for i in verdict.indicators}
    assert "javascript.eval_decoded" not in ids
    known = next(i for i in verdict.indicators if i.id == "javascript.known_library")
    assert known.title == "Known library: Acme Widgets v1.4.2 (unmodified)"
    assert known.severity.name == "INFO" and known.evidence[0].location.endswith("acme.js")
    assert layer(verdict, "javascript").score == 0.0
    assert "js_probability" not in layer(verdict, "ml").details
    assert layer(verdict, "javascript").details["known_code"][0]["status"] == "unmodified"


def test_foreign_code_in_a_known_library_is_analysed_alone(acme_db: Path) -> None:
    text = LIB + PACKED
    verdict = scan(engine(acme_db), text)
    ids = {i.id for i in verdict.indicators}
    assert "javascript.packer" in ids  # found in the foreign part
    assert "javascript.eval_decoded" not in ids  # the library's own code was not analysed
    foreign = next(i for i in verdict.indicators if i.id == "javascript.known_library_foreign_code")
    assert "Acme Widgets v1.4.2 with" in foreign.title and "foreign code appended" in foreign.title
    packer = next(i for i in verdict.indicators if i.id == "javascript.packer")
    assert "foreign code at characters" in packer.evidence[0].location
    assert "js_probability" in layer(verdict, "ml").details  # the JS model scores the foreign part
    details = layer(verdict, "javascript").details["known_code"][0]
    assert details["status"] == "foreign" and 0 < details["foreign_chars"] < 3000


def test_without_known_code_every_script_is_analysed_in_full(acme_db: Path) -> None:
    verdict = scan(engine(acme_db, enabled=False), LIB + PACKED)
    ids = {i.id for i in verdict.indicators}
    assert "javascript.packer" in ids
    assert "foreign code" not in next(i for i in verdict.indicators if i.id == "javascript.packer").evidence[0].location
    assert not {"javascript.known_library", "javascript.known_library_foreign_code"} & ids


def test_a_truncated_known_library_is_analysed(acme_db: Path) -> None:
    # too long even once whitespace is set aside: the head and the tail are kept, the middle cut
    cut = Capture.build("https://shop.example/", scripts=[
        {"url": "https://shop.example/js/acme.js", "text": LIB + "\nsteal();\n", "inline": False}],
        limits=CaptureLimits(max_script_chars=len(LIB) // 2))
    assert cut.scripts[0].truncated
    verdict = engine(acme_db).scan(cut)
    ids = {i.id for i in verdict.indicators}
    assert "javascript.known_library" not in ids  # a cut copy is never "unmodified"
    assert "engine.truncated" in ids and not verdict.complete


def test_user_databases_are_read_relative_to_the_config_file(tmp_path: Path, acme_db: Path) -> None:
    (tmp_path / "acme.known").write_bytes(acme_db.read_bytes())
    config_file = tmp_path / "malwaresnipper.toml"
    config_file.write_text('[engine.known_code]\nuse_bundled = false\nfiles = ["acme.known"]\n')
    config = load_engine_config(config_file, section="engine")
    eng = RiskEngine(config, layers=["javascript"])
    assert eng.known_code is not None and eng.known_code.files == 1
    assert "javascript.known_library" in {i.id for i in scan(eng, LIB).indicators}


def test_a_missing_user_database_stops_the_engine_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(KnownCodeError, match="nope.known"):
        engine(tmp_path / "nope.known")


def test_the_bundled_database_is_used_by_default() -> None:
    eng = RiskEngine(EngineConfig(), layers=["javascript"])
    assert eng.known_code is not None and eng.known_code.files > 1000
    assert RiskEngine(EngineConfig(known_code=KnownCode(enabled=False)), layers=["javascript"]).known_code is None
