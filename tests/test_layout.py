"""The test tree's rules: shared code comes from ``helpers``, fixtures from ``conftest.py`` files.

A test module importing another test module (or a ``conftest``) by bare name works only by the
accident of pytest's ``sys.path`` insertion, and importing a fixture makes pyflakes report a
redefinition wherever a test names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _local_modules() -> set[str]:
    """Names a bare import could reach in the test tree: every module outside ``helpers``."""
    return {p.stem for p in TESTS.rglob("*.py") if "helpers" not in p.relative_to(TESTS).parts}


def _fixtures() -> set[str]:
    """Every fixture defined in a conftest.py."""
    names = set()
    for conftest in TESTS.rglob("conftest.py"):
        for node in ast.parse(conftest.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                    "fixture" in ast.unparse(d) for d in node.decorator_list):
                names.add(node.name)
    return names


#: The extension rig (test_extension_browser) defines module-scoped ``gateway``/``browser``/``site``
#: fixtures that shadow the dashboard's in tests/integration/conftest.py; the two modules that reuse
#: it import it until the rig moves to a folder of its own with its own conftest.py.
RIG_USERS = {"integration/test_extension_feedback.py", "integration/test_extension_lookup.py"}


def test_no_test_module_imports_another_or_a_fixture() -> None:
    local, fixtures = _local_modules(), _fixtures()
    assert {"postgres_dsn", "browser", "gateway", "shared_redis_stream"} <= fixtures  # the check sees them
    wrong = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split(".")[0]
                if top == "test_extension_browser" and str(path.relative_to(TESTS)) in RIG_USERS:
                    continue
                if top in local:
                    wrong.append(f"{path.relative_to(TESTS)}:{node.lineno} imports {node.module}")
                if top == "helpers":
                    wrong += [f"{path.relative_to(TESTS)}:{node.lineno} imports fixture {a.name}"
                              for a in node.names if a.name in fixtures]
            elif isinstance(node, ast.Import):
                wrong += [f"{path.relative_to(TESTS)}:{node.lineno} imports {a.name}"
                          for a in node.names if a.name.split(".")[0] in local]
    assert not wrong, "\n".join(wrong)


def test_helpers_define_no_fixtures() -> None:
    for path in sorted((TESTS / "helpers").glob("*.py")):
        source = path.read_text()
        assert "pytest.fixture" not in source, f"{path.name}: fixtures belong in a conftest.py"
