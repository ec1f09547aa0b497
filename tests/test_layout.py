"""The design's boundaries hold in the code: who may import whom (docs/design.md, "Layout")."""

import ast
import re
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


@pytest.mark.quick
@pytest.mark.parametrize("path", modules("study/core"), ids=lambda p: p.name)
def test_the_contract_imports_no_framework_and_no_application_module(path):
    for name in imported_packages(path):
        assert name.split(".")[0] not in FRAMEWORKS | TWINS, name
        assert not name.startswith("study.") or name.startswith("study.core"), name


@pytest.mark.quick
@pytest.mark.parametrize("path", [p for p in modules("study") if "core" not in p.parts], ids=lambda p: p.name)
def test_the_application_reaches_twins_only_through_the_loader(path):
    for name in imported_packages(path):
        assert name.split(".")[0] not in FRAMEWORKS | TWINS, name


@pytest.mark.quick
@pytest.mark.parametrize(
    "path", modules("keras_impl") + modules("lightning_impl"), ids=lambda p: p.parent.name + "/" + p.name
)
def test_twins_import_only_the_contract(path):
    for name in imported_packages(path):
        assert not name.startswith("study") or name.startswith("study.core"), name
        assert name.split(".")[0] not in TWINS - {path.parent.name}, name  # never the other twin


def internal_imports() -> dict[str, set[str]]:
    """Each module of the product (study, keras_impl, lightning_impl) and the product's modules it
    imports anywhere in its body (function-level imports included: they are cycles all the same)."""

    def name(path: Path) -> str:
        parts = path.relative_to(ROOT).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    paths = {name(p): p for folder in ("study", "keras_impl", "lightning_impl") for p in modules(folder)}
    graph = {}
    for module, path in paths.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in paths}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    edges.add(full if full in paths else node.module)
        graph[module] = {edge for edge in edges if edge in paths} - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`: its strongly connected components of more than one module."""
    reach = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    found = {frozenset(m for m in graph if m in reach[start] and start in reach[m]) for start in graph}
    return sorted(sorted(group) for group in found if len(group) > 1)


@pytest.mark.quick
def test_no_module_imports_itself_round_a_cycle():
    """Lower modules never import higher ones, not even inside a function: the dependency graph of
    the product's modules has no cycle (a twin's port never imports its training, ...)."""
    assert cycles(internal_imports()) == []


@pytest.mark.quick
def test_a_cycle_is_seen():
    graph = internal_imports()
    graph["keras_impl.port"] = graph["keras_impl.port"] | {"keras_impl.training"}
    assert cycles(graph) == [["keras_impl.port", "keras_impl.training"]]


LOWER = ("study/configs.py", "study/files.py")  # what the study's grid and folder are: below every job


@pytest.mark.quick
@pytest.mark.parametrize("path", LOWER)
def test_the_grid_and_the_folder_import_only_the_contract(path):
    for name in imported_packages(ROOT / path):
        assert not name.startswith("study.") or name.startswith("study.core"), name


LAYERS_BELOW_A_VERDICT = ("study.measure", "study.experiment", "study.cli", "study.tracking")
TWIN_ACCESS = {"load", "loadable_here", "request_cpu_devices", "process_groups"}  # study.core.twin's way to a twin


@pytest.mark.quick
@pytest.mark.parametrize(
    "path", modules("study/verdicts") + modules("study/report"), ids=lambda p: p.parent.name + "/" + p.name
)
def test_verdicts_and_the_report_only_read_tables_and_never_load_a_twin(path):
    """The verdicts and the report are pure functions of the study folder's tables: they import no
    measurement, no runner, no command line and no W&B, and never reach for a twin."""
    for name in imported_packages(path):
        assert not name.startswith(LAYERS_BELOW_A_VERDICT), name
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "study.core.twin":
            assert not {alias.name for alias in node.names} & TWIN_ACCESS, ast.unparse(node)


@pytest.mark.quick
def test_a_layering_fault_is_seen(tmp_path):
    """The check above fails on a verdict that loads a twin (the fault injected into a copy)."""
    source = (ROOT / "study/verdicts/lesion.py").read_text()
    faulty = tmp_path / "lesion.py"
    faulty.write_text(source.replace("import pandas as pd", "import pandas as pd\nfrom study.core.twin import load"))
    with pytest.raises(AssertionError, match="load"):
        test_verdicts_and_the_report_only_read_tables_and_never_load_a_twin(faulty)


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 100


def sizes(path: Path) -> tuple[int, list[tuple[str, int]]]:
    """A module's line count and each function's (name, lines)."""
    text = path.read_text()
    functions = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    return len(text.splitlines()), functions


@pytest.mark.quick
@pytest.mark.parametrize(
    "path", modules("study") + modules("keras_impl") + modules("lightning_impl"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_module_or_function_does_several_jobs(path):
    """A module over ~400 lines or a function over ~100 lines is doing more than one job: split it."""
    lines, functions = sizes(path)
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"
    assert [(name, n) for name, n in functions if n > MAX_FUNCTION_LINES] == []


@pytest.mark.quick
def test_the_size_check_sees_a_long_function(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    with pytest.raises(AssertionError):
        test_no_module_or_function_does_several_jobs(long)


@pytest.mark.quick
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


@pytest.mark.quick
def test_a_second_keras_backend_in_one_process_is_a_clear_error():
    here = next(b for b in BACKENDS if keras_backend(b) and loadable_here(b))
    load(here)  # Keras is now imported on this backend
    other = next(b for b in BACKENDS if keras_backend(b) and b != here)
    assert not loadable_here(other)
    with pytest.raises(UserError, match=f"{other} needs a process of its own"):
        load(other)


@pytest.mark.quick
def test_each_keras_backend_runs_in_a_process_group_of_its_own():
    assert process_groups(("keras", "lightning")) == [("keras", "lightning")]
    assert process_groups(("lightning",)) == [("lightning",)]
    assert process_groups(BACKENDS) == [("keras", "lightning"), ("keras-jax",), ("keras-torch",)]
    assert process_groups(("keras-jax", "lightning"), "lightning") == [("keras-jax", "lightning")]
    # every group loads the probe twin too, so a Keras probe twin rules out the other Keras backends
    assert process_groups(("keras-jax", "lightning"), "keras-jax") == [("keras-jax", "lightning")]
    with pytest.raises(UserError, match="the probe twin keras-torch cannot run beside keras-jax"):
        process_groups(("keras-torch", "keras-jax"), "keras-torch")


@pytest.mark.quick
def test_the_loader_names_what_a_twin_lacks(monkeypatch):
    # Lightning's twin: it loads in any process (a Keras twin would not where another test of this
    # xdist worker already started Keras on another backend).
    broken = types.ModuleType("lightning_impl.twin")
    broken.NAME, broken.PACKAGES = "lightning", ()
    monkeypatch.setitem(sys.modules, "lightning_impl.twin", broken)
    with pytest.raises(TypeError, match="missing build, count_trainable_params"):
        load("lightning")
    with pytest.raises(ValueError, match="backend must be one of keras, keras-jax, keras-torch, lightning"):
        load("jax")


PACKAGES = ("study.core", "study.cli", "study.compare", "study.experiment", "study.measure", "study.report",
            "study.schemas", "study.tracking", "study.verdicts", "keras_impl", "lightning_impl")  # fmt: skip


def quick_reach(folder: Path) -> set[str]:
    """The packages the quick tier's test modules (a module marked quick, or holding a quick test) import
    or load (`load("keras")`: a twin), as their source states it."""
    reached = set()
    for path in sorted(folder.glob("test_*.py")):
        text = path.read_text()
        if "pytest.mark.quick" not in text:
            continue
        names = imported_packages(path) | {f"{b}_impl" for b in re.findall(r'load\("(keras|lightning)', text)}
        reached |= {p for p in PACKAGES if any(n == p or n.startswith(p + ".") for n in names)}
    return reached


@pytest.mark.quick
def test_the_quick_tier_touches_every_package():
    assert set(PACKAGES) - quick_reach(ROOT / "tests") == set()


@pytest.mark.quick
def test_the_quick_tier_check_sees_a_package_left_out(tmp_path):
    for path in (ROOT / "tests").glob("test_*.py"):
        text = path.read_text()
        if "from study.compare" in text or "study.compare." in text:
            text = text.replace("pytest.mark.quick", "pytest.mark.slow")
        (tmp_path / path.name).write_text(text)
    assert "study.compare" not in quick_reach(tmp_path)
