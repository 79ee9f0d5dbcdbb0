#!/usr/bin/env bash
# Set up and run the gateway on embedded defaults (SQLite history, 127.0.0.1 ports).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
exec malwaresnipper run "$@"
