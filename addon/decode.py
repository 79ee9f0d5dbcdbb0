"""Turning a response body into text the engine can read, the same way on mitmproxy 11 and 12.

We undo ``Content-Encoding`` ourselves (gzip, deflate, br, zstd) with a cap on the decompressed
size, so a small compressed "bomb" cannot make the gateway allocate gigabytes, and we pick the
charset ourselves (declared header, byte-order mark, ``<meta charset>``, then UTF-8), so the text
the engine scans does not depend on the mitmproxy version's own guessing.

Nothing here touches the flow: the caller passes bytes and header values and gets text back.
"""

from __future__ import annotations

import codecs
import io
import re
import zlib
from dataclasses import dataclass

try:  # brotli is a dependency, but a missing codec must only disable that encoding
    import brotli
except ImportError:  # pragma: no cover
    brotli = None  # type: ignore[assignment]
try:
    import zstandard
except ImportError:  # pragma: no cover - optional
    zstandard = None  # type: ignore[assignment]


class DecodeError(Exception):
    """The body could not be decoded (unknown encoding, corrupt data, or over the size cap)."""


class BodyTooLarge(DecodeError):
    """Decompressing would exceed the cap: treated like any other over-size body (not scanned)."""


# -- content type ------------------------------------------------------------------------------

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
JS_TYPES = frozenset(
    {
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
        "text/x-javascript",
        "application/x-ecmascript",
        "text/jscript",
        "text/livescript",
    }
)
#: Types that are often wrong (servers label scripts and pages this way): we sniff the body.
SNIFF_TYPES = frozenset({"", "text/plain", "application/octet-stream", "application/unknown", "unknown/unknown"})
#: Prefixes that are never HTML or JS to a browser: such bodies stream through untouched.
BINARY_PREFIXES = ("image/", "audio/", "video/", "font/", "model/")
BINARY_TYPES = frozenset(
    {
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/pdf",
        "application/wasm",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/vnd.rar",
        "application/x-msdownload",
        "application/x-bzip2",
        "application/x-xz",
        "application/json",
        "application/ld+json",
        "application/manifest+json",
        "text/css",
        "text/csv",
        "text/event-stream",
        "application/grpc",
        "application/protobuf",
        "application/x-protobuf",
        "application/dns-message",
    }
)


def mime_type(content_type: str | None) -> str:
    """``"Text/HTML; charset=utf-8"`` -> ``"text/html"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def declared_charset(content_type: str | None) -> str | None:
    """The ``charset=`` parameter of a Content-Type header, if any."""
    if not content_type:
        return None
    match = re.search(r';\s*charset\s*=\s*"?([\w.:-]+)"?', content_type, re.I)
    return match.group(1) if match else None


def is_binary_type(content_type: str | None) -> bool:
    """True when a body of this type can never be HTML or JS (so it is streamed, not buffered)."""
    mime = mime_type(content_type)
    return mime.startswith(BINARY_PREFIXES) or mime in BINARY_TYPES


_HTML_START = re.compile(
    rb"^\s*(?:<!doctype\s+html|<html|<head|<body|<script|<iframe|<title|<meta|<!--|<div|<table|"
    rb"<form|<a\s|<p[\s>]|<h1|<br|<style|<font|<b[\s>])",
    re.I,
)
_BINARY_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"%PDF", b"\x00asm", b"MZ", b"\x1f\x8b", b"RIFF", b"\x7fELF")
_JS_HINT = re.compile(
    rb"^\s*(?:\(function|function\s|var\s|let\s|const\s|import\s|export\s|\"use strict\"|'use strict'|"
    rb"!function|;\(|window\.|document\.|eval\(|if\s*\(|try\s*\{|/\*|//)",
)


def sniff(head: bytes, *, url_path: str = "", fetch_dest: str = "") -> str | None:
    """Guess ``"html"``, ``"js"`` or None from the first bytes, the URL path and Sec-Fetch-Dest.

    Used only when the declared type is missing or a generic one (text/plain, octet-stream).
    """
    head = head[:1024]
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if head.startswith(bom):
            head = head[len(bom):]
            break
    if head.startswith(_BINARY_MAGIC):
        return None
    if b"\x00" in head[:512]:
        return None
    if _HTML_START.match(head):
        return "html"
    path = url_path.lower().split("?", 1)[0]
    if fetch_dest == "script" or path.endswith((".js", ".mjs", ".cjs")):
        return "js"
    if fetch_dest in ("document", "iframe", "frame") or path.endswith((".html", ".htm", ".xhtml")):
        return "html" if head.strip() else None
    if _JS_HINT.match(head):
        return "js"
    return None


def body_kind(content_type: str | None, head: bytes, *, url_path: str = "", fetch_dest: str = "") -> str | None:
    """``"html"`` / ``"js"`` for bodies we scan, None for everything else."""
    mime = mime_type(content_type)
    if mime in HTML_TYPES:
        return "html"
    if mime in JS_TYPES:
        return "js"
    if mime in SNIFF_TYPES:
        return sniff(head, url_path=url_path, fetch_dest=fetch_dest)
    return None


# -- content-encoding --------------------------------------------------------------------------

_CHUNK = 16 * 1024


def _zlib_decode(data: bytes, wbits: int, cap: int) -> bytes:
    decomp = zlib.decompressobj(wbits)
    out = bytearray()
    pos = 0
    while pos < len(data) or decomp.unconsumed_tail:
        chunk = decomp.unconsumed_tail or data[pos : pos + _CHUNK]
        if not decomp.unconsumed_tail:
            pos += _CHUNK
        out += decomp.decompress(chunk, cap + 1 - len(out))
        if len(out) > cap:
            raise BodyTooLarge(f"decompressed body exceeds {cap} bytes")
        if decomp.eof:
            break
    out += decomp.flush()
    if len(out) > cap:
        raise BodyTooLarge(f"decompressed body exceeds {cap} bytes")
    return bytes(out)


def _gzip(data: bytes, cap: int) -> bytes:
    try:
        return _zlib_decode(data, 16 + zlib.MAX_WBITS, cap)
    except zlib.error as exc:
        raise DecodeError(f"corrupt gzip body: {exc}") from None


def _deflate(data: bytes, cap: int) -> bytes:
    # "deflate" is meant to be zlib-wrapped, but many servers send raw deflate: try both.
    try:
        return _zlib_decode(data, zlib.MAX_WBITS, cap)
    except zlib.error:
        try:
            return _zlib_decode(data, -zlib.MAX_WBITS, cap)
        except zlib.error as exc:
            raise DecodeError(f"corrupt deflate body: {exc}") from None


def _brotli(data: bytes, cap: int) -> bytes:
    if brotli is None:  # pragma: no cover
        raise DecodeError("brotli is not installed")
    decomp = brotli.Decompressor()
    out = bytearray()
    # brotli's process() has no output limit, so feed 8-byte pieces and check after each one:
    # measured on zero-filled bombs, 8 input bytes expand to at most one 8 MiB ring-buffer
    # flush, so memory stays under cap + 8 MiB. (8-byte steps decode ~10 MB/s of input.)
    step = 8
    try:
        for pos in range(0, len(data), step):
            out += decomp.process(data[pos : pos + step])
            if len(out) > cap:
                raise BodyTooLarge(f"decompressed body exceeds {cap} bytes")
        if not decomp.is_finished():
            raise DecodeError("truncated brotli body")
    except brotli.error as exc:
        raise DecodeError(f"corrupt brotli body: {exc}") from None
    return bytes(out)


def _zstd(data: bytes, cap: int) -> bytes:
    if zstandard is None:
        raise DecodeError("zstd content-encoding needs the 'zstandard' package")
    buf = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
        while True:
            chunk = reader.read(min(4 * _CHUNK, cap + 1 - len(buf)))
            if not chunk:
                break
            buf += chunk
            if len(buf) > cap:
                raise BodyTooLarge(f"decompressed body exceeds {cap} bytes")
    except zstandard.ZstdError as exc:
        raise DecodeError(f"corrupt zstd body: {exc}") from None
    return bytes(buf)


_DECODERS = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decode_content(data: bytes, content_encoding: str | None, cap: int) -> bytes:
    """Undo every ``Content-Encoding`` (last applied first), never producing more than ``cap`` bytes."""
    if len(data) > cap:
        raise BodyTooLarge(f"body of {len(data)} bytes exceeds {cap} bytes")
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    for encoding in reversed(encodings):
        if encoding == "identity":
            continue
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise DecodeError(f"unsupported content-encoding {encoding!r}")
        data = decoder(data, cap)
    return data


# -- charset -----------------------------------------------------------------------------------

_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([\w.:-]+)""",
    re.I,
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True, slots=True)
class DecodedText:
    text: str
    charset: str
    #: where the charset came from: "header", "bom", "meta" or "fallback"
    charset_source: str


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None
    # As browsers do: a page that says latin-1 means windows-1252.
    return "cp1252" if codec in ("latin-1", "iso8859-1", "ascii") else codec


def decode_text(data: bytes, content_type: str | None, *, kind: str = "html") -> DecodedText:
    """Bytes to text: declared charset, then BOM, then ``<meta charset>`` (HTML), then UTF-8."""
    codec = _codec(declared_charset(content_type))
    if codec:
        for bom, bom_codec in _BOMS:
            if data.startswith(bom) and codecs.lookup(bom_codec).name.startswith(codec.split("-")[0]):
                data = data[len(bom):]
                break
        return DecodedText(data.decode(codec, errors="replace"), codec, "header")
    for bom, bom_codec in _BOMS:
        if data.startswith(bom):
            return DecodedText(data[len(bom):].decode(bom_codec, errors="replace"), bom_codec, "bom")
    if kind == "html":
        match = _META_CHARSET.search(data[:4096])
        codec = _codec(match.group(1).decode("ascii", "replace")) if match else None
        if codec and not codec.startswith("utf-16"):  # a meta tag readable as ASCII cannot be UTF-16
            return DecodedText(data.decode(codec, errors="replace"), codec, "meta")
    return DecodedText(data.decode("utf-8", errors="replace"), "utf-8", "fallback")
