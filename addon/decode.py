"""Turning a response body into text the engine can read, the same way on mitmproxy 11 and 12.

We undo ``Content-Encoding`` ourselves (gzip, deflate, br, zstd) with a cap on the decompressed
size, so a small compressed "bomb" cannot make the gateway allocate gigabytes, and we pick the
charset ourselves, so the text the engine scans does not depend on the mitmproxy version's own
guessing. Both follow the browser, because the scanned text must be what the browser runs:
codings as Chromium applies them (an unknown one means the raw bytes), encodings by the Encoding
Standard's labels only (via ``webencodings``), a byte-order mark first, the HTML prescan for
``<meta>``.

Nothing here touches the flow: the caller passes bytes and header values and gets text back.
"""

from __future__ import annotations

import codecs
import io
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import webencodings

try:  # brotli is a dependency, but a missing codec must only disable that encoding
    import brotli
except ImportError:  # pragma: no cover
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - optional
    zstandard = None  # type: ignore[assignment]


class DecodeError(Exception):
    """The body could not be decoded (unknown encoding, corrupt data, or over the size cap)."""


class BodyTooLarge(DecodeError):
    """Decompressing would exceed the cap: treated like any other over-size body (not scanned)."""


# -- sniffing ----------------------------------------------------------------------------------

_HTML_START = re.compile(
    rb"^[\t\n\x0c\r ]*(?:<!doctype\s+html|<html|<head|<body|<script|<iframe|<title|<meta|<!--|<div|<table|"
    rb"<form|<a[\s>]|<p[\s>]|<h1|<br|<style|<font|<b[\s>]|<\?xml|<svg)",
    re.I,
)
_BINARY_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"%PDF", b"\x00asm", b"MZ", b"\x1f\x8b", b"RIFF", b"\x7fELF")
_JS_HINT = re.compile(
    rb"^\s*(?:\(function|function\s|var\s|let\s|const\s|import\s|export\s|\"use strict\"|'use strict'|"
    rb"!function|;\(|window\.|document\.|eval\(|if\s*\(|try\s*\{|/\*|//)",
)


def sniff(head: bytes, *, url_path: str = "", document: bool = False) -> str | None:
    """Guess ``"html"``, ``"js"`` or None from the first bytes and the URL path.

    Used only when the declared type is missing, unparsable or generic (see
    :mod:`~malwaresnipper.addon.scanplan`). HTML (and XML, which may hold XHTML ``<script>``) is
    recognised by the leading tags MIME Sniffing lists; ``document`` is set for a navigation,
    where a browser never runs a generic body as a script.
    """
    head = head[:1024]
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if head.startswith(bom):
            if bom != codecs.BOM_UTF8:
                return "html"  # UTF-16 text: decoded first, then judged (a binary has no such BOM)
            head = head[len(bom):]
            break
    if head.startswith(_BINARY_MAGIC):
        return None
    if b"\x00" in head[:512]:
        return None
    if _HTML_START.match(head):
        return "html"
    path = url_path.lower().split("?", 1)[0]
    if document:
        return None
    if path.endswith((".js", ".mjs", ".cjs")):
        return "js"
    if path.endswith((".html", ".htm", ".xhtml")):
        return "html" if head.strip() else None
    if _JS_HINT.match(head):
        return "js"
    return None


# -- content-encoding --------------------------------------------------------------------------

_CHUNK = 16 * 1024


class CorruptBody(DecodeError):
    """A known coding failed part-way: ``partial`` is what decoded before the error."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(message)
        self.partial = partial


def _zlib_decode(data: bytes, wbits: int, cap: int, name: str) -> bytes:
    decomp = zlib.decompressobj(wbits)
    out = bytearray()
    try:
        decomp = _inflate(decomp, data, out, cap, _CHUNK)
        out += decomp.flush()
    except zlib.error as exc:
        raise CorruptBody(f"corrupt {name} body: {exc}", bytes(out)) from None
    if len(out) > cap:
        raise BodyTooLarge(f"decompressed body exceeds {cap} bytes")
    if not decomp.eof:
        raise CorruptBody(f"truncated {name} body", bytes(out))
    return bytes(out)


def _inflate(decomp: Any, data: bytes, out: bytearray, cap: int, step: int) -> Any:
    """Feed ``data`` to ``decomp`` in ``step``-byte pieces, appending to ``out``; returns the
    decompressor in use. zlib drops all output of a call that hits corrupt data, so a failing
    piece is fed again, from a copy of the state before it, in smaller pieces: everything the
    browser would render before the error is kept. Raises ``zlib.error`` at the corrupt byte."""
    pos = 0
    while pos < len(data) and not decomp.eof:
        piece = data[pos : pos + step]
        pos += step
        saved = decomp.copy() if step > 1 else None
        mark = len(out)
        try:
            _push(decomp, piece, out, cap)
        except zlib.error:
            if saved is None:
                raise
            del out[mark:]
            decomp = _inflate(saved, piece, out, cap, max(1, step // 64))
    return decomp


def _push(decomp: Any, piece: bytes, out: bytearray, cap: int) -> None:
    chunk = piece
    while chunk:
        out += decomp.decompress(chunk, cap + 1 - len(out))
        if len(out) > cap:
            raise BodyTooLarge(f"decompressed body exceeds {cap} bytes")
        if decomp.eof:
            return
        chunk = decomp.unconsumed_tail


def _gzip(data: bytes, cap: int) -> bytes:
    return _zlib_decode(data, 16 + zlib.MAX_WBITS, cap, "gzip")


def _deflate(data: bytes, cap: int) -> bytes:
    # "deflate" is meant to be zlib-wrapped, but many servers send raw deflate: so does Chromium,
    # which tries both.
    try:
        return _zlib_decode(data, zlib.MAX_WBITS, cap, "deflate")
    except CorruptBody as exc:
        if exc.partial:
            raise
        return _zlib_decode(data, -zlib.MAX_WBITS, cap, "deflate")


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
    except brotli.error as exc:
        raise CorruptBody(f"corrupt brotli body: {exc}", bytes(out)) from None
    if not decomp.is_finished():
        raise CorruptBody("truncated brotli body", bytes(out))
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
        raise CorruptBody(f"corrupt zstd body: {exc}", bytes(buf)) from None
    return bytes(buf)


_DECODERS = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def content_codings(header_values: Iterable[str]) -> tuple[str, ...]:
    """The codings a browser undoes, last applied first, for every ``Content-Encoding`` value.

    Chromium (verified in tests/integration/test_proxy_evasion.py) decodes only when every
    comma-separated token is one it knows; one unknown or ``identity`` token, or an empty one,
    and it renders the raw bytes. So ``x-foo``, ``identity,foo`` or ``gzip, x-foo`` mean "scan
    the raw body", never "cannot decode, pass unscanned".
    """
    tokens = [token.strip().lower() for value in header_values for token in value.split(",")]
    if not tokens or any(token not in _DECODERS for token in tokens):
        return ()
    return tuple(reversed(tokens))


@dataclass(frozen=True, slots=True)
class ContentDecoded:
    data: bytes
    #: why the body is only partly decoded (a corrupt or truncated coding), else None
    error: str | None = None


def decode_content(data: bytes, content_encoding: str | Iterable[str] | None, cap: int) -> ContentDecoded:
    """Undo the codings as the browser does, never producing more than ``cap`` bytes.

    A corrupt or truncated body yields what decoded before the error (browsers render that
    prefix: a corrupt tail must not hide the head from the scan), with ``error`` saying why.
    Raises :class:`BodyTooLarge` over the cap.
    """
    if len(data) > cap:
        raise BodyTooLarge(f"body of {len(data)} bytes exceeds {cap} bytes")
    values = [content_encoding] if isinstance(content_encoding, str) else list(content_encoding or ())
    error = None
    for coding in content_codings(values):
        try:
            data = _DECODERS[coding](data, cap)
        except CorruptBody as exc:
            data, error = exc.partial, error or str(exc)
    return ContentDecoded(data, error)


# -- charset -----------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16be"),
    (codecs.BOM_UTF16_LE, "utf-16le"),
)
#: Encodings in which ASCII bytes do not stay the same characters (a payload can hide in them).
ASCII_HIDING = frozenset({"utf-16le", "utf-16be", "replacement", "iso-2022-jp"})


def encoding_for_label(label: str | None) -> str | None:
    """Encoding Standard "get an encoding": the encoding's name, None for anything else.

    Only these labels are honoured (``cp037``, ``utf-32``, ``base64``, ``rot13`` are not web
    encodings: a page cannot pick an arbitrary Python codec by declaring it).
    """
    if label is None:
        return None
    encoding = webencodings.lookup(label)
    return encoding.name if encoding is not None else None


def decode_as(data: bytes, encoding: str) -> str:
    """Decode with a web encoding (its name from :func:`encoding_for_label`), never failing."""
    if encoding == "replacement":
        return "\ufffd" if data else ""  # the whole body is one U+FFFD, as the standard says
    if encoding == "gbk":
        return data.decode("gb18030", errors="replace")  # the standard's GBK decoder is gb18030's
    found = webencodings.lookup(encoding)
    assert found is not None, encoding
    return found.codec_info.decode(data, "replace")[0]


def _bom(data: bytes) -> tuple[str, bytes] | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, data[len(bom):]
    return None


@dataclass(frozen=True, slots=True)
class DecodedText:
    text: str
    #: the encoding's name in the Encoding Standard
    charset: str
    #: where the charset came from: "bom", "header", "meta" or "fallback"
    charset_source: str
    #: True when ``text`` also holds a UTF-8 reading (see :func:`decode_text`)
    with_utf8_view: bool = False


def decode_text(data: bytes, header_charset: str | None, *, kind: str = "html") -> DecodedText:
    """Bytes to text in the order the browser picks an encoding.

    HTML: byte-order mark, then the ``Content-Type`` charset (a web label; others are ignored),
    then ``<meta>`` (the standard's prescan), then UTF-8 when the bytes are valid UTF-8, else
    windows-1252 (Chromium's detector settles on one of these for undeclared pages; both keep
    every ASCII byte, so the scanned script text is the same).
    Scripts: byte-order mark, then the header charset, then UTF-8.

    When the choice is not certain and the chosen encoding hides ASCII (UTF-16, ISO-2022-JP,
    "replacement"), a UTF-8 reading is appended: module scripts and workers decode as UTF-8
    whatever the header says (Chromium runs a ``<script type=module>`` served with
    ``charset=utf-16le``), and a ``<meta>`` the gateway reads differently from the browser must
    not hide a payload.
    """
    found = _bom(data)
    if found is not None:
        bom_encoding, body = found
        return DecodedText(decode_as(body, bom_encoding), bom_encoding, "bom")
    encoding = encoding_for_label(header_charset)
    source = "header"
    certain = kind == "html"  # a page's header charset is final; a script's may be ignored
    if encoding is None and kind == "html":
        encoding, source, certain = prescan(data), "meta", False
    if encoding is None:
        source, certain = "fallback", True
        encoding = "utf-8"
        if kind == "html":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                encoding = "windows-1252"
    text = decode_as(data, encoding)
    if not certain and encoding in ASCII_HIDING:
        return DecodedText(text + "\n" + decode_as(data, "utf-8"), encoding, source, with_utf8_view=True)
    return DecodedText(text, encoding, source)


# -- the HTML standard's prescan for <meta charset> ---------------------------------------------

#: How far the prescan looks (the standard says 1024 bytes; Chromium honours a <meta> after a
#: longer comment, so look further: an extra hit only adds a UTF-8 view, see decode_text).
PRESCAN_BYTES = 4096
_SPACE = b"\t\n\x0c\r "


def prescan(data: bytes) -> str | None:
    """HTML "prescan a byte stream to determine its encoding": the ``<meta>`` charset, or None."""
    data = data[:PRESCAN_BYTES]
    pos, end = 0, len(data)
    while pos < end:
        if data.startswith(b"<!--", pos):
            close = data.find(b"-->", pos + 2)
            if close < 0:
                return None
            pos = close + 3
            continue
        if data[pos : pos + 5].lower() == b"<meta" and pos + 5 < end and data[pos + 5] in _SPACE + b"/":
            pos, encoding = _meta(data, pos + 6)
            if encoding is not None:
                return encoding
            continue
        if data[pos : pos + 1] == b"<" and (
            data[pos + 1 : pos + 2].isalpha() or (data[pos + 1 : pos + 2] == b"/" and data[pos + 2 : pos + 3].isalpha())
        ):
            while pos < end and data[pos] not in _SPACE + b">":
                pos += 1
            while True:
                pos, attr = _attribute(data, pos)
                if attr is None:
                    break
        elif data[pos : pos + 2] in (b"<!", b"</", b"<?"):
            close = data.find(b">", pos)
            if close < 0:
                return None
            pos = close
        pos += 1
    return None


def _meta(data: bytes, pos: int) -> tuple[int, str | None]:
    seen: set[bytes] = set()
    got_pragma = False
    need_pragma: bool | None = None
    charset: str | None = None
    while True:
        pos, attr = _attribute(data, pos)
        if attr is None:
            break
        name, value = attr
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv":
            got_pragma = got_pragma or value == b"content-type"
        elif name == b"content" and charset is None:
            label = _charset_from_content(value)
            if label is not None:
                charset = encoding_for_label(label.decode("latin-1"))
                need_pragma = True
        elif name == b"charset":
            charset = encoding_for_label(value.decode("latin-1"))
            need_pragma = False
    if need_pragma is None or (need_pragma and not got_pragma) or charset is None:
        return pos, None
    if charset in ("utf-16le", "utf-16be"):
        charset = "utf-8"
    elif charset == "x-user-defined":
        charset = "windows-1252"
    return pos, charset


def _attribute(data: bytes, pos: int) -> tuple[int, tuple[bytes, bytes] | None]:
    """The standard's "get an attribute": ((name, value) lower-cased, or None at '>' or the end)."""
    end = len(data)
    while pos < end and data[pos] in _SPACE + b"/":
        pos += 1
    if pos >= end or data[pos] == 0x3E:
        return pos, None
    name = bytearray()
    while True:
        if pos >= end:
            return pos, None
        byte = data[pos]
        if byte == 0x3D and name:  # "="
            pos += 1
            break
        if byte in _SPACE:
            while pos < end and data[pos] in _SPACE:
                pos += 1
            if pos >= end or data[pos] != 0x3D:
                return pos, (bytes(name), b"")
            pos += 1
            break
        if byte in b"/>":
            return pos, (bytes(name), b"")
        name.append(byte + 0x20 if 0x41 <= byte <= 0x5A else byte)
        pos += 1
    while pos < end and data[pos] in _SPACE:
        pos += 1
    if pos >= end:
        return pos, None
    value = bytearray()
    if data[pos] in b"\"'":
        quote = data[pos]
        pos += 1
        while pos < end and data[pos] != quote:
            byte = data[pos]
            value.append(byte + 0x20 if 0x41 <= byte <= 0x5A else byte)
            pos += 1
        if pos >= end:
            return pos, None
        return pos + 1, (bytes(name), bytes(value))
    if data[pos] == 0x3E:
        return pos, (bytes(name), b"")
    while pos < end and data[pos] not in _SPACE + b">":
        byte = data[pos]
        value.append(byte + 0x20 if 0x41 <= byte <= 0x5A else byte)
        pos += 1
    if pos >= end:
        return pos, None
    return pos, (bytes(name), bytes(value))


def _charset_from_content(value: bytes) -> bytes | None:
    """The standard's "extract a character encoding from a meta element" (``content`` value)."""
    pos = 0
    while True:
        found = value.find(b"charset", pos)
        if found < 0:
            return None
        pos = found + 7
        while pos < len(value) and value[pos] in _SPACE:
            pos += 1
        if pos >= len(value) or value[pos] != 0x3D:
            continue
        pos += 1
        while pos < len(value) and value[pos] in _SPACE:
            pos += 1
        if pos >= len(value):
            return None
        if value[pos] in b"\"'":
            close = value.find(value[pos : pos + 1], pos + 1)
            return value[pos + 1 : close] if close >= 0 else None
        stop = pos
        while stop < len(value) and value[stop] not in _SPACE + b";":
            stop += 1
        return value[pos:stop]
