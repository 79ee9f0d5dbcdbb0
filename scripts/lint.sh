#!/usr/bin/env bash
# Lint (ruff) and type-check (mypy) the checkout, with the settings in pyproject.toml.
# .ci/run runs this before the test suite; `pip install -e '.[test]'` installs both tools.
# Usage: scripts/lint.sh [ruff|mypy]   (both when no argument: what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
what="${1:-all}"

if [ "$what" = all ] || [ "$what" = ruff ]; then
    python3 -m ruff check .
fi

if [ "$what" = all ] || [ "$what" = mypy ]; then
    # The repository root is the package: mypy finds `malwaresnipper` through a folder holding a
    # symlink of that name to this checkout (see [tool.mypy] in pyproject.toml for why).
    shim=$(mktemp -d)
    trap 'rm -rf "$shim"' EXIT
    ln -s "$root" "$shim/malwaresnipper"
    (cd "$shim" && MYPYPATH="$shim" python3 -m mypy --config-file "$root/pyproject.toml" \
        --cache-dir "$root/.mypy_cache" -p malwaresnipper)
    # The tests, with tests/ as a module root as pytest's `pythonpath` makes it (`conftest`,
    # `addon.test_mime`, `helpers.proxy`, ...); tests/helpers is checked through the imports.
    # Relaxed settings for them: [[tool.mypy.overrides]] in pyproject.toml.
    mapfile -t test_files < <(cd "$root" && find tests -name '*.py' -not -path 'tests/helpers/*' | sort | sed 's#^#malwaresnipper/#')
    (cd "$shim" && MYPYPATH="$shim:$shim/malwaresnipper/tests" python3 -m mypy --config-file "$root/pyproject.toml" \
        --cache-dir "$root/.mypy_cache/tests" --explicit-package-bases "${test_files[@]}")
fi
