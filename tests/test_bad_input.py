"""Bad input, one line: every malformed invocation and crafted file below ends in exit code 2 and one
stderr line naming the problem, never a traceback, and nothing already written is touched.

The invocations run through `study.cli.main`, the entry point itself (in this process: they are
refused before any framework loads); `tests/test_faults.py` covers the faults that need a process.
"""

import json

import pytest
from tables import table

from study.cli import main

pytestmark = pytest.mark.quick  # every test here is in the edit loop's tier (README)

SPEC_ERRORS = [
    (["describe", "resnet-6000000002"], "unknown spec"),
    (["describe", "resnet-\u0665\u0666"], "unknown spec"),  # Arabic-Indic digits
    (["describe", "resnet-\uff15\uff16"], "unknown spec"),  # full-width digits
    (["describe", "resnet-57"], "6n+2"),
    (["describe", "plain-1208"], "at most 1202"),
    (["describe", "resnet-0"], "6n+2"),
    (["describe", ""], "unknown spec"),
    (["describe", "dense56"], "unknown spec"),
    (["describe", "resnet56", "--classes", "1"], "classes must be an integer in 2..100000"),
    (["describe", "resnet56", "--classes", "0"], "classes must be"),
    (["describe", "resnet56", "--classes", "1000001"], "classes must be"),
    (["describe", "resnet56", "--classes", "ten"], "argument --classes"),
    (["describe", "resnet56", "--input", "0,32,3"], "input shape"),
    (["describe", "resnet56", "--input", "32,32"], "three integers"),
    (["describe", "resnet56", "--input", "99999,32,3"], "input shape"),
    (["describe", "resnet56", "--input", "2,2,3"], "too small"),
    (["describe", "resnet56", "--shortcut", "C"], "argument --shortcut"),
    (["describe", "resnet56", "--activation", "gelu"], "argument --activation"),
    (["describe", "resnet56", "--norm", "layer"], "argument --norm"),
    (["describe", "resnet50", "--bottleneck-stride", "2x2"], "argument --bottleneck-stride"),
    (["describe", "resnet56", "--backend", "jax"], "argument --backend"),
    (["nonsense"], "invalid choice"),
    ([], "required"),
]
AGREE_ERRORS = [
    (["agree", "resnet-8", "--batch", "0"], "argument --batch: a batch must be an integer in 1..8192"),
    (["agree", "resnet-8", "--batch", "-3"], "argument --batch"),
    (["agree", "resnet-8", "--batch", "x"], "argument --batch"),
    (["agree", "resnet-8", "--train-steps", "-1"], "argument --train-steps: must be an integer >= 0"),
    (["agree", "resnet-8", "--seed", "-1"], "argument --seed: a seed must be an integer in 0..4294967295"),
    (["agree", "resnet-8", "--seed", "4294967296"], "argument --seed"),
    (["agree", "resnet-8", "--dtype", "float16"], "argument --dtype"),
    (["agree", "resnet-8", "--keras-backend", "mxnet"], "argument --keras-backend"),
]
TRAIN = ["train", "resnet-8", "--backend", "lightning", "--dataset", "synthetic", "--wandb", "disabled"]
TRAIN_ERRORS = [
    ([*TRAIN, "--epochs", "0"], "argument --epochs"),
    ([*TRAIN, "--epochs", "-1"], "argument --epochs"),
    ([*TRAIN, "--epochs", "1.5"], "argument --epochs"),
    ([*TRAIN, "--lr", "nan"], "argument --lr: must be a finite number in (0, inf)"),
    ([*TRAIN, "--lr", "inf"], "argument --lr"),
    ([*TRAIN, "--lr", "0"], "argument --lr"),
    ([*TRAIN, "--lr", "-0.1"], "argument --lr"),
    ([*TRAIN, "--lr", "abc"], "argument --lr"),
    ([*TRAIN, "--warmup-epochs", "nan"], "argument --warmup-epochs"),
    ([*TRAIN, "--warmup-epochs", "-1"], "argument --warmup-epochs"),
    ([*TRAIN, "--warmup-epochs", "5", "--epochs", "2"], "warm-up epochs must be in 0..epochs (2)"),
    ([*TRAIN, "--batch-size", "0"], "argument --batch-size"),
    ([*TRAIN, "--seed", "-1"], "argument --seed"),
    ([*TRAIN, "--seed", "4294967296"], "argument --seed"),
    ([*TRAIN, "--seed", "1e3"], "argument --seed"),
    (["train", "resnet-8", "--backend", "jax"], "argument --backend"),
    (["train", "resnet-8", "--backend", "lightning", "--dataset", "imagenet"], "unknown dataset"),
    (["train", "resnet-8", "--backend", "lightning", "--dataset", "cifar10"], "cifar10 requires --data-dir"),
    ([*TRAIN, "--device", "tpu"], "argument --device"),
    ([*TRAIN, "--precision", "16"], "argument --precision"),
    ([*TRAIN, "--devices", "0"], "argument --devices"),
    (["train", "resnet-8", "--backend", "keras", "--compile"], "--compile is torch.compile"),
    ([*TRAIN, "--wandb", "sometimes"], "argument --wandb"),
    ([*TRAIN, "--classes", "1"], "classes must be"),
    (["train", "resnet-57", "--backend", "lightning"], "6n+2"),
]
GRID = ["--dataset", "synthetic", "--depths", "8", "--seeds", "0", "--epochs", "1", "--warmup-epochs", "0",
        "--wandb", "disabled"]  # fmt: skip
RUN_ERRORS = [
    (["run", "--config", "huge"], "unknown study config 'huge'"),
    (["run", *GRID, "--workers", "0"], "--workers must be >= 1"),
    (["run", *GRID, "--executor", "dask"], "argument --executor"),
    (["run", *GRID, "--executor", "ray", "--gpus-per-run", "0"], "argument --gpus-per-run"),
    (["run", *GRID, "--executor", "ray", "--gpus-per-run", "-1"], "argument --gpus-per-run"),
    (["run", *GRID, "--executor", "ray", "--gpus-per-run", "1.5"], "whole number of GPUs"),
    (["run", *GRID, "--executor", "ray", "--gpus-per-run", "nan"], "argument --gpus-per-run"),
    (["run", *GRID, "--executor", "ray", "--cpus-per-run", "0"], "argument --cpus-per-run"),
    (["run", *GRID, "--executor", "ray", "--workers", "2"], "--workers is the local runner's"),
    (["run", *GRID, "--executor", "ray", "--runs-per-gpu", "2"], "--runs-per-gpu is the local runner's"),
    (["run", *GRID, "--address", "127.0.0.1:6379"], "--address needs --executor ray"),
    (["run", *GRID, "--gpus-per-run", "1"], "--gpus-per-run needs --executor ray"),
    (["run", *GRID, "--executor", "ray", "--address", "127.0.0.1:1"], "no Ray cluster reachable there within 10 s"),
    (["run", *GRID, "--executor", "ray", "--address", "nohost"], "HOST:PORT"),
    (["run", *GRID, "--executor", "ray", "--address", "127.0.0.1:99999"], "HOST:PORT"),
    (["run", *GRID, "--device", "cpu", "--runs-per-gpu", "2"], "the runs train on the CPU"),
    (["run", *GRID, "--runs-per-gpu", "0"], "argument --runs-per-gpu"),
    (["run", *GRID, "--depths", "8,21"], "6n+2"),
    (["run", *GRID, "--depths", "1208"], "at most 1202"),
    (["run", *GRID, "--depths", "x"], "argument --depths"),
    (["run", *GRID, "--seeds", "-1"], "argument --seeds"),
    (["run", *GRID, "--seeds", "0,0"], "seeds must differ"),
    (["run", *GRID, "--seeds", "4294967296"], "argument --seeds"),
    (["run", *GRID, "--backends", "jax"], "argument --backends"),
    (["run", *GRID, "--archs", "dense"], "argument --archs"),
    (["run", *GRID, "--activations", "gelu"], "argument --activations"),
    (["run", *GRID, "--norms", "layer"], "argument --norms"),
    (["run", *GRID, "--alpha", "0"], "argument --alpha: must be a finite number in (0, 1)"),
    (["run", *GRID, "--alpha", "1"], "argument --alpha"),
    (["run", *GRID, "--alpha", "1.5"], "argument --alpha"),
    (["run", *GRID, "--alpha", "nan"], "argument --alpha"),
    (["run", *GRID, "--margin", "inf"], "argument --margin"),
    (["run", *GRID, "--margin", "-1"], "argument --margin"),
    (["run", *GRID, "--margin", "0"], "argument --margin"),
    (["run", *GRID, "--settle", "-1"], "argument --settle"),
    (["run", *GRID, "--settle", "x"], "argument --settle"),
    (["run", *GRID, "--settle", "2", "--backends", "lightning"], "needs at least two backends"),
    (["run", *GRID, "--epochs", "0"], "argument --epochs"),
    (["run", *GRID, "--warmup-epochs", "nan"], "argument --warmup-epochs"),
    (["run", "--depths", "8", "--epochs", "1"], "warm-up epochs must be in 0..epochs (1)"),  # the config's 2
    (["run", *GRID, "--shortcut", "C"], "argument --shortcut"),
    (["run", "--dataset", "cifar10"], "needs --data-dir"),
    (["run", "--data-dir", "/tmp", "--dataset", "digits"], "--data-dir is only used with --dataset cifar10"),
    (["run", "--config", "budget", "--epochs", "3"], "trains its own budgets"),
    # a study's size is stated before it starts; above the limits it needs --confirm-size
    (["run", *GRID[:4], "--seeds", ",".join(map(str, range(2000))), "--wandb", "disabled"], "8000 runs, predicted"),
    (["run", "--config", "paper", "--data-dir", "/tmp"], "100 runs, predicted"),
    (
        ["run", "--config", "paper", "--data-dir", "/tmp"],
        "above 1000 runs or 24 predicted hours; rerun with --confirm-size to start it (nothing was started)",
    ),
]
POINT = ["run-point", *GRID, "--backends", "lightning", "--arch", "plain"]
POINT_ERRORS = [
    ([*POINT, "--out", "x", "--backend", "keras", "--depth", "8", "--seed", "0"], "is not a point of"),
    ([*POINT, "--out", "x", "--backend", "lightning", "--depth", "20", "--seed", "0"], "is not a point of"),
    ([*POINT, "--out", "x", "--backend", "lightning", "--depth", "8", "--seed", "9"], "is not a point of"),
    ([*POINT, "--out", "x", "--backend", "lightning", "--depth", "0", "--seed", "0"], "argument --depth"),
    ([*POINT, "--out", "x", "--backend", "lightning", "--depth", "8", "--seed", "-1"], "argument --seed"),
    ([*POINT, "--backend", "lightning", "--depth", "8", "--seed", "0"], "--out"),
    (
        [
            "run-point",
            "--config",
            "budget",
            "--out",
            "x",
            "--backend",
            "lightning",
            "--arch",
            "plain",
            "--depth",
            "20",
            "--seed",
            "0",
        ],
        "not a sweep axis",
    ),  # fmt: skip
]
OTHER_ERRORS = [
    (["sweep", "--seeds", "-1"], "argument --seeds"),
    (["sweep", "--depths", "7"], "6n+2"),
    (["sweep", "--config", "huge"], "unknown study config"),
    (["gradflow", "--depths", "7"], "6n+2"),
    (["gradflow", "--seeds", "-1"], "argument --seeds"),
    (["gradflow", "--backend", "jax"], "argument --backend"),
    (["bench", "resnet-8", "--backend", "lightning", "--batch", "0"], "argument --batch"),
    (["bench", "resnet-8", "--backend", "lightning", "--steps", "0"], "argument --steps"),
    (["bench", "resnet-8", "--backend", "lightning", "--repeats", "0"], "argument --repeats"),
    (["analyze", "/nonexistent/folder"], "is not a folder"),
    (["analyze", "/tmp", "--alpha", "2"], "argument --alpha"),
    (["analyze", "/tmp", "--margin", "nan"], "argument --margin"),
    (["collect", "/tmp/never-made", "/nonexistent"], "is not a study folder"),
    # duplicates are refused before any work (a repeated precision once ran ~50 s, then crashed)
    (["compare", "--specs", "resnet8", "--precisions", "32,32"], "argument --precisions: values must differ"),
    (["compare", "--specs", "resnet20,resnet-20"], "networks must differ: resnet-20 is resnet20"),
    (["compare", "--backends", "lightning,lightning"], "argument --backends: values must differ"),
    (["compare", "--agree-specs", "resnet-8,resnet-8"], "argument --agree-specs: networks must differ"),
    (["run", *GRID, "--depths", "8,8"], "argument --depths: values must differ"),
    (["run", *GRID, "--archs", "plain,plain"], "argument --archs: values must differ"),
    # sizes bounded before anything is allocated
    (["compare", "--batch", "99999999999"], "argument --batch: a batch must be an integer in 1..8192"),
    (["agree", "resnet-8", "--batch", "8193"], "argument --batch: a batch must be an integer in 1..8192"),
    (["bench", "resnet-8", "--backend", "lightning", "--batch", "10000"], "argument --batch"),
    ([*TRAIN, "--batch-size", "100000"], "argument --batch-size: a batch must be an integer in 1..8192"),
]
INVOCATIONS = SPEC_ERRORS + AGREE_ERRORS + TRAIN_ERRORS + RUN_ERRORS + POINT_ERRORS + OTHER_ERRORS


def one_line(capsys, args, message):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, (args, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resnet-study: error: "), err
    assert "Traceback" not in err and message in lines[0], (message, lines[0])
    return lines[0]


@pytest.mark.parametrize("args, message", INVOCATIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_malformed_invocation_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # whatever a refused command might write would land here
    one_line(capsys, args, message)
    assert not any(tmp_path.iterdir()), "a refused command wrote something"


# -- folders that are not ours -------------------------------------------------------------------


@pytest.fixture
def user_folder(tmp_path):
    """A user's folder holding files with the names this tool writes."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("history.csv", "results.csv", "report.md", "model.ckpt", "gradflow_fit.csv", "notes.txt"):
        (folder / name).write_text(f"the user's {name}\n")
    return folder


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_runs_per_gpu_without_a_gpu_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU declared, whatever this machine has
    one_line(capsys, ["run", *GRID, "--runs-per-gpu", "2"], "--runs-per-gpu: no GPU found here")
    assert not any(tmp_path.iterdir()), "a refused command wrote something"


@pytest.mark.parametrize(
    "command",
    [
        [*TRAIN, "--out"],
        ["run", *GRID, "--out"],
        ["gradflow", "--depths", "8", "--out"],
        ["collect"],
    ],
    ids=["train", "run", "gradflow", "collect"],
)
def test_a_users_folder_is_refused_and_untouched(capsys, tmp_path, user_folder, command):
    before = snapshot(user_folder)
    args = [*command, str(user_folder)] + ([str(tmp_path / "nothing")] if command == ["collect"] else [])
    if command == ["collect"]:  # a real source, so only the target's ownership can refuse
        source = tmp_path / "source"
        (source / "runs").mkdir(parents=True)
        (source / "study.json").write_text(json.dumps({"study_id": "s-1", "config": STUDY_CONFIG}))
        args = ["collect", str(user_folder), str(source)]
    line = one_line(capsys, args, "is not empty and holds no")
    assert "nothing in it was touched" in line and snapshot(user_folder) == before
    file = tmp_path / "a-file"
    file.write_text("x")
    one_line(capsys, [*args[:-1], str(file)] if command != ["collect"] else ["collect", str(file), str(source)],
             "is a file, not a folder")  # fmt: skip
    assert file.read_text() == "x"


# -- crafted files in a study folder -------------------------------------------------------------

STUDY_CONFIG = {"name": "default", "dataset": "digits", "backends": ["keras", "lightning"],
                "archs": ["plain", "resnet"], "depths": [8], "seeds": [0, 1], "epochs": 2}  # fmt: skip


def results_with(**changes):
    frame = table(seeds=(0, 1, 2))
    for column, value in changes.items():
        frame[column] = frame[column].astype(object)
        frame.loc[0, column] = value
    return frame.to_csv(index=False)


LESION_OK = "run_key,backend,arch,depth,seed,activation,norm,kind,k,draw,blocks,test_error\n"
NORMS_OK = "stage,run_key,backend,arch,depth,seed,activation,norm,block_index,block,grad_in,grad_out,ratio\n"
CRAFTED = [
    ("results.csv", "run_key,backend,arch,depth,seed\nx,keras,plain,8,0\n", "lacks column(s)"),
    ("results.csv", b"\x00\xff\xfe garbage \x00", "results"),
    ("results.csv", "", "is empty"),
    ("results.csv", results_with(depth=1e30), "depth of run"),
    ("results.csv", results_with(depth=-20), "depth of run"),
    ("results.csv", results_with(seed=-1), "seed of run"),
    ("results.csv", results_with(seed=2.5), "seed of run"),
    ("results.csv", results_with(final_train_error=1.5), "final_train_error of run"),
    ("results.csv", results_with(final_test_error="nan"), "final_test_error of run"),
    ("results.csv", results_with(backend="jax"), "backend of run"),
    ("results.csv", results_with(arch="dense"), "arch of run"),
    ("results.csv", results_with(diverged="maybe"), "diverged of run"),
    ("results.csv", results_with(run_key="keras-plain8-s1"), "duplicate run_key"),
    # named columns are checked against their vocabulary: a crafted name never reaches a report
    ("results.csv", results_with(dataset="<script>alert(1)</script>"), "dataset of run"),
    ("results.csv", results_with(activation="<img src=x onerror=alert(1)>"), "activation of run"),
    ("results.csv", results_with(shortcut="C"), "shortcut of run"),
    ("study.json", "{not json", "is not valid JSON"),
    ("study.json", '{"study_id": "x"}', "lacks config"),
    ("study.json", '{"study_id": "x", "config": {"name": "d"}}', "lacks config.dataset"),
    ("study.json", "[1, 2]", "the file is [1, 2]: expected a JSON object"),
    ("study.json", '{"study_id": "../x", "config": {}}', "study_id is '../x'"),
    ("study.json", "[" * 100_000 + "]" * 100_000, "is not valid JSON (recursion limit exceeded"),
    ("study.json", json.dumps({"study_id": "x", "config": STUDY_CONFIG | {"depths": [8, 9]}}), "config is"),
    ("lesion.csv", "a,b\n1,2\n", "lacks column(s)"),
    ("lesion.csv", LESION_OK + "r,keras,plain,8,0,relu,batch,intact,0,0,,x\n", "test_error in row 1"),
    ("lesion.csv", LESION_OK + "r,keras,plain,8,0,relu,batch,melted,0,0,,0.1\n", "kind in row 1"),
    ("lesion.csv", LESION_OK + "r,keras,plain,-8,0,relu,batch,intact,0,0,,0.1\n", "depth in row 1"),
    ("norms.csv", "stage,block\ninit,b\n", "lacks column(s)"),
    ("norms.csv", NORMS_OK + "init,,,plain,8,0,relu,batch,0,b,1,1,-1\n", "ratio in row 1"),
    ("norms.csv", NORMS_OK + "later,,,plain,8,0,relu,batch,0,b,1,1,1\n", "stage in row 1"),
    ("history.csv", "epoch\n1\n", "lacks column(s)"),
    ("history.csv", "run_key,backend,arch,depth,seed,epoch,train_error\nr,keras,plain,8,0,x,0.1\n", "epoch must be"),
    ("history.csv", "run_key,backend,arch,depth,seed,epoch,train_error\nr,keras,plain,8,0,1,7\n", "train_error"),
    ("gradnorms.csv", "x\n1\n", "lacks column(s)"),
    (
        "gradnorms.csv",
        "run_key,backend,arch,depth,seed,epoch,layer_index,layer,grad_norm\nr,keras,plain,8,0,1,0,c,-2\n",
        "grad_norm in row 1",
    ),  # fmt: skip
    ("gradflow.csv", "backend,arch\nkeras,plain\n", "lacks column(s)"),
    (
        "gradflow.csv",
        "backend,arch,activation,norm,depth,seed,layer_index,layer,grad_norm\nkeras,plain,relu,batch,8,0,a,c,1\n",
        "layer_index in row 1",
    ),  # fmt: skip
    (
        "gradflow_fit.csv",
        "backend,arch,activation,norm,depth,seed,decay_per_layer,first_to_last\nkeras,plain,relu,batch,8,0,inf,1\n",
        "decay_per_layer in row 1",
    ),  # fmt: skip
    (
        "gradflow_fit.csv",
        "backend,arch,activation,norm,depth,seed,decay_per_layer,first_to_last\n"
        "keras,plain,<script>x</script>,batch,8,0,-0.1,1\n",
        "activation in row 1",
    ),  # fmt: skip
    (
        "gradflow.csv",
        "backend,arch,activation,norm,depth,seed,layer_index,layer,grad_norm\nkeras,plain,relu,<b>,8,0,0,c,1\n",
        "norm in row 1",
    ),  # fmt: skip
    ("exactness.json", "{", "is not valid JSON"),
    ("exactness.json", '{"schema": 1, "passed": true}', "lacks tolerance"),
    ("exactness.json", '{"schema": 1, "passed": "yes", "tolerance": 1e-8}', "passed is 'yes'"),
    ("exactness.json", '{"schema": 3}', "schema is 3: Input should be less than or equal to 2"),
    ("exactness.json", '{"schema": 1, "passed": true, "tolerance": NaN}', "is not valid JSON"),
    ("settle.json", "{", "is not valid JSON"),
    ("settle.json", '{"grid_seeds": [0, 1], "extra_seeds": [1], "cells": []}', "repeat a grid seed"),
    (
        "settle.json",
        '{"grid_seeds": [0], "extra_seeds": [2], "cells": [{"arch": "dense", "depth": 8}]}',
        "cells.0.arch is 'dense'",
    ),
    ("settle.json", '{"grid_seeds": [-1], "extra_seeds": [2], "cells": []}', "grid_seeds.0 is -1"),
]


@pytest.mark.parametrize(
    "name, content, message", CRAFTED, ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None
)
def test_a_crafted_study_file_is_one_line_and_nothing_is_written(capsys, tmp_path, name, content, message):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "results.csv").write_text(results_with())
    (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(folder)
    line = one_line(capsys, ["analyze", str(folder)], message)
    assert name in line, line  # the line names the file
    assert snapshot(folder) == before


def test_there_are_at_least_a_hundred_malformed_invocations():
    assert len(INVOCATIONS) + len(CRAFTED) + 8 >= 100 and len(INVOCATIONS) >= 100


def test_analyze_never_overwrites_a_users_report(capsys, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "results.csv").write_text(results_with())
    (folder / "report.md").write_text("my own report\n")
    before = snapshot(folder)
    one_line(capsys, ["analyze", str(folder)], "holds report.md that this tool did not write")
    assert snapshot(folder) == before
    (folder / "report.md").unlink()
    (folder / "verdict.json").write_text('{"mine": true}')
    one_line(capsys, ["analyze", str(folder)], "holds verdict.json that this tool did not write")
    (folder / "verdict.json").unlink()
    quiet = ["--wandb", "disabled"]  # no W&B service in the test process
    assert main(["analyze", str(folder), *quiet]) == 0  # a results table alone: the outputs are new, then ours
    assert main(["analyze", str(folder), *quiet]) == 0


def test_sweep_never_overwrites_a_users_file(capsys, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("the user's own yaml\n")
    one_line(capsys, ["sweep", "--file", str(path)], "is not a sweep this tool wrote")
    assert path.read_text() == "the user's own yaml\n"
    path.unlink()
    assert main(["sweep", "--file", str(path)]) == 0 and main(["sweep", "--file", str(path)]) == 0  # its own


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "is not valid JSON"),
        ("[]", "the file is []: expected a JSON object"),
        ('{"identity": {}, "attempts": "x", "wandb_id": "a"}', "attempts is 'x'"),
        ('{"identity": {}, "attempts": 1, "wandb_id": "../x"}', "wandb_id is '../x'"),
        ('{"identity": {}, "attempts": 1, "wandb_id": "a"}', "lacks identity.backend"),
    ],
    ids=["truncated", "a list", "attempts", "wandb id", "identity"],
)
def test_a_crafted_run_json_is_one_line_and_untouched(capsys, tmp_path, content, message):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(content)
    line = one_line(capsys, [*TRAIN, "--out", str(out)], message)
    assert "run.json" in line and line.endswith("; choose another folder")
    assert (out / "run.json").read_text() == content and [p.name for p in out.iterdir()] == ["run.json"]
