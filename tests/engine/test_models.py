"""Model files load only through the manifest: tampered or mismatched files are refused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import sklearn

from malwaresnipper.engine.errors import ModelError
from malwaresnipper.engine.models import MODEL_FILES, default_models_dir, load_model, load_models
from malwaresnipper.engine.training.synthetic import write_all
from malwaresnipper.engine.training.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    train(write_all(root / "data", n=30), root / "models", quiet=True)
    return root / "models"


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _edit_manifest(folder: Path, **changes: str) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_untouched_models_load(trained: Path) -> None:
    loaded = load_models(trained)
    assert set(loaded.bundles) == {"js", "url", "html"}
    assert loaded.problems == {}
    assert all(v.startswith(k.split("_")[0]) for k, v in loaded.versions.items())


def test_tampered_model_file_is_refused(trained: Path, tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path / "m")
    path = folder / MODEL_FILES["js"]
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_model(folder, "js")
    # The others still load; the refused one is reported with the reason.
    loaded = load_models(folder)
    assert "js" not in loaded.bundles and "does not match" in loaded.problems["js"]
    assert {"url", "html"} <= set(loaded.bundles)


def test_swapped_model_file_is_refused(trained: Path, tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path / "m")
    (folder / MODEL_FILES["js"]).write_bytes((folder / MODEL_FILES["url"]).read_bytes())
    with pytest.raises(ModelError, match="refusing to load"):
        load_model(folder, "js")


def test_other_sklearn_minor_version_is_refused_with_retrain_hint(trained: Path, tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path / "m")
    _edit_manifest(folder, sklearn_version="0.24.2")
    with pytest.raises(ModelError) as info:
        load_model(folder, "url")
    message = str(info.value)
    assert "trained with scikit-learn 0.24.2" in message
    assert sklearn.__version__ in message
    assert "malwaresnipper train" in message


def test_other_sklearn_patch_release_only_warns(trained: Path, tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path / "m")
    major, minor = sklearn.__version__.split(".")[:2]
    _edit_manifest(folder, sklearn_version=f"{major}.{minor}.999")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = load_model(folder, "url")
    assert bundle.kind == "url"
    assert any(f"{major}.{minor}.999" in str(w.message) for w in caught)


def test_feature_version_mismatch_is_refused(trained: Path, tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path / "m")
    _edit_manifest(folder, feature_version="0-old")
    with pytest.raises(ModelError, match="feature version 0-old"):
        load_model(folder, "html")


def test_missing_manifest_is_reported_not_raised(tmp_path: Path) -> None:
    loaded = load_models(tmp_path)
    assert loaded.bundles == {}
    assert "no model manifest" in loaded.problems["js"]


def test_shipped_models_match_their_manifest() -> None:
    """The committed models/ folder loads as is (a fresh clone scans with it)."""
    folder = default_models_dir()
    if not (folder / "manifest.json").exists():
        pytest.fail(f"no trained models committed in {folder}")
    loaded = load_models(folder)
    assert loaded.problems == {}, loaded.problems
    assert set(loaded.bundles) == {"js", "url", "html"}
    total = sum((folder / f).stat().st_size for f in MODEL_FILES.values())
    assert total < 20 * 1024 * 1024
