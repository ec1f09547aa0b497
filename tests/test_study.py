"""The study runner: resumable under SIGKILL, parallel, sweepable, collectable; analyze and report."""

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import yaml

from study.core import data
from study.measure import gradflow

GRID = ["--dataset", "synthetic", "--backends", "lightning", "--depths", "8,14", "--seeds", "0,1,2", "--epochs", "2",
        "--wandb", "disabled"]  # fmt: skip
GRID_POINTS = 2 * 2 * 3  # archs x depths x seeds


def cli(*args, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, env=env, timeout=900)


def result_rows(folder):
    path = folder / "results.csv"
    if not path.exists():
        return []
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_sigkill_then_rerun_repeats_nothing_and_loses_nothing(tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, "-m", "study", "run", *GRID, "--out", str(out)]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(result_rows(out)) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the study and everything it started
    process.wait()
    before = {row["run_key"]: row for row in result_rows(out)}
    assert 3 <= len(before) < GRID_POINTS, "kill the study while it runs"

    result = cli("run", *GRID, "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    after = result_rows(out)
    keys = [row["run_key"] for row in after]
    assert len(keys) == len(set(keys)) == GRID_POINTS
    for key, row in before.items():  # finished runs were not run again
        assert next(r for r in after if r["run_key"] == key)["wall_s"] == row["wall_s"]
    assert f"{GRID_POINTS - len(before)} to run" in result.stdout
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["degradation"]["verdict"] in {"holds", "does_not_hold", "inconclusive"}
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert {p.name for p in (out / "figures").iterdir()} >= {"error_vs_depth.png", "training_curves.png"}


def test_settle_adds_seeds_to_the_undecided_cells_once_and_declared_up_front(tmp_path):
    """`run --settle 2` on a grid of one seed: look 1 leaves the cell undecided (fewer than two seeds),
    so seeds 1 and 2 are added to it, for both twins, not probed; look 2 tests them. The same command
    again adds nothing; the folder refuses another --settle, or none."""
    out = tmp_path / "study"
    args = ["--dataset", "synthetic", "--archs", "resnet", "--depths", "8", "--seeds", "0", "--epochs", "2",
            "--wandb", "disabled"]  # fmt: skip
    result = cli("run", *args, "--settle", "2", "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "settle.json").read_text())
    assert record["cells"] == [{"arch": "resnet", "depth": 8}]
    assert record["extra_seeds"] == [1, 2] and record["look_one"]["alpha"] == 0.025
    assert "settle: look 1 (α/2 = 0.025) leaves resnet-8 undecided; adding 2 seeds: 4 runs" in result.stdout
    runs = sorted(run.name.rsplit("-", 1)[0] for run in (out / "runs").iterdir() if run.is_dir())
    assert runs == sorted(f"{b}-resnet8-s{s}" for b in ("keras", "lightning") for s in range(3))
    for run in (out / "runs").glob("[kl]*-s[12]-*"):
        assert (run / "summary.json").exists() and not (run / "lesion.csv").exists()
    assert (next((out / "runs").glob("*-s0-*")) / "lesion.csv").exists()  # the grid's runs are probed
    verdict = json.loads((out / "verdict.json").read_text())
    resnet8 = next(c for c in verdict["agreement"]["cells"] if c["arch"] == "resnet")
    assert resnet8["look"] == 2 and all(t["n"] == 3 for t in resnet8["tests"].values())
    report = (out / "report.md").read_text()
    assert "sequential (declared --settle 2)" in report and "Decided at the second look" in report
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}

    again = cli("run", *args, "--settle", "2", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "0 to run" in again.stdout and json.loads((out / "settle.json").read_text()) == record
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")} == stamps
    for other, message in ((["--settle", "3"], "was started with --settle 2"), ([], "was started with --settle 2")):
        refused = cli("run", *args, *other, "--out", str(out))
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    plain = tmp_path / "plain"  # a folder this study started without --settle
    plain.mkdir()
    started = json.loads((out / "study.json").read_text())
    del started["config"]["settle"]
    (plain / "study.json").write_text(json.dumps(started))
    late = cli("run", *args, "--settle", "2", "--out", str(plain))
    assert late.returncode == 2 and "was started with no --settle; use a new --out" in late.stderr


def test_analyze_reproduces_the_verdict_from_results_csv_alone(tmp_path):
    out = tmp_path / "study"
    assert cli("run", *GRID, "--seeds", "0,1", "--out", str(out)).returncode == 0
    alone = tmp_path / "copy"
    alone.mkdir()
    (alone / "results.csv").write_text((out / "results.csv").read_text())
    result = cli("analyze", str(alone), "--json")
    assert result.returncode == 0, result.stderr
    original = json.loads((out / "verdict.json").read_text())
    alone_degradation = json.loads(result.stdout)["degradation"]
    assert all(entry["over_training"] is None for entry in alone_degradation["backends"].values())
    assert all(entry["over_training"] for entry in original["degradation"]["backends"].values())
    for entry in (*alone_degradation["backends"].values(), *original["degradation"]["backends"].values()):
        entry.pop("over_training")  # what history.csv adds
    assert alone_degradation == original["degradation"]
    assert json.loads(result.stdout)["agreement"] == original["agreement"]


TWINS = ["--dataset", "synthetic", "--depths", "8", "--seeds", "0,1,2", "--epochs", "2", "--wandb", "offline"]


def test_correct_twins_agree_and_the_evidence_is_read_back(tmp_path):
    out = tmp_path / "study"
    result = cli("run", *TWINS, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "exactness: float64 replay of the recipe by keras, lightning: passed" in result.stdout
    verdict = json.loads((out / "verdict.json").read_text())["agreement"]
    # Two epochs and three seeds cannot show the outcomes equivalent; the replay proves the twins exact.
    assert verdict["verdict"] in ("agree", "exact_outcomes_undecided"), verdict["reason"]
    assert verdict["exactness"]["status"] == "passed" and len(verdict["cells"]) == 2
    assert f"agreement: {verdict['verdict']} - the recipe is exact in float64" in result.stdout
    assert_quiet(result, out)
    assert_on_the_dashboard(out, verdict)
    assert_every_run_probed(out)

    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.csv", "exactness.json"):
        (copy / name).write_text((out / name).read_text())
    again = cli("analyze", str(copy), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["agreement"] == verdict
    (copy / "exactness.json").unlink()
    alone = json.loads(cli("analyze", str(copy), "--json").stdout)["agreement"]
    assert alone["verdict"] == "inconclusive" and "resnet-study run" in alone["settle"]

    (copy / "exactness.json").write_text('{"schema": 1, "passed": true}')
    before = (copy / "verdict.json").read_text()
    bad = cli("analyze", str(copy))
    assert bad.returncode == 2 and "exactness.json" in bad.stderr and "lacks tolerance" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and (copy / "verdict.json").read_text() == before


FRAMEWORK_NOISE = ("I0000", "E0000", "W0000", "absl::InitializeLog", "oneDNN", "cuda", "Tip:", "wandb:", "Warning")


def assert_quiet(result, out):
    """The terminal shows the study's own lines; what the frameworks printed is in the log file."""
    assert result.stderr == "", result.stderr
    assert not [line for line in result.stdout.splitlines() if any(n in line for n in FRAMEWORK_NOISE)]
    assert "absl::InitializeLog" in (out / "frameworks.log").read_text()  # TensorFlow did print: into the log
    assert "runs " in result.stdout and "elapsed" in result.stdout and "left ~" in result.stdout  # the bar


def assert_every_run_probed(out):
    """Every trained network (both twins') was lesioned and probed from its checkpoint; evaluated in the
    Lightning twin, each network's intact test error is the one its own run measured."""
    import pandas as pd

    results, lesion, norms = (pd.read_csv(out / name) for name in ("results.csv", "lesion.csv", "norms.csv"))
    intact = lesion[lesion.kind == "intact"].set_index("run_key").test_error
    assert set(intact.index) == set(results.run_key)
    measured = results.set_index("run_key").final_test_error
    assert (intact - measured[intact.index]).abs().max() <= 1 / 256 + 1e-9  # 256 test images: one at most
    assert (lesion[lesion.kind == "single"].groupby("run_key").size() == 3).all()  # depth 8: three blocks
    assert set(norms.stage) == {"init", "trained"} and set(norms[norms.stage == "trained"].run_key) == set(
        results.run_key
    )
    verdict = json.loads((out / "verdict.json").read_text())
    assert {"lesion", "norm_preservation", "relu_vs_skip"} <= set(verdict)
    report = (out / "report.md").read_text()
    assert report.index("## Findings") < report.index("## Degradation") and "**Lesion (Veit et al.)" in report


def wandb_records(run_dir):
    inspect = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)]
    lines = subprocess.run(inspect, capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    return [json.loads(line) for line in lines]


def assert_on_the_dashboard(out, agreement):
    """Every run logged its checkpoint as a model artifact; one analysis run in the study's group holds the
    results table, every figure, the verdicts and the study's files, and names the models it used."""
    models = []
    for run_dir in sorted((out / "runs").glob("*/wandb/offline-run-*")):
        (artifact,) = [r["artifact"] for r in wandb_records(run_dir) if r["type"] == "artifact"]
        assert artifact["type"] == "model" and artifact["name"] == f"model-{run_dir.parents[1].name}"
        models.append(artifact["name"])
    assert len(models) == 12  # 2 backends x 2 archs x 3 seeds at one depth
    (analysis,) = (out / "wandb").glob("offline-run-*-analysis-*")
    records = wandb_records(analysis)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    study = json.loads((out / "study.json").read_text())["study_id"]
    assert run["run_group"] == study and run["job_type"] == "analysis"
    inspect = [sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(analysis)]
    summary = json.loads(subprocess.run(inspect, capture_output=True, text=True, timeout=120, check=True).stdout)[
        "summary"
    ]
    assert summary["agreement/verdict"] == agreement["verdict"] and summary["degradation/verdict"]
    assert summary["results"]["_type"] == "table-file"
    assert {k for k in summary if k.startswith("figures/")} >= {"figures/agreement", "figures/error_vs_depth"}
    views = {"curves", "grad_norms", "block_ratios", "lesion"}  # the explorer's views, as W&B line plots
    assert {f"explorer/{view}/{arch}-8_table" for view in views for arch in ("plain", "resnet")} <= set(summary)
    assert summary["explorer/page"]["_type"] == "html-file" and summary["explorer/error_vs_depth"]["nrows"] == 4
    (artifact,) = [r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "study"]
    assert json.loads(artifact["metadata"])["inputs"] == models
    assert {"results.csv", "verdict.json", "exactness.json", "report.md"} <= {
        c["path"] for c in artifact["manifest"]["contents"]
    }


def test_one_worker_keeps_the_terminal_quiet_too(tmp_path):
    out = tmp_path / "study"
    args = [
        "--backends",
        "keras",
        "--archs",
        "resnet",
        "--depths",
        "8",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--warmup-epochs",
        "1",
    ]
    result = cli("run", "--dataset", "synthetic", *args, "--workers", "1", "--wandb", "disabled", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert_quiet(result, out)


def test_sweep_yaml_runs_a_point_the_way_the_agent_would_and_collect_merges(tmp_path):
    sweep = cli("sweep", *GRID, "--out", str(tmp_path / "A"))
    assert sweep.returncode == 0, sweep.stderr
    config = yaml.safe_load(sweep.stdout)
    assert config["method"] == "grid"
    assert config["parameters"]["depth"]["values"] == [8, 14] and config["parameters"]["backend"]["values"] == [
        "lightning"
    ]
    command = [part for part in config["command"] if part != "${env}"]
    assert command[0] == "resnet-study" and command[-1] == "${args}"
    for folder, seed in (("A", 0), ("B", 1)):  # two "machines"
        args = [a.replace("A", folder) if a.endswith("/A") else a for a in command[1:-1]]
        args = ["offline" if a == "online" else a for a in args]  # no W&B server here
        agent_args = shlex.split(f"--backend=lightning --arch=plain --depth=8 --seed={seed}")
        result = cli(*args, *agent_args, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["depth"] == 8
        assert len(list((tmp_path / folder / "runs").glob("*/wandb/offline-run-*"))) == 1
    assert config["project"] == "resnet-study"
    studies = [json.loads((tmp_path / folder / "study.json").read_text())["study_id"] for folder in ("A", "B")]
    assert studies[0] == studies[1] and studies[0].startswith("default-")  # one W&B group for every agent
    assert "--depths" in command and command[command.index("--depths") + 1] == "8,14"
    merged = tmp_path / "merged"
    assert cli("collect", str(merged), str(tmp_path / "A"), str(tmp_path / "B")).returncode == 0
    assert cli("collect", str(merged), str(tmp_path / "A"), str(tmp_path / "B")).returncode == 0  # idempotent
    assert sorted(row["seed"] for row in result_rows(merged)) == ["0", "1"]


@pytest.mark.quick
def test_gradflow_sigmoid_vanishes_in_plain_nets_without_bn():
    dataset = data.load_dataset("digits")
    rows, fits = gradflow.measure((8, 20), dataset, activations=("relu", "sigmoid"), norms=("none",), batch=32)
    decay = {(f["arch"], f["activation"], f["depth"]): f["decay_per_layer"] for f in fits}
    assert decay[("plain", "sigmoid", 20)] < -0.3  # sigmoid' <= 1/4: orders of magnitude over 20 layers
    assert decay[("plain", "sigmoid", 20)] < decay[("resnet", "sigmoid", 20)]
    assert decay[("resnet", "relu", 20)] > -0.05
    assert {r["layer"] for r in rows if r["depth"] == 8} == {
        "conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2", "layer3.0.conv1",
        "layer3.0.conv2", "fc",
    }  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--config", "huge"], "unknown study config 'huge'"),
        (["run", "--settle", "-1", *GRID], "argument --settle: must be an integer >= 0"),
        (["run", "--settle", "3", *GRID], "--settle adds seeds to the twins' undecided cells: it needs at least two"),
        (
            ["run", "--settle", "3", "--config", "relu-skip", "--backends", "keras,lightning"],
            "--settle: the relu-skip config varies the activation, norm or budget",
        ),
        (["run", "--workers", "0", *GRID], "--workers must be >= 1"),
        (["run", "--dataset", "cifar10"], "--dataset cifar10 needs --data-dir"),
        (["run", "--data-dir", "/tmp", "--dataset", "digits"], "--data-dir is only used with --dataset cifar10"),
        (["run", "--depths", "8,21"], "depth must be 6n+2"),
        (["run", "--backends", "jax"], "choose from keras, keras-jax, keras-torch, lightning"),
        (["analyze", "/nonexistent/folder"], "is not a folder"),
        (["collect", "/tmp/merged-x", "/nonexistent"], "is not a study folder"),
    ],
)
def test_bad_study_input_is_one_line_exit_2(args, message):
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.quick
def test_malformed_results_is_one_line_exit_2(tmp_path):
    (tmp_path / "results.csv").write_text("run_key,backend,arch\nx,keras,plain\n")
    result = cli("analyze", str(tmp_path))
    assert result.returncode == 2 and "lacks column(s)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "verdict.json").exists()


@pytest.mark.quick
def test_existing_study_with_another_config_is_never_overwritten(tmp_path):
    from study.configs import get_config
    from study.experiment.study_folder import open_study, update_tables

    out = tmp_path / "study"  # a study folder of the grid below, as its first run left it
    open_study(out, get_config("default").with_overrides(dataset="synthetic", backends=("lightning",), depths=(8,),
                                                         seeds=(0,), epochs=2))  # fmt: skip
    update_tables(out)
    before = (out / "study.json").read_text(), (out / "results.csv").read_text()
    result = cli("run", *GRID, "--seeds", "0", "--depths", "8", "--epochs", "3", "--out", str(out))
    assert result.returncode == 2 and "different config" in result.stderr
    assert ((out / "study.json").read_text(), (out / "results.csv").read_text()) == before
