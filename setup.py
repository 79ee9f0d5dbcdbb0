"""Package discovery for a repository whose root is the package (everything else: pyproject.toml).

``package-dir`` maps ``malwaresnipper`` to the root, and setuptools' ``find`` cannot put that name
in front of what it finds, so the list is computed here: every folder under the root (code and
data-only folders alike, as namespace packages) as ``malwaresnipper.<folder>``, except the ones
that must not be installed: the tests, benchmarks and scripts, ``certs/`` (where a CA key may sit)
and the docs.
"""

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

NOT_INSTALLED = ("tests", "benchmarks", "scripts", "certs", "docs", "build", "dist")


def packages() -> list[str]:
    """``malwaresnipper`` and its sub-packages; a folder whose name is not an identifier is not one."""
    found = find_namespace_packages(".", exclude=[f"{name}{tail}" for name in NOT_INSTALLED for tail in ("", ".*")])
    return ["malwaresnipper"] + sorted(
        f"malwaresnipper.{name}" for name in found if all(part.isidentifier() and part != "__pycache__" for part in name.split("."))
    )


class BuildPy(build_py):
    """Leave this file out: at the root it would otherwise ship as ``malwaresnipper.setup``."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if (m[0], m[1]) != ("malwaresnipper", "setup")]


setup(packages=packages(), cmdclass={"build_py": BuildPy})
