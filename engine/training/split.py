"""A deterministic train/dev split grouped by ``split_group``.

Every row of one group lands on the same side, so no package, malware family, kit or domain is
on both sides and the dev figures measure generalisation to unseen groups. The side is a hash of
the group name (not a random draw), so the split is the same on every machine and run, and
adding rows never moves an existing group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

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


# -- grouped k-fold cross-validation -----------------------------------------------------------

#: Folds and seed of the cross-validation that ``train`` calibrates on and ``cv`` reports.
CV_FOLDS = 5
CV_SEED = 20260101


class FoldPlan:
    """Which of ``k`` folds each row belongs to, with whole groups in one fold.

    A group is ``split_group``, merged across files and kinds where rows share a key: the same
    ``split_group`` string (an npm package's HTML pages and scripts), the same URL host, and the
    same registrable domain unless some file splits that domain by host (hosting platforms,
    whose sites are split by host on purpose). The v2 URL file groups by its own hash of the
    domain, so without this merge one site could sit in a training fold through v1 and in the
    held-out fold through v2.

    A merged group's fold is a seeded hash of its smallest ``split_group`` name: the same on
    every machine and run, independent of row order, and a new seed draws another assignment.
    """

    def __init__(self, corpora: Iterable[Any], *, folds: int = CV_FOLDS, seed: int = CV_SEED) -> None:
        if folds < 2:
            raise ValueError(f"cross-validation needs at least 2 folds, not {folds}")
        self.folds = folds
        self.seed = seed
        parent: dict[str, str] = {}

        def find(key: str) -> str:
            root = parent.setdefault(key, key)
            while root != parent[root]:
                root = parent[root]
            while parent[key] != root:  # path compression
                parent[key], key = root, parent[key]
            return root

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the smaller name stays the root

        corpora = list(corpora)
        split_domains: set[str] = set()
        for corpus in corpora:
            groups_of_domain: dict[str, set[str]] = {}
            for s in corpus.samples:
                domain = s.meta.get("reg_domain") if s.kind == "url" else None
                if domain:
                    groups_of_domain.setdefault(domain, set()).add(s.group)
            split_domains |= {d for d, groups in groups_of_domain.items() if len(groups) > 1}
        for corpus in corpora:
            for s in corpus.samples:
                key = "g:" + s.group
                find(key)
                if s.kind != "url":
                    continue
                host = s.meta.get("host")
                if host:
                    union(key, "~h:" + str(host).lower())
                domain = s.meta.get("reg_domain")
                if domain and domain not in split_domains:
                    union(key, "~d:" + str(domain).lower())
        # Group keys ("g:...") sort before host and domain keys ("~h:", "~d:"), so a merged
        # group's root is its smallest split_group.
        self._fold_of_root: dict[str, int] = {}
        self._root_of_group = {key[2:]: find(key) for key in list(parent) if key.startswith("g:")}

    def _hash_fold(self, name: str) -> int:
        digest = hashlib.sha256(f"cv:{self.seed}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.folds

    def fold_of(self, group: str) -> int:
        """The fold of ``group`` (a ``split_group``; groups never seen fall back to their name)."""
        root = self._root_of_group.get(group, "g:" + group)
        fold = self._fold_of_root.get(root)
        if fold is None:
            fold = self._fold_of_root[root] = self._hash_fold(root[2:])
        return fold

    def merged_group(self, group: str) -> str:
        """The name of the merged group ``group`` belongs to (for checks and reports)."""
        return self._root_of_group.get(group, "g:" + group)
