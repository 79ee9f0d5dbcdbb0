"""Entry point for ``mitmdump -s addon/mitmdump_entry.py``: loads the gateway addon.

mitmproxy's script loader puts this file's folder (``addon/``) first on ``sys.path``. The file is
named unlike the package so nothing here can shadow the installed ``malwaresnipper`` package, in
mitmdump or in the scan workers (which inherit ``sys.path``). Everything else lives in
``malwaresnipper.addon.gateway``.
"""

from malwaresnipper.addon.gateway import Gateway

addons = [Gateway()]
