"""The wheel holds the package and its data, and nothing of the checkout that must not ship.

Built from a copy of the checkout (with a decoy CA key in ``certs/``) the way an installer builds it
(``pip wheel``; the build requirements come from the configured package index), then installed into
a fresh virtual environment and run from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[1]
SKIP_COPY = shutil.ignore_patterns(".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", ".venv*",
                                   "build", "dist", "*.egg-info", "__pycache__", ".benchmarks", "test-artifacts")


def _env() -> dict[str, str]:
    """Without PYTHONPATH, so nothing but the environment's own site-packages can answer an import."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == code, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP_COPY)
    (src / "certs" / "mitmproxy-ca.pem").write_text("-----BEGIN PRIVATE KEY-----\ndecoy\n")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    (built,) = (tmp / "dist").glob("malwaresnipper-*.whl")
    return built


def test_wheel_holds_the_package_and_its_data_and_no_checkout_only_folders(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    files = {n.removeprefix("malwaresnipper/") for n in names if n.startswith("malwaresnipper/")}
    for needed in ("__init__.py", "settings.py", "addon/gateway.py", "addon/mitmdump_entry.py", "cli/main.py",
                   "engine/data/findings.toml", "engine/data/default_rules.toml", "engine/data/known_code.bin",
                   "models/manifest.json", "dashboard/index.html", "extension/manifest.json", "server/openapi.json"):
        assert needed in files, f"{needed} is missing from the wheel"
    assert {f for f in files if f.startswith("models/") and f.endswith(".joblib")} == \
        {f"models/{p.name}" for p in (REPO / "models").glob("*.joblib")}
    assert {f for f in files if f.startswith("dashboard/")} >= \
        {str(p.relative_to(REPO)) for p in (REPO / "dashboard").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {f for f in files if f.startswith("extension/")} >= \
        {str(p.relative_to(REPO)) for p in (REPO / "extension").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    top = {f.split("/", 1)[0] for f in files if "/" in f}
    assert not top & {"tests", "benchmarks", "scripts", "certs", "docs"}, top
    assert not [f for f in files if f.endswith(".pem") or "__pycache__" in f or f == "setup.py"]
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "scripts/", "certs/"))]


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    python, cli = venv / "bin" / "python", venv / "bin" / "malwaresnipper"
    _run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert "run the gateway" in _run([str(cli), "--help"], cwd=outside).stdout
    probe = ("import malwaresnipper, malwaresnipper.engine, malwaresnipper.addon.gateway\n"
             "print(malwaresnipper.__file__)\n"
             "import pathlib; here = pathlib.Path(malwaresnipper.__file__).parent\n"
             "print(sorted(p.name for p in here.iterdir() if p.is_dir() and p.name != '__pycache__'))\n")
    out = _run([str(python), "-c", probe], cwd=outside).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(venv.resolve()), out  # the wheel's copy, not a checkout
    assert out[1] == str(["addon", "cli", "dashboard", "engine", "extension", "models", "server"]), out
    # The engine runs from the wheel's data: rules, findings catalogue and all three models.
    page = outside / "dropper.html"
    page.write_text('<html><body><script>var sh = new ActiveXObject("WScript.Shell"); var s = new ActiveXObject('
                    '"ADODB.Stream"); s.SaveToFile("C:\\\\Users\\\\Public\\\\u.exe", 2); sh.Run("u.exe");</script></body></html>')
    verdict = json.loads(_run([str(cli), "scan", "--json", str(page)], cwd=outside, code=1).stdout)
    assert verdict["threat_level"] == "MALICIOUS"  # (exit code 1 says so too)
    assert set(verdict["model_versions"]) == {"js_model", "url_model", "html_model"}
    home = tmp_path / "home"
    ca = _run([str(cli), "ca"], cwd=outside, env=dict(_env(), MALWARESNIPPER_HOME=str(home))).stdout
    assert f"CA certificate: {home / 'certs' / 'mitmproxy-ca-cert.pem'}" in ca
