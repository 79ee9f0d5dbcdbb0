"""`malwaresnipper extension pack`: the zip a user loads or publishes, versioned from the project."""

from __future__ import annotations

import json
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import pytest

from malwaresnipper import __version__
from malwaresnipper.cli.extension import EXTENSION_DIR, PackError, manifest_version, pack, png_bytes
from malwaresnipper.cli.main import main

CHROMIUM = Path("/usr/bin/chromium")


def run_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code = main(["extension", "pack", "--out", str(tmp_path / "dist")])
    out, err = capsys.readouterr()
    assert code == 0, err
    target = Path(out.strip())
    assert target.parent == tmp_path / "dist" and target.is_file()
    return target


def test_pack_writes_the_project_version_into_the_zipped_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = run_pack(tmp_path, capsys)
    with zipfile.ZipFile(target) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    chrome_version, version_name = manifest_version(__version__)
    assert manifest["version"] == chrome_version
    assert manifest.get("version_name", manifest["version"]) == version_name
    assert target.name == f"malwaresnipper-extension-{version_name}.zip"
    source = json.loads((EXTENSION_DIR / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k not in ("version", "version_name")} == {
        k: v for k, v in source.items() if k not in ("version", "version_name")
    }


def test_pack_ships_every_file_the_extension_needs_and_nothing_else(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = run_pack(tmp_path, capsys)
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        for name in names - {"manifest.json"}:
            assert archive.read(name) == (EXTENSION_DIR / name).read_bytes(), name
    referenced = {manifest["background"]["service_worker"], manifest["action"]["default_popup"], manifest["options_ui"]["page"]}
    referenced |= set(manifest["icons"].values()) | set(manifest["action"]["default_icon"].values())
    for script in manifest["content_scripts"]:
        referenced |= set(script["js"])
    assert referenced <= names
    # Module imports and page scripts resolve inside the zip.
    for name in names:
        if name.endswith((".js", ".html")):
            text = (EXTENSION_DIR / name).read_text()
            for ref in re.findall(r'(?:from\s+"|src="|href=")(\.{0,2}/?[\w./-]+\.(?:js|css|png))"', text):
                resolved = (Path(name).parent / ref).as_posix().replace("./", "")
                assert str(Path(resolved)) in names, f"{name} refers to {ref}, missing from the zip"
    # Chrome refuses files starting with "_"; sources, docs and caches stay out.
    assert not [n for n in names if any(part.startswith(("_", ".")) for part in n.split("/"))]
    assert not [n for n in names if n.endswith((".py", ".pyc", ".md", ".zip"))]


def test_pack_is_reproducible(tmp_path: Path) -> None:
    first = pack(tmp_path / "a").read_bytes()
    second = pack(tmp_path / "b").read_bytes()
    assert first == second


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ("0.1.0", ("0.1.0", "0.1.0")),
        ("1.2", ("1.2", "1.2")),
        ("0.2.0.dev3+gabc123", ("0.2.0", "0.2.0.dev3+gabc123")),
        ("0.0.0+unknown", ("0.0.0", "0.0.0+unknown")),
        ("2.0.0rc1", ("2.0.0", "2.0.0rc1")),
        ("1.2.3.4.5", ("1.2.3.4", "1.2.3.4.5")),
        ("2026.70000.1", ("2026.65535.1", "2026.70000.1")),
    ],
)
def test_manifest_version_follows_chrome_rules(project: str, expected: tuple[str, str]) -> None:
    assert manifest_version(project) == expected


def test_pack_with_a_prerelease_keeps_it_in_version_name(tmp_path: Path) -> None:
    target = pack(tmp_path, version="0.3.0.dev1+g1234")
    manifest = json.loads(zipfile.ZipFile(target).read("manifest.json"))
    assert (manifest["version"], manifest["version_name"]) == ("0.3.0", "0.3.0.dev1+g1234")


def test_pack_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="does not start with a number"):
        manifest_version("banana")
    with pytest.raises(PackError, match="manifest.json not found"):
        pack(tmp_path / "out", source=tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(EXTENSION_DIR, broken)
    (broken / "overlay.js").unlink()
    with pytest.raises(PackError, match="overlay.js"):
        pack(tmp_path / "out", source=broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(PackError, match="not valid JSON"):
        pack(tmp_path / "out", source=broken)


def test_pack_command_reports_errors_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["extension", "pack", "--source", str(tmp_path), "--out", str(tmp_path / "dist")])
    assert code == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists()


def _decode_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, dict[bytes, bytes]()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 6)
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_icons_are_valid_png_of_the_declared_sizes() -> None:
    manifest = json.loads((EXTENSION_DIR / "manifest.json").read_text())
    for size, name in manifest["icons"].items():
        width, height, raw = _decode_png((EXTENSION_DIR / name).read_bytes())
        assert (width, height) == (int(size), int(size)), name
        assert len(raw) == height * (1 + 4 * width)
        alphas = [raw[r * (1 + 4 * width) + 1 + 4 * c + 3] for r in range(height) for c in range(width)]
        assert 0 in alphas and 255 in alphas, f"{name}: expected a shape on a transparent background"


def test_png_writer_round_trips() -> None:
    rows = [bytes([10, 20, 30, 255, 0, 0, 0, 0]), bytes([1, 2, 3, 4, 5, 6, 7, 8])]
    width, height, raw = _decode_png(png_bytes(2, 2, rows))
    assert (width, height) == (2, 2)
    assert raw == b"\x00" + rows[0] + b"\x00" + rows[1]


def test_every_permission_is_justified_in_the_readme() -> None:
    manifest = json.loads((EXTENSION_DIR / "manifest.json").read_text())
    readme = (EXTENSION_DIR / "README.md").read_text()
    table = readme.split("## Permissions, each justified", 1)[1].split("\n## ", 1)[0]
    justified = set(re.findall(r"`([^`]+)`", "\n".join(line.split("|")[1] for line in table.splitlines() if line.startswith("| `"))))
    requested = set(manifest["permissions"]) | set(manifest["host_permissions"]) | set(manifest["optional_host_permissions"])
    assert requested <= justified, f"not justified in extension/README.md: {requested - justified}"
    assert "tabs" not in manifest["permissions"] and "<all_urls>" not in requested


@pytest.mark.integration
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_the_packed_zip_loads_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    target = run_pack(tmp_path, capsys)
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(target).extractall(unpacked)
    profile = tempfile.mkdtemp(prefix="ms-ext-pack-")
    try:
        with sync_api.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", f"--disable-extensions-except={unpacked}", f"--load-extension={unpacked}",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker")
            loaded = worker.evaluate("() => chrome.runtime.getManifest()")
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert loaded["version"] == manifest_version(__version__)[0]
    assert loaded["name"] == "MalwareSnipper"
