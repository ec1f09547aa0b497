"""The design's boundaries hold in the code: who may import whom (docs/design.md, "Layout")."""

import ast
import sys
import types
from pathlib import Path

import pytest

from study.core.twin import BACKENDS, Twin, load

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"keras", "tensorflow", "torch", "pytorch_lightning", "lightning", "torchmetrics", "jax"}
TWINS = {"keras_impl", "lightning_impl"}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, and the full dotted names under `study`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
            if node.module == "study":  # `from study import x` imports study.x
                names |= {f"study.{alias.name}" for alias in node.names}
    return names


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("study/core"), ids=lambda p: p.name)
def test_the_contract_imports_no_framework_and_no_application_module(path):
    for name in imported_packages(path):
        assert name.split(".")[0] not in FRAMEWORKS | TWINS, name
        assert not name.startswith("study.") or name.startswith("study.core"), name


@pytest.mark.parametrize("path", [p for p in modules("study") if "core" not in p.parts], ids=lambda p: p.name)
def test_the_application_reaches_twins_only_through_the_loader(path):
    for name in imported_packages(path):
        assert name.split(".")[0] not in FRAMEWORKS | TWINS, name


@pytest.mark.parametrize(
    "path", modules("keras_impl") + modules("lightning_impl"), ids=lambda p: p.parent.name + "/" + p.name
)
def test_twins_import_only_the_contract(path):
    for name in imported_packages(path):
        assert not name.startswith("study") or name.startswith("study.core"), name
        assert name.split(".")[0] not in TWINS - {path.parent.name}, name  # never the other twin


def test_both_twin_folders_list_the_same_modules():
    listing = {twin: sorted(p.name for p in (ROOT / twin).glob("*.py")) for twin in TWINS}
    assert listing["keras_impl"] == listing["lightning_impl"], listing


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_twin_implements_the_protocol(backend):
    twin = load(backend)
    assert isinstance(twin, Twin) and twin.NAME == backend


def test_the_loader_names_what_a_twin_lacks(monkeypatch):
    broken = types.ModuleType("keras_impl.twin")
    broken.NAME, broken.PACKAGES = "keras", ()
    monkeypatch.setitem(sys.modules, "keras_impl.twin", broken)
    with pytest.raises(TypeError, match="missing build, count_trainable_params"):
        load("keras")
    with pytest.raises(ValueError, match="backend must be one of keras, lightning"):
        load("jax")
