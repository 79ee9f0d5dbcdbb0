"""Options mean what the user set: an option given a value overrides the config file, even when
that value equals the built-in default; an option left alone defers to the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import exceptions, hooks
from mitmproxy.test import taddons

from malwaresnipper.addon.gateway import Gateway


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "malwaresnipper.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


FILE = "[proxy]\nmode = 'block'\nworkers = 1\nfail_closed = true\n[server]\napi_port = 5123\n"


def test_an_option_set_to_its_default_still_beats_the_config_file(tmp_path: Path) -> None:
    gw = Gateway()
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
    gw = Gateway()
    with taddons.context(gw) as tctx:
        tctx.configure(gw, malwaresnipper_config=config(tmp_path, FILE))
        with pytest.raises(exceptions.OptionsError, match="'panic' is not one of"):
            tctx.configure(gw, malwaresnipper_mode="panic")
        with pytest.raises(exceptions.OptionsError, match="workers must be >= 1"):
            tctx.configure(gw, malwaresnipper_workers=0)
        tctx.configure(gw, malwaresnipper_budget_ms=300)  # a later, valid update
        assert gw.effective.mode == "block" and gw.effective.settings.proxy.workers == 1
        assert gw.effective.budget_s == 0.3


def test_values_set_before_the_addon_saw_them_count_too(tmp_path: Path) -> None:
    """mitmdump applies `--set` before a script's addon is configured, then configures it with
    every option at once (so does `malwaresnipper run`)."""
    gw = Gateway()
    with taddons.context(gw) as tctx:
        tctx.options.update(malwaresnipper_config=config(tmp_path, FILE), malwaresnipper_mode="monitor")
        gw.effective = None  # as if configure had not run for that update (the script loader's case)
        tctx.master.addons.invoke_addon_sync(gw, hooks.ConfigureHook(set(tctx.options.keys())))
        assert gw.effective.mode == "monitor"  # given, though it is the default
        assert gw.effective.settings.proxy.workers == 1  # not given: the file's


async def test_running_configures_an_addon_that_was_never_configured(tmp_path: Path) -> None:
    """mitmproxy calls configure only on a change: an embedding master that changes no option
    must still start the services (the README's `malwaresnipper run` was such a master)."""
    gw = Gateway()
    with taddons.context(gw) as tctx:
        tctx.options.update(malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False,
                            malwaresnipper_workers=1)
        gw.effective = None
        await gw.running()
        try:
            assert gw.effective is not None and gw.service is not None
        finally:
            await gw.done()
