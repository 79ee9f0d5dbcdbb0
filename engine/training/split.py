"""A deterministic train/dev split grouped by ``split_group``.

Every row of one group lands on the same side, so no package, malware family, kit or domain is
on both sides and the dev figures measure generalisation to unseen groups. The side is a hash of
the group name (not a random draw), so the split is the same on every machine and run, and
adding rows never moves an existing group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Salt of the dev split; changing it draws another split.
SPLIT_SALT = "malwaresnipper-dev-v1:"
DEV_PERCENT = 20


def is_dev(group: str, *, dev_percent: int = DEV_PERCENT, salt: str = SPLIT_SALT) -> bool:
    """True when ``group`` belongs to the dev side."""
    digest = hashlib.sha256((salt + str(group)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < dev_percent


def grouped_split(
    rows: Iterable[T], group_of: Callable[[T], str], *, dev_percent: int = DEV_PERCENT
) -> tuple[list[T], list[T]]:
    """Split ``rows`` into (train, dev) by their group."""
    train: list[T] = []
    dev: list[T] = []
    for row in rows:
        (dev if is_dev(group_of(row), dev_percent=dev_percent) else train).append(row)
    return train, dev


def overlapping_groups(train: Sequence[T], dev: Sequence[T], group_of: Callable[[T], str]) -> set[str]:
    """Groups present on both sides (always empty for :func:`grouped_split`; a test checks)."""
    return {group_of(r) for r in train} & {group_of(r) for r in dev}
