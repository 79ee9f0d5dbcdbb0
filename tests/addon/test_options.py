"""The options addon, alone in a taddons context: an option given a value overrides the config
file, even when that value equals the built-in default; an option left alone defers to the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import exceptions, hooks
from mitmproxy.test import taddons

from malwaresnipper.addon.options import GatewayOptions


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "malwaresnipper.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


FILE = "[proxy]\nmode = 'block'\nworkers = 1\nfail_closed = true\n[server]\napi_port = 5123\n"


def test_an_option_set_to_its_default_still_beats_the_config_file(tmp_path: Path) -> None:
    gw = GatewayOptions()
    with taddons.context(gw) as tctx:
        tctx.configure(gw, malwaresnipper_config=config(tmp_path, FILE))
        settings = gw.effective.settings
        assert (gw.effective.mode, settings.proxy.workers, gw.effective.fail_closed) == ("block", 1, True)
        assert settings.server.api_port == 5123
        # monitor, 2 workers, fail open and port 5000 are the built-in defaults: set, they count
        tctx.configure(gw, malwaresnipper_mode="monitor", malwaresnipper_workers=2,
                       malwaresnipper_fail_closed=False, malwaresnipper_api_port=5000)
        settings = gw.effective.settings
        assert (gw.effective.mode, settings.proxy.workers, gw.effective.fail_closed) == ("monitor", 2, False)
        assert settings.server.api_port == 5000 and settings.proxy.mode == "monitor"


def test_a_refused_value_does_not_count_as_set(tmp_path: Path) -> None:
    gw = GatewayOptions()
    with taddons.context(gw) as tctx:
        tctx.configure(gw, malwaresnipper_config=config(tmp_path, FILE))
        with pytest.raises(exceptions.OptionsError, match="'panic' is not one of"):
            tctx.configure(gw, malwaresnipper_mode="panic")
        with pytest.raises(exceptions.OptionsError, match="workers must be >= 1"):
            tctx.configure(gw, malwaresnipper_workers=0)
        tctx.configure(gw, malwaresnipper_budget_ms=300)  # a later, valid update
        assert gw.effective.mode == "block" and gw.effective.settings.proxy.workers == 1
        assert gw.effective.budget_s == 0.3


def _forget_effective(gw: GatewayOptions) -> None:
    """As if configure had not run for the last update (the script loader's case)."""
    gw.effective = None


def test_values_set_before_the_addon_saw_them_count_too(tmp_path: Path) -> None:
    """mitmdump applies `--set` before a script's addon is configured, then configures it with
    every option at once (so does `malwaresnipper run`)."""
    gw = GatewayOptions()
    with taddons.context(gw) as tctx:
        tctx.options.update(malwaresnipper_config=config(tmp_path, FILE), malwaresnipper_mode="monitor")
        _forget_effective(gw)
        tctx.master.addons.invoke_addon_sync(gw, hooks.ConfigureHook(set(tctx.options.keys())))
        assert gw.effective.mode == "monitor"  # given, though it is the default
        assert gw.effective.settings.proxy.workers == 1  # not given: the file's


def test_a_bad_list_file_is_refused_at_once_and_the_lists_are_loaded_once(tmp_path: Path) -> None:
    """A list that half-loads would silently stop protecting: a bad line is an options error."""
    bad = tmp_path / "block.txt"
    bad.write_text("evil.example\nnot a domain at all\n")
    gw = GatewayOptions()
    with taddons.context(gw) as tctx:
        with pytest.raises(exceptions.OptionsError, match="block.txt:2"):
            tctx.configure(gw, malwaresnipper_config=config(tmp_path, f'[engine.reputation]\nblocklist_files = ["{bad}"]\n'))
        bad.write_text("evil.example\n")
        tctx.configure(gw, malwaresnipper_config=config(tmp_path, f'[engine.reputation]\nblocklist_files = ["{bad}"]\n'))
        allow, block = gw.effective.config_lists
        assert block.match_domain("www.evil.example") and not len(allow)


def test_the_stream_threshold_follows_the_body_cap_unless_the_user_set_their_own(tmp_path: Path) -> None:
    gw = GatewayOptions()
    with taddons.context(gw) as tctx:
        if "stream_large_bodies" not in tctx.options:  # mitmproxy 11 defines it in proxyserver only
            tctx.options.add_option("stream_large_bodies", str | None, None, "")
        tctx.configure(gw, malwaresnipper_max_body_bytes=12345)
        assert tctx.options.stream_large_bodies == "12345"
        tctx.configure(gw, malwaresnipper_max_body_bytes=56789)
        assert tctx.options.stream_large_bodies == "56789"
        tctx.options.update(stream_large_bodies="10m")  # the user's own choice stays
        tctx.configure(gw, malwaresnipper_max_body_bytes=9999)
        assert tctx.options.stream_large_bodies == "10m"
