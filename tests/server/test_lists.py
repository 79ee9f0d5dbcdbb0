"""The list service over a real SQLite store: one versioned snapshot of the API's entries, read
in the normal form the engine matches, whatever was stored; the config files' entries checked
with them at request time."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from malwaresnipper.engine.lists import ListSnapshot, entries_from_strings
from malwaresnipper.server.lists import ListService
from malwaresnipper.server.store import SqliteScanStore


@pytest.fixture
async def store(tmp_path: Path):
    st = SqliteScanStore(tmp_path / "history.sqlite3")
    await st.open()
    try:
        yield st
    finally:
        await st.close()


async def test_entries_stored_before_normalisation_are_read_in_their_normal_form(store, caplog) -> None:
    """A history written by an older gateway holds entries as typed: they still match as the
    engine reads them, and one that is no entry at all is skipped, with a warning, not fatal."""
    await store.add_entry("block", "https://Evil.example:443/Login", "url", "")
    await store.add_entry("block", "Bad.Example.", "domain", "")
    await store.add_entry("allow", "not an entry at all", "domain", "")
    lists = ListService()
    seen: list[ListSnapshot] = []
    with caplog.at_level(logging.WARNING, "malwaresnipper.server.lists"):
        await lists.attach(store, seen.append)
    assert any("not an entry at all" in r.getMessage() for r in caplog.records)
    assert lists.lookup("https://evil.example/Login").blocked is not None
    assert lists.lookup("https://www.bad.example/x").blocked is not None
    assert lists.lookup("https://evil.example/login").blocked is None
    assert lists.snapshot.version == 1 and seen == [], "the first snapshot is loaded, not announced"
    await lists.add("block", "https://Other.example/Path", "url")
    assert [s.version for s in seen] == [2] and seen[0] is lists.snapshot
    assert lists.lookup("https://other.example/Path").blocked is not None
    await lists.detach()


async def test_add_refuses_an_entry_of_another_kind_and_changes_nothing(store) -> None:
    lists = ListService()
    await lists.attach(store)
    with pytest.raises(ValueError, match="is a url, not a domain"):
        await lists.add("block", "https://evil.example/x", "domain")
    with pytest.raises(ValueError, match="unknown list"):
        await lists.add("grey", "evil.example", "domain")
    assert lists.version == 1 and await store.list_entries("block") == []
    await lists.detach()


async def test_remove_takes_the_entry_as_written_or_in_its_normal_form(store) -> None:
    lists = ListService()
    await lists.attach(store)
    item = await lists.add("allow", "*.Corp.Example.", "domain")
    assert item["entry"] == "corp.example"
    assert await lists.remove("allow", "nothing.example") is None and lists.version == 2
    assert await lists.remove("allow", "CORP.example") == "corp.example"
    assert lists.version == 3 and lists.items("allow") == [] and await store.list_entries("allow") == []
    assert lists.lookup("https://a.corp.example/").allowed is None
    await lists.detach()


async def test_the_config_files_entries_and_an_allowance_for_now_are_checked_without_a_store() -> None:
    block = entries_from_strings(["https://Phish.example/Account"], classification="phishing", source="feed.txt")
    lists = ListService((entries_from_strings([]), block))
    hit = lists.lookup("https://phish.example/Account").blocked
    assert hit is not None and hit.kind == "url" and hit.hit.classification == "phishing"
    before = lists.version
    lists.allow_for_now("shop.example")
    assert lists.version == before + 1, "an allowance is a list change: cached verdicts end"
    assert lists.lookup("https://www.shop.example/").allowed is not None
    with pytest.raises(RuntimeError, match="not attached"):  # a stored entry needs the store
        await lists.add("block", "evil.example", "domain")
    assert lists.version == before + 1
