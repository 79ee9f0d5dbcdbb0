"""Bodies that decode to more than ``[proxy] max_body_bytes``: scanned, not waved through.

A 5 KB gzip body can inflate to 5 MB of comment with the payload at its end; passing such bodies
unscanned made compression a bypass. Here the body is decompressed as a stream, never held in
full: HTML goes through the :class:`~malwaresnipper.engine.features.markup.HtmlReducer`
(comments and whitespace runs set aside), scripts have their whitespace runs collapsed, and of
what remains the head and the tail are kept (enough for the engine's caps). At most
``[proxy] max_decoded_bytes`` are decompressed (the work cap); a body longer than that, or one
whose reduced text is still too long, is cut, and the capture says so, so the verdict is
incomplete and never BENIGN.
"""

from __future__ import annotations

import codecs
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..engine.features.markup import HtmlReducer, collapse_whitespace
from .decode import DecodeError, content_codings, decode_text
from .scanplan import ScanPlan

try:  # brotli is a dependency, but a missing codec must only disable that encoding
    import brotli
except ImportError:  # pragma: no cover
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - optional
    zstandard = None  # type: ignore[assignment]

_OUT_CHUNK = 256 * 1024
_IN_CHUNK = 64 * 1024
#: Decoded bytes looked at before the charset and the kind are decided.
_HEAD_BYTES = 4096


class _Inflate:
    """Streaming zlib (gzip or deflate): bounded output per step, so a bomb never sits in memory."""

    def __init__(self, wbits: int) -> None:
        self.decomp = zlib.decompressobj(wbits)

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        decomp = self.decomp
        for chunk in chunks:
            data = chunk
            while data:
                out = decomp.decompress(data, _OUT_CHUNK)
                if out:
                    yield out
                data = decomp.unconsumed_tail
                if decomp.eof:
                    return
        tail = decomp.flush()
        if tail:
            yield tail


def _deflate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``deflate`` is meant to be zlib-wrapped; many servers send it raw: decide on the first bytes."""
    iterator = iter(chunks)
    first = next(iterator, b"")
    wrapped = len(first) >= 2 and (first[0] & 0x0F) == 8 and ((first[0] << 8) | first[1]) % 31 == 0
    yield from _Inflate(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)(_chain([first], iterator))


def _brotli(chunks: Iterable[bytes]) -> Iterator[bytes]:
    if brotli is None:  # pragma: no cover
        raise DecodeError("brotli is not installed")
    decomp = brotli.Decompressor()
    for chunk in chunks:
        # 8 input bytes expand to at most one 8 MiB ring-buffer flush (see decode._brotli)
        for pos in range(0, len(chunk), 8):
            out = decomp.process(chunk[pos : pos + 8])
            if out:
                yield out


def _zstd(chunks: Iterable[bytes]) -> Iterator[bytes]:
    if zstandard is None:
        raise DecodeError("zstd content-encoding needs the 'zstandard' package")
    decomp = zstandard.ZstdDecompressor().decompressobj()
    for chunk in chunks:
        for pos in range(0, len(chunk), 16):
            out = decomp.decompress(chunk[pos : pos + 16])
            if out:
                yield out


def _chain(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part


_STREAMS = {
    "gzip": lambda c: _Inflate(16 + zlib.MAX_WBITS)(c),
    "x-gzip": lambda c: _Inflate(16 + zlib.MAX_WBITS)(c),
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decoded_stream(data: bytes, content_encoding: Iterable[str] | str | None) -> Iterator[bytes]:
    """The body with every ``Content-Encoding`` undone (last applied first), in chunks; the
    codings are those a browser undoes (:func:`~.decode.content_codings`)."""
    stream: Iterator[bytes] = iter([data[i : i + _IN_CHUNK] for i in range(0, len(data), _IN_CHUNK)])
    values = [content_encoding] if isinstance(content_encoding, str) else list(content_encoding or ())
    for coding in content_codings(values):
        stream = _STREAMS[coding](stream)
    return stream


class HeadAndTail:
    """Keeps the first ``keep // 2`` and the last ``keep - keep // 2`` characters of a text stream
    (all of it when it is no longer than ``keep``)."""

    def __init__(self, keep: int) -> None:
        self.head_limit = keep // 2
        self.tail_limit = keep - self.head_limit
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.total = 0

    def add(self, piece: str) -> None:
        if not piece:
            return
        self.total += len(piece)
        room = self.head_limit - self.head_len
        if room > 0:
            self.head.append(piece[:room])
            self.head_len += min(room, len(piece))
            piece = piece[room:]
            if not piece:
                return
        self.tail.append(piece)
        self.tail_len += len(piece)
        while self.tail_len - len(self.tail[0]) >= self.tail_limit:
            self.tail_len -= len(self.tail.popleft())

    def text(self, marker: str) -> tuple[str, int]:
        """The kept text (a marker where the middle was left out) and how much was left out."""
        tail = "".join(self.tail)
        if len(tail) > self.tail_limit:
            tail = tail[len(tail) - self.tail_limit :]
        left_out = self.total - self.head_len - len(tail)
        head = "".join(self.head)
        if left_out <= 0:
            return head + tail, 0
        return head + marker.format(left_out) + tail, left_out


@dataclass(frozen=True, slots=True)
class BigBody:
    kind: str
    text: str
    charset: str
    reductions: tuple[str, ...]
    truncations: tuple[str, ...]


def decode_big_body(
    raw: bytes,
    *,
    plan: ScanPlan,
    content_encoding: Iterable[str] | str | None,
    url_path: str,
    work_cap: int,
    keep_chars: int,
) -> BigBody | None:
    """Stream-decode a body too big to hold decoded (see the module docstring); None when it is
    neither HTML nor JavaScript. Raises :class:`DecodeError` for a corrupt encoding."""
    decoded = 0
    cut_at_cap = False
    head = bytearray()
    pieces: Iterator[bytes] = decoded_stream(raw, content_encoding)
    try:
        for chunk in pieces:  # gather the head: the kind and the charset are decided on it
            head += chunk
            decoded += len(chunk)
            if len(head) >= _HEAD_BYTES:
                break
        from .responses import resolve_kind

        kind = resolve_kind(plan, bytes(head[:1024]), url_path)
        if kind is None:
            return None
        charset = decode_text(bytes(head[:_HEAD_BYTES]), plan.charset, kind=kind).charset
        try:
            text_decoder = codecs.getincrementaldecoder(charset)(errors="replace")
        except LookupError:
            charset = "utf-8"
            text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reducer = HtmlReducer() if kind == "html" else None
        kept = HeadAndTail(keep_chars)
        original_chars = 0

        def consume(data: bytes, final: bool = False) -> None:
            nonlocal original_chars
            text = text_decoder.decode(data, final)
            original_chars += len(text)
            if reducer is not None:
                kept.add(reducer.feed(text))
                if final:
                    kept.add(reducer.close())
            else:
                kept.add(collapse_whitespace(text))

        if head.startswith(codecs.BOM_UTF8) and charset.replace("_", "-").lower() in ("utf-8", "utf8"):
            head = head[len(codecs.BOM_UTF8) :]
        consume(bytes(head))
        for chunk in pieces:
            if decoded + len(chunk) > work_cap:
                consume(chunk[: work_cap - decoded])
                decoded = work_cap
                cut_at_cap = True
                break
            decoded += len(chunk)
            consume(chunk)
        consume(b"", final=True)
    except (zlib.error, EOFError) as exc:
        raise DecodeError(f"corrupt compressed body: {exc}") from None
    except Exception as exc:  # brotli.error, zstandard.ZstdError
        if type(exc).__module__.split(".")[0] in ("brotli", "zstandard", "_brotli") or "brotli" in type(exc).__name__.lower():
            raise DecodeError(f"corrupt compressed body: {exc}") from None
        raise
    marker = ("\n<!-- malwaresnipper: {} characters left out -->\n" if kind == "html"
              else "\n/* malwaresnipper: {} characters left out */\n")
    text, left_out = kept.text(marker)
    what = "page" if kind == "html" else "script"
    reductions: list[str] = []
    truncations: list[str] = []
    if kept.total < original_chars:
        removed = original_chars - kept.total
        reductions.append(f"the {what} decoded to {original_chars} characters; {removed} of comments and "
                          "whitespace were set aside" if kind == "html" else
                          f"the {what} decoded to {original_chars} characters; {removed} of whitespace were set aside")
    if left_out:
        truncations.append(f"{what} body: the middle {left_out} characters (after reduction) were not analysed")
    if cut_at_cap:
        truncations.append(f"{what} body longer than {work_cap} decoded bytes: its end was not analysed")
    return BigBody(kind, text, charset, tuple(reductions), tuple(truncations))


class StreamTap:
    """A ``flow.response.stream`` callable for bodies too large to buffer: every chunk goes on to
    the client at once, and the tap keeps the first ``head_bytes`` and, for a body without a
    content-encoding (a compressed stream cannot be decoded from its middle), the last
    ``tail_bytes``, so the page or script is still scanned once it has passed.

    With ``replacement`` set, nothing of the upstream body goes on: the client gets the
    replacement body at the end (block mode with ``fail_closed``: the gateway's own block page or
    inert script, whose headers have replaced the upstream ones).
    """

    def __init__(self, *, head_bytes: int, tail_bytes: int, encoded: bool, replacement: bytes | None = None) -> None:
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.head_bytes = head_bytes
        self.tail_bytes = 0 if encoded else tail_bytes
        self.total = 0
        self.replacement = replacement

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:  # the end of the body
            return self.replacement or b""
        self.total += len(chunk)
        data = chunk
        room = self.head_bytes - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_bytes:
            self.tail.append(data)
            self.tail_len += len(data)
            while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_bytes:
                self.tail_len -= len(self.tail.popleft())
        return b"" if self.replacement is not None else chunk

    def seen(self) -> tuple[bytes, str]:
        """What was kept, as one body to decode, and a note on what was not."""
        tail = b"".join(self.tail)[-self.tail_bytes:] if self.tail_bytes else b""
        unseen = self.total - len(self.head) - len(tail)
        if unseen <= 0:
            return bytes(self.head) + tail, ""
        if self.tail_bytes:
            note = (f"the body of {self.total} bytes was too large to hold: its first {len(self.head)} and last "
                    f"{len(tail)} bytes were analysed after it had passed")
            return bytes(self.head) + b"\n" + tail, note
        note = (f"the compressed body of {self.total} bytes was too large to hold: its first {len(self.head)} "
                "bytes were analysed after it had passed")
        return bytes(self.head), note
