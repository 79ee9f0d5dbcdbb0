"""``malwaresnipper extension pack|icons|explain``: the browser extension as a user loads or publishes it.

``pack`` zips ``extension/`` with the project's version written into the zipped manifest, so the
published extension always says which gateway release it was built with. ``icons`` redraws the
toolbar icons (plain PNG written with zlib and struct: no imaging dependency). ``explain`` writes
``lib/explain_data.js`` from ``engine/data/explain.json``, so the extension says what the block page
says (``--check`` fails when the file is not current).
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import zipfile
import zlib
from pathlib import Path

from .. import __version__

#: The unpacked extension (the repo's ``extension/`` folder, installed as package data).
EXTENSION_DIR = Path(__file__).resolve().parent.parent / "extension"
ICON_SIZES = (16, 32, 48, 128)
#: Fixed timestamp so the same sources always give the same zip bytes.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class PackError(Exception):
    """The extension folder cannot be packed; the message says what to fix."""


def manifest_version(project_version: str) -> tuple[str, str]:
    """Chrome's ``version`` (1-4 dot-separated integers) and ``version_name`` for a PEP 440 version.

    ``0.1.0`` -> ("0.1.0", "0.1.0"); ``0.2.0.dev3+gabc`` -> ("0.2.0", "0.2.0.dev3+gabc").
    """
    match = re.match(r"^\d+(?:\.\d+){0,3}", project_version)
    if not match:
        raise PackError(f"project version {project_version!r} does not start with a number")
    parts = [str(min(int(p), 65535)) for p in match.group(0).split(".")]
    return ".".join(parts), project_version


def _included(path: Path, root: Path) -> bool:
    """Ship the extension's own files only: no READMEs, Python, caches or hidden files."""
    rel = path.relative_to(root)
    if any(part.startswith((".", "_")) or part == "__pycache__" for part in rel.parts):
        return False
    return path.is_file() and path.suffix not in {".py", ".pyc", ".md", ".zip"}


def _referenced_files(manifest: dict) -> set[str]:
    files: set[str] = set(manifest.get("icons", {}).values())
    background = manifest.get("background", {})
    if "service_worker" in background:
        files.add(background["service_worker"])
    for script in manifest.get("content_scripts", []):
        files.update(script.get("js", []))
        files.update(script.get("css", []))
    action = manifest.get("action", {})
    if "default_popup" in action:
        files.add(action["default_popup"])
    files.update(action.get("default_icon", {}).values())
    if "page" in manifest.get("options_ui", {}):
        files.add(manifest["options_ui"]["page"])
    return files


def pack(out_dir: Path, source: Path = EXTENSION_DIR, version: str = __version__) -> Path:
    """Write ``malwaresnipper-extension-<version>.zip`` into ``out_dir`` and return its path."""
    manifest_path = source / "manifest.json"
    if not manifest_path.is_file():
        raise PackError(f"{manifest_path} not found: is the extension folder complete?")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PackError(f"{manifest_path} is not valid JSON: {exc}") from exc
    missing = sorted(f for f in _referenced_files(manifest) if not (source / f).is_file())
    if missing:
        raise PackError(f"the manifest names files that do not exist: {', '.join(missing)}")
    chrome_version, version_name = manifest_version(version)
    manifest["version"] = chrome_version
    if version_name != chrome_version:
        manifest["version_name"] = version_name
    else:
        manifest.pop("version_name", None)

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"malwaresnipper-extension-{version_name}.zip"
    files = sorted(p for p in source.rglob("*") if _included(p, source) and p != manifest_path)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)

        add("manifest.json", (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        for path in files:
            add(path.relative_to(source).as_posix(), path.read_bytes())
    return target


# ------------------------------------------------------------------------------------------ icons


def png_bytes(width: int, height: int, rgba_rows: list[bytes]) -> bytes:
    """Encode 8-bit RGBA rows as a PNG (filter 0 on every row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row for row in rgba_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def draw_icon(size: int) -> bytes:
    """A red disc with a white crosshair (a 'scope'), antialiased by 4x4 supersampling."""
    samples = 4
    red, white = (220, 38, 38), (255, 255, 255)
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(samples):
                for sx in range(samples):
                    # coordinates in [-1, 1]
                    u = ((x + (sx + 0.5) / samples) / size) * 2 - 1
                    v = ((y + (sy + 0.5) / samples) / size) * 2 - 1
                    r = (u * u + v * v) ** 0.5
                    if r > 0.96:
                        continue
                    ring = 0.52 <= r <= 0.68
                    cross = (abs(u) < 0.08 or abs(v) < 0.08) and r <= 0.82 and not r < 0.2
                    colour = white if ring or cross else red
                    acc[0] += colour[0]
                    acc[1] += colour[1]
                    acc[2] += colour[2]
                    acc[3] += 255
            n = samples * samples
            alpha = acc[3] / n
            if alpha:
                cover = acc[3] / 255
                row += bytes((round(acc[0] / cover), round(acc[1] / cover), round(acc[2] / cover), round(alpha)))
            else:
                row += b"\x00\x00\x00\x00"
        rows.append(bytes(row))
    return png_bytes(size, size, rows)


def write_icons(target: Path = EXTENSION_DIR / "icons") -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for size in ICON_SIZES:
        path = target / f"icon{size}.png"
        path.write_bytes(draw_icon(size))
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------- command


def _cmd_pack(args: argparse.Namespace) -> int:
    try:
        target = pack(Path(args.out), source=Path(args.source))
    except PackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(target)
    return 0


def _cmd_icons(args: argparse.Namespace) -> int:
    for path in write_icons():
        print(path)
    return 0


#: The extension's copy of engine/data/explain.json (generated).
EXPLAIN_JS = EXTENSION_DIR / "lib" / "explain_data.js"


def _cmd_explain(args: argparse.Namespace) -> int:
    from ..engine.explain import extension_module

    text = extension_module()
    target = Path(args.target)
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print(f"error: {target} is not current; run `malwaresnipper extension explain`", file=sys.stderr)
            return 1
        print(f"{target} is current")
        return 0
    target.write_text(text, encoding="utf-8")
    print(target)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("extension", help="build the Chrome extension for loading or publishing")
    sub = parser.add_subparsers(dest="extension_command", metavar="ACTION", required=True)
    pack_parser = sub.add_parser("pack", help="zip extension/ with the project's version in its manifest")
    pack_parser.add_argument("--out", default="dist", help="folder for the zip (default: ./dist)")
    pack_parser.add_argument("--source", default=str(EXTENSION_DIR), help="the unpacked extension (default: the bundled one)")
    pack_parser.set_defaults(func=_cmd_pack)
    icons_parser = sub.add_parser("icons", help="redraw the toolbar icons in extension/icons")
    icons_parser.set_defaults(func=_cmd_icons)
    explain_parser = sub.add_parser("explain", help="write extension/lib/explain_data.js from engine/data/explain.json")
    explain_parser.add_argument("--check", action="store_true", help="only check that the file is current (exit 1 if not)")
    explain_parser.add_argument("--target", default=str(EXPLAIN_JS), help="the file to write (default: the bundled extension's)")
    explain_parser.set_defaults(func=_cmd_explain)
