"""Request bodies to Captures: the current capture JSON and the extension's older body.

Everything a client can get wrong becomes a :class:`BadRequest` with an error code and a
sentence saying what to fix; nothing is recorded for a bad request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..engine.capture import LONE_SURROGATE, Capture, CaptureLimits, Source, validate_url
from ..engine.errors import CaptureError

LEGACY_KEYS = ("page_title", "inline_scripts", "dom_structure", "forms", "iframes")
DOM_KEYS = (
    "element_count", "link_count", "external_link_count", "resource_count",
    "external_resource_count", "right_click_disabled", "meta_refresh", "auto_download", "text_excerpt",
)
MAX_COUNT_ITEMS = 500
#: JSON escapes that can decode to a UTF-16 surrogate; raw UTF-8 bytes never do (the decoder
#: refuses encoded surrogates), so a body without one of these needs no surrogate walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class BadRequest(Exception):
    """A client error: ``code`` for programs, ``message`` for people, ``status`` for HTTP."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def parse_json_body(raw: bytes) -> Any:
    """The request body as JSON (I-JSON, RFC 7493: no NaN or Infinity, no unpaired surrogates),
    or :class:`BadRequest` saying what is wrong with it."""
    if not raw:
        raise BadRequest("invalid_json", "the body is empty; send a JSON object")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise BadRequest("invalid_json", "the body is not UTF-8 JSON") from None
    except ValueError as exc:
        raise BadRequest("invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("invalid_json", "the body's JSON is nested too deeply") from None
    if _SURROGATE_ESCAPE.search(raw):
        where = _lone_surrogate_at(body)
        if where is not None:
            raise BadRequest("invalid_json", f"{where} holds an unpaired UTF-16 surrogate (a \\ud800-\\udfff "
                             "escape without its pair); send well-formed Unicode (String.prototype.toWellFormed)")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _lone_surrogate_at(body: Any) -> str | None:
    """Where the first string holding an unpaired surrogate is (``"title"``, ``scripts[2].text``)."""
    stack: list[tuple[str, Any]] = [("the body", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if LONE_SURROGATE.search(value):
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                if LONE_SURROGATE.search(key):
                    return f"a key of {where}"
                stack.append((f'"{key[:40]}"' if where == "the body" else f"{where}.{key[:40]}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def check_http_url(value: object, field: str = "url") -> str:
    """``value`` stripped when it is an http(s) URL a browser would load (the engine's
    :func:`~malwaresnipper.engine.capture.validate_url` decides), else :class:`BadRequest`."""
    if value is None:
        raise BadRequest(f"missing_{field}", f"the body needs a \"{field}\": the page's http(s) URL")
    if not isinstance(value, str):
        raise BadRequest("invalid_field", f"\"{field}\" must be a string, not {_type(value)}")
    stripped = value.strip()
    if not stripped:
        raise BadRequest(f"missing_{field}", f"\"{field}\" is empty; send the page's http(s) URL")
    scheme = stripped.split(":", 1)[0].lower() if ":" in stripped else ""
    if scheme not in ("http", "https"):
        raise BadRequest("invalid_url", f"\"{field}\" must be an http:// or https:// URL, not {stripped[:80]!r}")
    try:
        return validate_url(stripped)
    except CaptureError as exc:
        raise BadRequest("invalid_url", f"\"{field}\": {exc}") from None


def capture_from_body(body: object, limits: CaptureLimits, *, legacy: bool = False) -> Capture:
    """Validate a request body and build the Capture (raises :class:`BadRequest`)."""
    if not isinstance(body, Mapping):
        raise BadRequest("invalid_body", f"the body must be a JSON object, not {_type(body)}")
    url = check_http_url(body.get("url"))
    if legacy and is_legacy(body):
        fields = _legacy_fields(body)
    else:
        fields = {k: body.get(k) for k in ("title", "html", "scripts", "headers", "content_type", "dom")}
    page_url = body.get("page_url")
    if page_url is not None:
        page_url = check_http_url(page_url, "page_url")
    scripts = fields.get("scripts")
    if scripts is None:
        scripts = []
    elif not isinstance(scripts, list):
        raise BadRequest("invalid_field", f"\"scripts\" must be a list of objects, not {_type(scripts)}")
    try:
        return Capture.build(
            url,
            source=Source.EXTENSION,
            html=_opt_str(fields.get("html"), "html"),
            title=_opt_str(fields.get("title"), "title"),
            scripts=scripts,
            headers=fields.get("headers"),
            content_type=_opt_str(fields.get("content_type"), "content_type"),
            dom=fields.get("dom"),
            page_url=page_url,
            limits=limits,
        )
    except CaptureError as exc:
        raise BadRequest("invalid_field", str(exc)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest("invalid_field", f"a field has the wrong type: {exc}") from None


def is_legacy(body: Mapping[str, Any]) -> bool:
    if any(k in body for k in LEGACY_KEYS):
        return True
    scripts = body.get("scripts")
    return isinstance(scripts, list) and any(isinstance(s, str) for s in scripts)


def _legacy_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Map the older extension body onto the current capture fields."""
    scripts: list[dict[str, Any]] = []
    raw_scripts = body.get("scripts") or []
    if not isinstance(raw_scripts, list):
        raise BadRequest("invalid_field", "\"scripts\" must be a list of script URLs")
    for i, item in enumerate(raw_scripts):
        if isinstance(item, str):
            scripts.append({"url": item, "inline": False})
        elif isinstance(item, Mapping):
            scripts.append(dict(item))
        else:
            raise BadRequest("invalid_field", f"scripts[{i}] must be a URL string")
    inline = body.get("inline_scripts") or []
    if not isinstance(inline, list):
        raise BadRequest("invalid_field", "\"inline_scripts\" must be a list of strings")
    for i, text in enumerate(inline):
        if not isinstance(text, str):
            raise BadRequest("invalid_field", f"inline_scripts[{i}] must be a string")
        scripts.append({"text": text, "inline": True})
    dom: dict[str, Any] = {}
    structure = body.get("dom_structure")
    if structure is not None:
        if not isinstance(structure, Mapping):
            raise BadRequest("invalid_field", "\"dom_structure\" must be an object")
        dom.update({k: structure[k] for k in DOM_KEYS if k in structure})
        for key in ("forms", "iframes"):
            if key in structure and key not in body:
                dom[key] = _count_or_list(structure[key], key)
    for key in ("forms", "iframes"):
        if key in body:
            dom[key] = _count_or_list(body[key], key)
    return {
        "title": body.get("page_title", body.get("title")),
        "html": body.get("html"),
        "scripts": scripts,
        "headers": body.get("headers"),
        "content_type": body.get("content_type"),
        "dom": dom or body.get("dom"),
    }


def _count_or_list(value: object, key: str) -> list[dict[str, Any]]:
    if isinstance(value, bool):
        raise BadRequest("invalid_field", f"\"{key}\" must be a count or a list")
    if isinstance(value, int):
        if value < 0:
            raise BadRequest("invalid_field", f"\"{key}\" must not be negative")
        return [{} for _ in range(min(value, MAX_COUNT_ITEMS))]
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append(dict(item))
            elif isinstance(item, str):
                out.append({"action": item} if key == "forms" else {"src": item})
            else:
                raise BadRequest("invalid_field", f"{key}[{i}] must be an object or a string")
        return out
    raise BadRequest("invalid_field", f"\"{key}\" must be a count or a list, not {_type(value)}")


def _opt_str(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BadRequest("invalid_field", f"\"{name}\" must be a string, not {_type(value)}")


def _type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
