"""MIME types as a browser reads them: WHATWG MIME Sniffing's parser and groups, Fetch's extraction.

A ``Content-Type`` header is hostile input. The gateway must read it exactly as the browser does,
or an attacker picks a value that the browser renders as a page while the gateway sees an image
(``image/png, text/html``: the last valid type wins). So this module implements the standards'
algorithms literally, and the tests run the web-platform-tests vectors over them:

* :func:`parse_mime_type` — MIME Sniffing "parse a MIME type";
* :func:`extract_mime_type` — Fetch "extract a MIME type" over every ``Content-Type`` value
  (``headers.get_all``): split on commas outside quotes, the last valid type wins, and a charset
  carries over to a later value of the same essence;
* the MIME type groups (JavaScript, XML, HTML, JSON, image, ...) the other rules are written in.

Pure functions on ``str``; nothing here knows about mitmproxy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

HTTP_WHITESPACE = "\t\n\r "
HTTP_TAB_OR_SPACE = "\t "
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(text: str) -> bool:
    return bool(text) and all(ch in _TOKEN for ch in text)


def _is_quoted_string_token(text: str) -> bool:
    return all(ch == "\t" or " " <= ch <= "~" or "\x80" <= ch <= "\xff" for ch in text)


@dataclass(slots=True)
class MimeType:
    """A parsed MIME type: lower-case ``type``/``subtype``, parameters in order (names lower-case)."""

    type: str
    subtype: str
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def charset(self) -> str | None:
        return self.parameters.get("charset")

    def serialize(self) -> str:
        out = self.essence
        for name, value in self.parameters.items():
            if not _is_token(value):
                value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out += f";{name}={value}"
        return out

    # -- MIME type groups (MIME Sniffing section 4.6) ------------------------------------------

    def is_image(self) -> bool:
        return self.type == "image"

    def is_audio_or_video(self) -> bool:
        return self.type in ("audio", "video") or self.essence == "application/ogg"

    def is_font(self) -> bool:
        return self.type == "font" or self.essence in _FONT_TYPES

    def is_zip_based(self) -> bool:
        return self.subtype.endswith("+zip") or self.essence == "application/zip"

    def is_archive(self) -> bool:
        return self.essence in ("application/x-rar-compressed", "application/zip", "application/x-gzip")

    def is_xml(self) -> bool:
        return self.subtype.endswith("+xml") or self.essence in ("text/xml", "application/xml")

    def is_html(self) -> bool:
        return self.essence == "text/html"

    def is_scriptable(self) -> bool:
        return self.is_xml() or self.is_html() or self.essence == "application/pdf"

    def is_javascript(self) -> bool:
        return self.essence in JAVASCRIPT_TYPES

    def is_json(self) -> bool:
        return self.subtype.endswith("+json") or self.essence in ("application/json", "text/json")


_FONT_TYPES = frozenset({
    "application/font-cff", "application/font-off", "application/font-sfnt", "application/font-ttf",
    "application/font-woff", "application/vnd.ms-fontobject", "application/vnd.ms-opentype",
})
#: MIME Sniffing's "JavaScript MIME type essence match" list.
JAVASCRIPT_TYPES = frozenset({
    "application/ecmascript", "application/javascript", "application/x-ecmascript",
    "application/x-javascript", "text/ecmascript", "text/javascript", "text/javascript1.0",
    "text/javascript1.1", "text/javascript1.2", "text/javascript1.3", "text/javascript1.4",
    "text/javascript1.5", "text/jscript", "text/livescript", "text/x-ecmascript", "text/x-javascript",
})


def _collect(text: str, pos: int, stop: str) -> tuple[str, int]:
    """Infra "collect a sequence of code points" that are not in ``stop``."""
    start = pos
    while pos < len(text) and text[pos] not in stop:
        pos += 1
    return text[start:pos], pos


def collect_http_quoted_string(text: str, pos: int, *, extract_value: bool) -> tuple[str, int]:
    """Fetch "collect an HTTP quoted string" starting at the ``"`` at ``pos``."""
    start = pos
    value = ""
    assert text[pos] == '"'
    pos += 1
    while True:
        chunk, pos = _collect(text, pos, '"\\')
        value += chunk
        if pos >= len(text):
            break
        quote_or_backslash = text[pos]
        pos += 1
        if quote_or_backslash == "\\":
            if pos >= len(text):
                value += "\\"
                break
            value += text[pos]
            pos += 1
        else:
            break
    return (value if extract_value else text[start:pos]), pos


def parse_mime_type(text: str) -> MimeType | None:
    """MIME Sniffing "parse a MIME type"; None is the standard's "failure"."""
    text = text.strip(HTTP_WHITESPACE)
    type_, pos = _collect(text, 0, "/")
    if not _is_token(type_) or pos >= len(text):
        return None
    pos += 1
    subtype, pos = _collect(text, pos, ";")
    subtype = subtype.rstrip(HTTP_WHITESPACE)
    if not _is_token(subtype):
        return None
    mime = MimeType(type_.lower(), subtype.lower())
    while pos < len(text):
        pos += 1  # past ";"
        while pos < len(text) and text[pos] in HTTP_WHITESPACE:
            pos += 1
        name, pos = _collect(text, pos, ";=")
        name = name.lower()
        if pos < len(text):
            if text[pos] == ";":
                continue
            pos += 1  # past "="
        if pos >= len(text):
            break
        if text[pos] == '"':
            value, pos = collect_http_quoted_string(text, pos, extract_value=True)
            _, pos = _collect(text, pos, ";")
        else:
            value, pos = _collect(text, pos, ";")
            value = value.rstrip(HTTP_WHITESPACE)
            if not value:
                continue
        if _is_token(name) and _is_quoted_string_token(value) and name not in mime.parameters:
            mime.parameters[name] = value
    return mime


def split_header_values(value: str) -> list[str]:
    """Fetch "get, decode, and split" for one combined header value: commas inside quotes stay."""
    values: list[str] = []
    pos = 0
    temporary = ""
    while True:
        chunk, pos = _collect(value, pos, '",')
        temporary += chunk
        if pos < len(value) and value[pos] == '"':
            quoted, pos = collect_http_quoted_string(value, pos, extract_value=False)
            temporary += quoted
            if pos < len(value):
                continue
        values.append(temporary.strip(HTTP_TAB_OR_SPACE))
        temporary = ""
        if pos >= len(value):
            return values
        pos += 1  # past ","


def extract_mime_type(header_values: Iterable[str]) -> MimeType | None:
    """Fetch "extract a MIME type" from every ``Content-Type`` header value, in order.

    The values are combined as a header list would be (joined with ", "), so one header holding
    ``image/png, text/html`` and two headers are the same thing, as they are to the browser.
    Returns None (the standard's "failure") when no value parses.
    """
    values = list(header_values)
    if not values:
        return None
    charset: str | None = None
    essence: str | None = None
    mime: MimeType | None = None
    for value in split_header_values(", ".join(values)):
        candidate = parse_mime_type(value)
        if candidate is None or candidate.essence == "*/*":
            continue
        mime = candidate
        if mime.essence != essence:
            charset = mime.charset
            essence = mime.essence
        elif "charset" not in mime.parameters and charset is not None:
            mime.parameters["charset"] = charset
    return mime
