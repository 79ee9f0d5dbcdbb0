"""One plain voice: every classification has a sentence, the reasons rule drops known-library
traits and context, and the extension's copy of the sentences is current."""

from __future__ import annotations

from typing import Any

import json
import re
import subprocess
import sys
from pathlib import Path

from malwaresnipper.cli.extension import EXPLAIN_JS
from malwaresnipper.engine.explain import explain_data, extension_module, headline, user_reasons
from malwaresnipper.engine.findings import catalogue
from malwaresnipper.engine.results import Evidence, Indicator
from malwaresnipper.engine.rules import load_rule_files

REPO = Path(__file__).resolve().parents[2]


def test_every_classification_and_level_has_a_plain_sentence() -> None:
    data = explain_data()
    named = {spec.classification for spec in catalogue() if spec.classification}
    named |= {rule.classification for rule in load_rule_files([]) if rule.classification}
    missing = named - data["headlines"].keys()
    assert not missing, f"no sentence for {sorted(missing)} in engine/data/explain.json"
    assert set(data["levels"]) == {"MALICIOUS", "SUSPICIOUS", "BENIGN", "UNKNOWN"}
    for sentence in [*data["headlines"].values(), *data["levels"].values()]:
        assert sentence[0].isupper() and sentence.endswith("."), sentence
        assert not re.search(r"\blooks (phishing|skimmer|malware|dropper|cryptominer|malicious)\b", sentence)
        assert not re.match(r"(critical|high|medium|low|info)\s*:", sentence, re.I)


def test_headline_by_classification_else_by_level() -> None:
    assert headline("phishing") == ("This page looks like a phishing page: it may try to steal your passwords or "
                                    "card details.")
    assert headline("unknown") == explain_data()["levels"]["MALICIOUS"]
    assert headline(None, "SUSPICIOUS") == explain_data()["levels"]["SUSPICIOUS"]
    assert headline("phishing", "BENIGN") == "No threat found."  # never a threat sentence for BENIGN


def _indicator(finding_id: str, **values: Any) -> Indicator:
    return catalogue().finding(finding_id, Evidence("x", "script https://shop.example/jquery.js"),
                               **values).indicator()


def test_jquerys_globaleval_is_no_reason_under_no_threat_found_nor_beside_a_skimmer() -> None:
    """javascript.eval_decoded is what old jQuery's globalEval gives (measured on the corpus's
    jQuery copies that are not in the known-code database): a low trait."""
    global_eval = _indicator("javascript.eval_decoded")
    library = _indicator("javascript.known_library", library="jQuery v2.1.4 (unmodified)")
    assert user_reasons([global_eval, library], "BENIGN") == []
    skimmer = _indicator("javascript.skimmer_exfiltration", summary="Card fields are sent to pay-check.example")
    reasons = user_reasons([skimmer, global_eval, library], "MALICIOUS")
    assert [r.id for r in reasons] == ["javascript.skimmer_exfiltration"]
    # A verdict carried by weak findings alone still names them (never an empty "Why").
    assert [r.id for r in user_reasons([global_eval, library], "SUSPICIOUS")] == ["javascript.eval_decoded"]
    # The same rule over the API's dicts (what the extension receives)
    assert user_reasons([global_eval.to_dict(), library.to_dict()], "BENIGN") == []


def test_the_extensions_copy_is_current() -> None:
    assert EXPLAIN_JS.read_text(encoding="utf-8") == extension_module(), \
        "run `malwaresnipper extension explain` after editing engine/data/explain.json"
    done = subprocess.run([sys.executable, "-m", "malwaresnipper.cli.main", "extension", "explain", "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_stale_copy(tmp_path: Path) -> None:
    stale = tmp_path / "explain_data.js"
    stale.write_text(extension_module().replace("phishing page", "phish page"), encoding="utf-8")
    args = [sys.executable, "-m", "malwaresnipper.cli.main", "extension", "explain", "--target", str(stale)]
    done = subprocess.run([*args, "--check"], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "not current" in done.stderr
    assert subprocess.run(args, capture_output=True, text=True, check=False).returncode == 0
    assert stale.read_text(encoding="utf-8") == extension_module()


def test_the_extension_runs_the_same_reasons_rule(tmp_path: Path) -> None:
    """extension/lib/explain.js's userReasons, run by node over the same cases."""
    global_eval = _indicator("javascript.eval_decoded").to_dict()
    library = _indicator("javascript.known_library", library="jQuery (unmodified)").to_dict()
    skimmer = _indicator("javascript.skimmer_exfiltration", summary="Card fields are sent to pay-check.example").to_dict()
    cases = [([global_eval, library], "BENIGN"), ([skimmer, global_eval, library], "MALICIOUS"),
             ([global_eval, library], "SUSPICIOUS")]
    script = tmp_path / "run.mjs"
    script.write_text(
        f'import {{ userReasons, explainVerdict }} from "{(REPO / "extension/lib/explain.js").as_uri()}";\n'
        f"const cases = {json.dumps(cases)};\n"
        "console.log(JSON.stringify({ reasons: cases.map(([ind, level]) => userReasons(ind, level).map((i) => i.id)),"
        " headline: explainVerdict({ classification: 'phishing', threat_level: 'MALICIOUS', indicators: [] }).headline }));\n",
        encoding="utf-8")
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    expected = [[i["id"] for i in user_reasons(ind, level)] for ind, level in cases]
    assert out["reasons"] == expected == [[], ["javascript.skimmer_exfiltration"], ["javascript.eval_decoded"]]
    assert out["headline"] == headline("phishing")
