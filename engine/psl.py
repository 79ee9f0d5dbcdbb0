"""Registrable domains and public suffixes from the bundled public suffix list.

We use the ``publicsuffixlist`` package's own snapshot (``public_suffix_list.dat`` shipped inside
the wheel): constructing :class:`PublicSuffixList` with no source reads that file and nothing is
downloaded at run time (the package's ``update`` module, which would fetch, is never imported).
Private suffixes (``github.io``, ``blogspot.com``, ``000webhostapp.com`` ...) count as suffixes,
so each customer of a hosting platform is its own registrable domain: that is what a browser's
same-site rule does, and what the URL corpus's ``reg_domain`` column uses.

Lookups are cached: the same hosts come back again and again in a proxy's traffic.
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList

#: Where the snapshot comes from (shown by ``--version`` style diagnostics and the tests).
PSL_SOURCE = "publicsuffixlist (bundled snapshot)"


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    """The parsed list; built once per process (about 50 ms) on first use."""
    return PublicSuffixList()


def psl_version() -> str:
    """The ``publicsuffixlist`` package version, whose last part is the snapshot date."""
    import publicsuffixlist

    return str(getattr(publicsuffixlist, "__version__", "unknown"))


def _clean(host: str) -> str:
    return host.strip().strip(".").lower()


@lru_cache(maxsize=65_536)
def registrable_domain(host: str) -> str:
    """The registrable domain ("eTLD+1") of ``host``, or ``host`` itself when it has none.

    ``www.example.co.uk`` -> ``example.co.uk``; ``user.github.io`` -> ``user.github.io``;
    ``com`` -> ``com``; an IP literal is returned unchanged. Never raises.
    """
    host = _clean(host)
    if not host or _looks_like_ip(host):
        return host
    try:
        found = _psl().privatesuffix(host)
    except Exception:  # noqa: BLE001 - odd input (surrogates, empty labels) must not crash a scan
        return host
    return found or host


@lru_cache(maxsize=65_536)
def public_suffix(host: str) -> str:
    """The public suffix of ``host`` (``co.uk``, ``com``, ``github.io``); '' for IPs or errors."""
    host = _clean(host)
    if not host or _looks_like_ip(host):
        return ""
    try:
        return _psl().publicsuffix(host) or ""
    except Exception:  # noqa: BLE001
        return ""


@lru_cache(maxsize=65_536)
def is_known_suffix(suffix: str) -> bool:
    """True when ``suffix`` is listed in the PSL (unknown TLDs are suffixes only by assumption)."""
    suffix = _clean(suffix)
    if not suffix:
        return False
    try:
        return _psl().is_public(suffix, accept_unknown=False)
    except Exception:  # noqa: BLE001
        return False


def _looks_like_ip(host: str) -> bool:
    if host.startswith("[") or ":" in host:
        return True
    last = host.rsplit(".", 1)[-1]
    # A last label of digits or 0x-hex is never a TLD: WHATWG parses such hosts as IPv4.
    return last.isdigit() or (last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:]))
