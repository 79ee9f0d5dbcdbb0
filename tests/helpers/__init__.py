"""Code the tests share (imported as ``helpers.<module>``; pyproject.toml puts ``tests/`` on ``sys.path``).

Fixtures are not here: they live in the ``conftest.py`` of the folder whose tests use them, so no
test module imports a fixture.
"""
