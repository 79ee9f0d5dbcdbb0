"""``POST /api/v1/verdicts/lookup``: what this gateway already knows about scripts and pages.

The extension often knows only a script's URL (a cross-origin ``<script src>`` without CORS: it
cannot read the text), yet the gateway may have judged that script already. A lookup answers, for
each script (by body sha256 when given, else by URL) and each page URL, the newest completed
verdict in the history: level, score, scan id and headline reason. URLs match in their normal
form (:func:`~malwaresnipper.engine.lists.url_key`: scheme, case, default port and fragment do not
matter). Each answer is one index seek (``scans_url_key_ts``, ``scans_body_sha256_ts``), so a
lookup costs about as much as reading one scan per item; the limits below bound it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .captures import BadRequest, check_http_url
from .service import ScanService

#: At most this many scripts and pages per lookup (a page's scripts fit, a crawl does not).
MAX_SCRIPTS = 100
MAX_PAGES = 20
MAX_URL_CHARS = 2048
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _url(value: object, field: str) -> str:
    if isinstance(value, str) and len(value) > MAX_URL_CHARS:
        raise BadRequest("invalid_field", f"{field} is longer than {MAX_URL_CHARS} characters")
    return check_http_url(value, field)


def parse_lookup(body: object) -> tuple[list[dict[str, str]], list[str]]:
    """The scripts (``{"url", "sha256"}``, either may be '') and page URLs of a lookup body, or
    :class:`BadRequest`."""
    if not isinstance(body, Mapping):
        raise BadRequest("invalid_body", 'the body must be a JSON object like {"scripts": [{"url": "https://..."}], '
                         '"pages": ["https://..."]}')
    unknown = set(body) - {"scripts", "pages"}
    if unknown:
        raise BadRequest("invalid_field", f"unknown field {sorted(unknown)[0][:40]!r}: send \"scripts\" and \"pages\"")
    scripts_in = body.get("scripts", [])
    pages_in = body.get("pages", [])
    if not isinstance(scripts_in, list) or not isinstance(pages_in, list):
        raise BadRequest("invalid_field", '"scripts" and "pages" must be lists')
    if not scripts_in and not pages_in:
        raise BadRequest("invalid_body", 'nothing to look up: send "scripts" or "pages"')
    if len(scripts_in) > MAX_SCRIPTS or len(pages_in) > MAX_PAGES:
        raise BadRequest("too_many", f"at most {MAX_SCRIPTS} scripts and {MAX_PAGES} pages per lookup", 413)
    scripts: list[dict[str, str]] = []
    for index, item in enumerate(scripts_in):
        if not isinstance(item, Mapping):
            raise BadRequest("invalid_field", f'scripts[{index}] must be an object like {{"url": "https://..."}}')
        extra = set(item) - {"url", "sha256"}
        if extra:
            raise BadRequest("invalid_field", f"scripts[{index}] has an unknown field {sorted(extra)[0][:40]!r}")
        url = _url(item["url"], f"scripts[{index}].url") if item.get("url") is not None else ""
        sha = item.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
            raise BadRequest("invalid_field", f"scripts[{index}].sha256 must be 64 hexadecimal characters")
        if not url and not sha:
            raise BadRequest("invalid_field", f"scripts[{index}] needs a url or a sha256")
        scripts.append({"url": url, "sha256": (sha or "").lower()})
    pages = [_url(url, f"pages[{index}]") for index, url in enumerate(pages_in)]
    return scripts, pages


async def lookup(service: ScanService, body: object) -> dict[str, Any]:
    """The answer of a lookup: each script and page with the verdict known for it (or null).

    A script known by its sha256 answers with that scan (the same bytes); otherwise by its URL
    (``match`` says which)."""
    scripts, pages = parse_lookup(body)
    urls = [s["url"] for s in scripts if s["url"]] + pages
    by_url, by_sha = await service.lookup(urls, [s["sha256"] for s in scripts if s["sha256"]])
    out_scripts = []
    for script in scripts:
        known, match = by_sha.get(script["sha256"]) if script["sha256"] else None, "sha256"
        if known is None and script["url"]:
            known, match = by_url.get(script["url"]), "url"
        out_scripts.append({**script, "known": known, "match": match if known else None})
    return {"scripts": out_scripts, "pages": [{"url": url, "known": by_url.get(url)} for url in pages]}
