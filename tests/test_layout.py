"""The design's boundaries hold in the code: who may import whom (docs/design.md, "Layout")."""

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

from study.core.errors import UserError
from study.core.twin import BACKENDS, Twin, keras_backend, load, loadable_here, process_groups

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
    if loadable_here(backend):
        twin = load(backend)
        assert isinstance(twin, Twin) and twin.NAME == backend
        return
    # Keras already runs on another backend in this process: check in a process of its own.
    check = f"from study.core.twin import Twin, load; t = load({backend!r}); assert isinstance(t, Twin); print(t.NAME)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == backend


def test_a_second_keras_backend_in_one_process_is_a_clear_error():
    here = next(b for b in BACKENDS if keras_backend(b) and loadable_here(b))
    load(here)  # Keras is now imported on this backend
    other = next(b for b in BACKENDS if keras_backend(b) and b != here)
    assert not loadable_here(other)
    with pytest.raises(UserError, match=f"{other} needs a process of its own"):
        load(other)


def test_each_keras_backend_runs_in_a_process_group_of_its_own():
    assert process_groups(("keras", "lightning")) == [("keras", "lightning")]
    assert process_groups(("lightning",)) == [("lightning",)]
    assert process_groups(BACKENDS) == [("keras", "lightning"), ("keras-jax",), ("keras-torch",)]
    assert process_groups(("keras-jax", "lightning"), "lightning") == [("keras-jax", "lightning")]
    # every group loads the probe twin too, so a Keras probe twin rules out the other Keras backends
    assert process_groups(("keras-jax", "lightning"), "keras-jax") == [("keras-jax", "lightning")]
    with pytest.raises(UserError, match="the probe twin keras-torch cannot run beside keras-jax"):
        process_groups(("keras-torch", "keras-jax"), "keras-torch")


def test_the_loader_names_what_a_twin_lacks(monkeypatch):
    broken = types.ModuleType("keras_impl.twin")
    broken.NAME, broken.PACKAGES = "keras", ()
    monkeypatch.setitem(sys.modules, "keras_impl.twin", broken)
    with pytest.raises(TypeError, match="missing build, count_trainable_params"):
        load("keras")
    with pytest.raises(ValueError, match="backend must be one of keras, keras-jax, keras-torch, lightning"):
        load("jax")
