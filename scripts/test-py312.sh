#!/usr/bin/env bash
# mitmproxy 12 on Python 3.12: the engine, the addon, the real-mitmdump integration tests and the
# multi-gateway (Redis, PostgreSQL) tests.
# (python3 is 3.11 with mitmproxy 11; we support both.) Skipped with a message where no 3.12 exists.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! PYENV_VERSION=3.12.1 python3.12 --version >/dev/null 2>&1; then
    echo "python3.12 not found: skipping the mitmproxy 12 run" >&2
    exit 0
fi
venv="${MALWARESNIPPER_VENV312:-.venv312}"
[ -x "$venv/bin/python" ] || PYENV_VERSION=3.12.1 python3.12 -m venv "$venv"
"$venv/bin/python" -m pip install -q -e '.[test]'
"$venv/bin/python" -c 'import mitmproxy.version as v; print("mitmproxy", v.VERSION, "on Python 3.12")'
"$venv/bin/python" -m pytest -q -m "not corpus" tests/engine tests/addon tests/integration/test_proxy_*.py \
    tests/integration/test_multi_gateway.py tests/server/test_redis_bus.py "$@"
