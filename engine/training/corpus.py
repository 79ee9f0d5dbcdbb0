"""Labelled corpora: gzipped (or plain) JSON Lines in, typed samples out.

The kind of a file (JavaScript, URL or HTML page) is detected from its fields, so ``train`` and
``eval`` work on files they have never seen as long as they follow the shared format: ``label``
plus ``content`` (JS or HTML; ``format`` or ``category`` tells which) or ``url``.

Samples are data: this module only reads text, never executes or renders it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..capture import Capture, CaptureLimits, Source
from ..errors import MalwareSnipperError

POSITIVE_LABELS = frozenset({"malicious", "phishing", "malware"})
NEGATIVE_LABELS = frozenset({"benign"})
KINDS = ("js", "url", "html")
#: Corpus scripts and pages have no address: they are scanned at this made-up one (marked
#: synthetic, so nothing judges the address itself).
SAMPLE_HOST = "https://sample.invalid/"

#: Categories that only occur in the HTML corpus (used when a row has no ``format``).
HTML_CATEGORIES = frozenset(
    {"phishing_kit_page", "phishing_kit_data_page", "phishing_kit_aux", "login_page", "doc_page",
     "demo_page", "article_page", "app_page"}
)


#: Row fields kept with each sample: reported on (per source, topic, ...) and, for URLs, used
#: to keep one site in one cross-validation fold.
META_FIELDS = ("minified", "source", "source_file", "topic", "brand", "kit", "family", "encoding",
               "host", "reg_domain", "deobfuscated")


class CorpusError(MalwareSnipperError):
    """A corpus file cannot be read or does not follow the format."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled row."""

    id: str
    kind: str  # "js" | "url" | "html"
    label: str
    category: str
    text: str  # the script or page text, or the URL
    group: str
    format: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def category_key(self) -> str:
        """The key metrics are reported under: benign JS split into minified and plain
        (minified bundles are the hard case), URLs by label (they carry no category)."""
        if self.kind == "js" and self.label == "benign" and "minified" in self.meta:
            return f"{self.category}/{'minified' if self.meta['minified'] else 'plain'}"
        if self.kind == "url":
            return self.label
        return self.category

    @property
    def y(self) -> int:
        """1 for malicious/phishing/malware, 0 for benign."""
        return 1 if self.label in POSITIVE_LABELS else 0


@dataclass
class Corpus:
    """The samples of one file, with what is needed to record it in a manifest."""

    path: Path
    kind: str
    samples: list[Sample]
    sha256: str
    skipped: int = 0

    def counts(self) -> dict[str, Any]:
        by_label = Counter(s.label for s in self.samples)
        by_cat = Counter(f"{s.label} | {s.category}" for s in self.samples)
        return {"records": len(self.samples), "by_label": dict(sorted(by_label.items())),
                "by_label_category": dict(sorted(by_cat.items())), "skipped": self.skipped}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line; gzip detected by its magic bytes."""
    try:
        with path.open("rb") as raw:
            magic = raw.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{path}:{lineno}: not JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise CorpusError(f"{path}:{lineno}: expected a JSON object per line")
                yield lineno, row
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot read: {exc}") from None


def detect_kind(row: dict[str, Any]) -> str:
    """'url', 'js' or 'html' from a row's fields."""
    if "url" in row and "content" not in row:
        return "url"
    fmt = str(row.get("format") or "")
    category = str(row.get("category") or "")
    rid = str(row.get("id") or "")
    if category in HTML_CATEGORIES or fmt in ("php_source", "template_source") or rid.startswith("html-"):
        return "html"
    if rid.startswith("js-") or fmt == "js" or category:
        return "js"
    content = str(row.get("content") or "").lstrip()[:200].lower()
    return "html" if content.startswith(("<!doctype", "<html")) else "js"


def load_corpus(path: str | Path, *, limit: int | None = None) -> Corpus:
    """Read one corpus file. Rows without a usable label or text are counted as skipped."""
    path = Path(path)
    samples: list[Sample] = []
    kinds: Counter[str] = Counter()
    skipped = 0
    for lineno, row in iter_rows(path):
        label = str(row.get("label") or "").lower()
        if label not in POSITIVE_LABELS | NEGATIVE_LABELS:
            skipped += 1
            continue
        kind = detect_kind(row)
        kinds[kind] += 1
        text = row.get("url_norm") or row.get("url") if kind == "url" else row.get("content")
        if not isinstance(text, str) or not text:
            skipped += 1
            continue
        rid = str(row.get("id") or f"{path.name}:{lineno}")
        category = str(row.get("category") or ("malware" if label == "malware" else label if kind == "url" else "unknown"))
        meta = {k: row[k] for k in META_FIELDS if k in row}
        meta["file"] = path.name
        samples.append(Sample(
            id=rid, kind=kind, label=label, category=category, text=text,
            group=str(row.get("split_group") or rid), format=str(row.get("format") or ""), meta=meta,
        ))
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise CorpusError(f"{path}: no labelled samples (expected 'label' plus 'content' or 'url')")
    kind = kinds.most_common(1)[0][0]
    return Corpus(path=path, kind=kind, samples=samples, sha256=file_sha256(path), skipped=skipped)


def capture_for(sample: Sample, limits: CaptureLimits | None = None) -> Capture:
    """The Capture a gateway would build for one corpus row."""
    page_url = SAMPLE_HOST + sample.id
    if sample.kind == "url":
        return Capture.build(sample.text, source=Source.CLI, limits=limits)
    # The corpus has no URL for scripts and pages: the placeholder is marked synthetic (a made-up
    # address says nothing about the sample): the URL model does not score it and the dom layer
    # compares nothing with the page's own site.
    if sample.kind == "html" or sample.format == "html":
        return Capture.build(page_url, source=Source.CLI, html=sample.text, content_type="text/html",
                             limits=limits, synthetic_url=True)
    return Capture.build(page_url, source=Source.CLI, limits=limits, content_type="application/javascript",
                         scripts=[{"text": sample.text, "url": page_url + ".js", "inline": False}],
                         synthetic_url=True)
