"""Where the checkout and the labelled corpus are; corpus tests skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


DATA_DIR = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))


def corpus_file(name: str) -> Path:
    """The path of a corpus file; tests using it skip with a reason when it is absent."""
    return DATA_DIR / name


needs_corpus = pytest.mark.skipif(
    not (DATA_DIR / "js_corpus.train.jsonl.gz").exists(),
    reason=f"labelled corpus not found at {DATA_DIR} (set MALWARESNIPPER_DATA); CI has it",
)

