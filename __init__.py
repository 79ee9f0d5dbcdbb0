"""MalwareSnipper: a real-time web threat gateway.

The repo's folders are installed under this namespace (see pyproject.toml):
``malwaresnipper.engine`` is the pure risk engine, ``malwaresnipper.addon`` the mitmproxy addon,
``malwaresnipper.server`` the API, event stream and scan store, ``malwaresnipper.cli`` the command.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("malwaresnipper")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
