"""The public suffix lookups: right answers from the bundled snapshot, no network, cached."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import publicsuffixlist
import pytest

from malwaresnipper.engine import psl


@pytest.mark.parametrize(
    ("host", "registrable", "suffix"),
    [
        ("www.example.com", "example.com", "com"),
        ("a.b.example.co.uk", "example.co.uk", "co.uk"),
        ("WWW.Example.COM.", "example.com", "com"),
        ("user.github.io", "user.github.io", "github.io"),  # private suffix: each user is a site
        ("x.y.blogspot.com", "y.blogspot.com", "blogspot.com"),
        ("xn--80ak6aa92e.com", "xn--80ak6aa92e.com", "com"),
        ("shop.example.unknowntld", "example.unknowntld", "unknowntld"),
    ],
)
def test_registrable_domain_and_suffix(host: str, registrable: str, suffix: str) -> None:
    assert psl.registrable_domain(host) == registrable
    assert psl.public_suffix(host) == suffix


@pytest.mark.parametrize("host", ["192.168.1.1", "3232235777", "0x7f.1", "::1", "[2001:db8::1]"])
def test_ip_literals_are_their_own_registrable_domain(host: str) -> None:
    assert psl.registrable_domain(host) == host.lower()
    assert psl.public_suffix(host) == ""


@pytest.mark.parametrize("host", ["", "com", "co.uk", "..", "a..b", "\udcff.com", "x" * 300])
def test_odd_hosts_never_raise(host: str) -> None:
    assert isinstance(psl.registrable_domain(host), str)
    assert isinstance(psl.public_suffix(host), str)


def test_public_suffix_itself_has_no_parent() -> None:
    assert psl.registrable_domain("co.uk") == "co.uk"
    assert psl.is_known_suffix("co.uk")
    assert psl.is_known_suffix("github.io")
    assert not psl.is_known_suffix("example.com")
    assert not psl.is_known_suffix("definitelynotatld")


def test_uses_the_bundled_snapshot_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the list must read the wheel's data file: any socket use fails this test."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the public suffix list tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    psl._psl.cache_clear()
    psl.registrable_domain.cache_clear()
    try:
        assert psl.registrable_domain("login.example.co.uk") == "example.co.uk"
    finally:
        psl._psl.cache_clear()
        psl.registrable_domain.cache_clear()
    bundled = Path(publicsuffixlist.__file__).parent / "public_suffix_list.dat"
    assert bundled.is_file() and bundled.stat().st_size > 100_000
    # The package's downloader (which imports requests and fetches) is never imported.
    assert "publicsuffixlist.update" not in sys.modules
    assert psl.psl_version() == publicsuffixlist.__version__


def test_lookups_are_cached() -> None:
    psl.registrable_domain.cache_clear()
    psl.registrable_domain("cache-test.example.org")
    psl.registrable_domain("cache-test.example.org")
    info = psl.registrable_domain.cache_info()
    assert info.hits >= 1 and info.misses >= 1
