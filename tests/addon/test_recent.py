"""The gateway's repeat table: a verdict is reused only for the very same URL and bytes."""

from __future__ import annotations

from malwaresnipper.addon.recent import BodyKey, RecentVerdicts


def test_reused_only_for_identical_bytes() -> None:
    recent = RecentVerdicts(60.0)
    recent.put(recent.key("https://a.example/", b"<p>one</p>"), "html", "s1", "verdict-1", lists_version=1)
    again = recent.get(recent.key("https://a.example/", bytes(bytearray(b"<p>one</p>"))), lists_version=1)
    assert again is not None and again.scan_id == "s1" and again.verdict == "verdict-1"
    # same length, other bytes
    assert recent.get(recent.key("https://a.example/", b"<p>two</p>"), lists_version=1) is None
    assert recent.get(recent.key("https://b.example/", b"<p>one</p>"), lists_version=1) is None


def test_latest_body_of_a_url_and_length_wins() -> None:
    recent = RecentVerdicts(60.0)
    recent.put(recent.key("https://a.example/", b"aaaa"), "js", "s1", "v1", lists_version=1)
    recent.put(recent.key("https://a.example/", b"bbbb"), "js", "s2", "v2", lists_version=1)
    assert recent.get(recent.key("https://a.example/", b"aaaa"), lists_version=1) is None
    assert recent.get(recent.key("https://a.example/", b"bbbb"), lists_version=1).scan_id == "s2"


def test_bounded_by_the_bytes_it_keeps() -> None:
    recent = RecentVerdicts(60.0, max_bytes=10)
    recent.put(recent.key("u1", b"12345"), "js", "s1", "v1", lists_version=1)
    recent.put(recent.key("u2", b"12345"), "js", "s2", "v2", lists_version=1)
    recent.put(recent.key("u3", b"123"), "js", "s3", "v3", lists_version=1)  # 13 bytes: the oldest goes
    assert recent.get(recent.key("u1", b"12345"), lists_version=1) is None
    assert recent.get(recent.key("u2", b"12345"), lists_version=1) is not None
    recent.put(recent.key("big", b"x" * 11), "js", "s4", "v4", lists_version=1)  # larger than the whole table
    assert recent.get(recent.key("big", b"x" * 11), lists_version=1) is None
    assert recent.get(recent.key("u3", b"123"), lists_version=1) is not None


def test_expired_entries_are_not_reused() -> None:
    recent = RecentVerdicts(0.0)
    recent.put(recent.key("u", b"x"), "html", "s1", "v1", lists_version=1)  # window 0: nothing remembered
    assert recent.get(recent.key("u", b"x"), lists_version=1) is None


def test_body_keys_tell_equal_length_bodies_apart_in_a_dict() -> None:
    inflight = {BodyKey("u", b"abc"): "task-1", BodyKey("u", b"abd"): "task-2"}
    assert inflight[BodyKey("u", bytes(bytearray(b"abc")))] == "task-1"
    assert inflight[BodyKey("u", b"abd")] == "task-2"
    assert BodyKey("u", b"abe") not in inflight


def test_a_verdict_is_reused_only_under_the_list_version_it_was_computed_under() -> None:
    recent = RecentVerdicts(60.0)
    key = recent.key("https://a.example/app.js", b"var a = 1;")
    recent.put(key, "js", "s1", "benign", lists_version=3)
    assert recent.get(key, lists_version=3) is not None
    assert recent.get(key, lists_version=4) is None  # a list changed since: scanned again
    assert recent.get(key, lists_version=3) is None  # and the stale entry is gone


async def test_a_scan_in_flight_is_shared_only_under_its_list_version() -> None:
    import asyncio

    recent = RecentVerdicts(60.0)
    key = recent.key("https://a.example/", b"<p>x</p>")
    gate = asyncio.Event()
    task = asyncio.create_task(gate.wait())
    recent.scanning(key, task, lists_version=7)
    assert recent.in_flight(recent.key("https://a.example/", b"<p>x</p>"), lists_version=7) is task
    assert recent.in_flight(key, lists_version=8) is None
    gate.set()
    await task
    assert recent.in_flight(key, lists_version=7) is None  # finished: no longer shared
