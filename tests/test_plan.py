"""`resnet-study plan`: the runner's schedule simulated, throughput tables read, a study predicted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.configs import get_config, longest_first
from study.core.presets import parse_spec
from study.experiment import throughput_tables as planning
from study.experiment.plan import plan_study, simulate
from study.experiment.throughput import Rate, Throughput, lesion_evaluations

REPO = Path(__file__).resolve().parents[1]
ASSUMED_GPU = REPO / "docs" / "data" / "gpu-throughput-assumed.json"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "WANDB_MODE": "disabled"})  # fmt: skip


# -- the schedule ------------------------------------------------------------------------------


@pytest.mark.quick
def test_simulate_follows_the_local_runner_fifo_pool():
    """Two workers, window 2: train A (10) and B (4) start; B lands at 4, its probe (1) and C (3) are
    queued in that order: the probe runs 4-5, C 5-8; A lands at 10, its probe 10-11. Head tasks first."""
    assert simulate([], [(10, 1), (4, 1), (3, 0)], workers=2, window=2, probes_with_run=False) == 11
    # a head task (the replay) holds a worker first: A 0-10, head 0-2, B 2-6, probe B 6-7, C 7-10, probe A 10-11
    assert simulate([2], [(10, 1), (4, 1), (3, 0)], workers=2, window=2, probes_with_run=False) == 11
    # one worker: everything in a row
    assert simulate([2], [(10, 1), (4, 1), (3, 0)], workers=1, window=1, probes_with_run=False) == 21


@pytest.mark.quick
def test_simulate_ray_probes_inside_the_task_and_submits_everything():
    # (10+1) on one slot, (4+1) then (3+0) on the other: 11
    assert simulate([], [(10, 1), (4, 1), (3, 0)], workers=2, window=math.inf, probes_with_run=True) == 11
    # order matters (FIFO, not a smarter scheduler): short first on 2 slots ends with the long one alone
    assert simulate([], [(1, 0), (1, 0), (10, 0)], workers=2, window=math.inf, probes_with_run=True) == 11
    assert simulate([], [(10, 0), (1, 0), (1, 0)], workers=2, window=math.inf, probes_with_run=True) == 10


@pytest.mark.quick
def test_the_runner_starts_the_costliest_runs_first(tmp_path):
    from study.experiment.runner import LocalEngine, StudyRun

    config = get_config("classic")
    order = longest_first(config.points())
    costs = [p.network_spec().macs for p in order]
    assert costs == sorted(costs, reverse=True) and order[0].depth == 56 and order[-1].depth == 8
    # among equals, the grid's order: seed by seed
    firsts = [p for p in order if (p.backend, p.arch, p.depth) == ("keras", "plain", 56)]
    assert [p.seed for p in firsts] == list(config.seeds)
    study = StudyRun(config, tmp_path / "s", LocalEngine(1), None, "disabled", "cpu", None, False)
    assert study.pending == order  # the order `plan` simulates is the runner's


# -- the throughput model ----------------------------------------------------------------------


def _table(*rates, probe_factor=1.0):
    return Throughput("test", "one worker", list(rates), probe_factor, {}, [])


def _rate(backend, name, train, evaluate, fixed=None, probe=None, device="cpu"):
    spec = parse_spec(name)
    return Rate(backend, device, spec.name, tuple(spec.input_shape), spec.depth, 6 * spec.macs, train, evaluate,
                fixed, probe)  # fmt: skip


@pytest.mark.quick
def test_a_measured_network_is_used_as_measured_and_others_scale_linearly_in_flops():
    a, b = 2e-4, 1e-12  # the truth: seconds per image = a + b x FLOPs
    rates = [_rate("lightning", n, 1 / (a + b * 6 * parse_spec(n).macs), 3 / (a + b * 6 * parse_spec(n).macs), 1.0 + d)
             for n, d in (("resnet20", 20), ("resnet110", 110))]  # fmt: skip
    table = _table(*rates)
    train, evaluate, measured = table.per_image("lightning", "cpu", parse_spec("resnet20"))
    assert measured and train == pytest.approx(1 / rates[0].train_img_s)
    spec = parse_spec("resnet56")
    train, evaluate, measured = table.per_image("lightning", "cpu", spec)
    assert not measured
    assert train == pytest.approx(a + b * 6 * spec.macs, rel=1e-9)
    assert evaluate == pytest.approx((a + b * 6 * spec.macs) / 3, rel=1e-9)
    assert table.fixed("lightning", "cpu", spec) == pytest.approx(57.0)  # linear in depth: 1 + depth
    # one measured network: proportional to FLOPs
    single = _table(rates[0])
    assert single.per_image("lightning", "cpu", spec)[0] == pytest.approx(
        (a + b * 6 * parse_spec("resnet20").macs) * spec.macs / parse_spec("resnet20").macs
    )


@pytest.mark.quick
def test_probe_seconds_count_the_lesion_evaluations():
    assert lesion_evaluations(parse_spec("resnet8")) == 1 + 3  # too few blocks for random deletions
    assert lesion_evaluations(parse_spec("resnet20")) == 1 + 9 + 3 * 3  # k = 2, 4, 8
    assert lesion_evaluations(parse_spec("resnet56")) == 1 + 27 + 3 * 4
    table = _table(_rate("lightning", "resnet20", 100.0, 1000.0), probe_factor=2.0)
    assert table.probe("lightning", "cpu", parse_spec("resnet20"), 500) == pytest.approx(19 * 0.5 * 2.0)


@pytest.mark.quick
def test_plan_counts_every_run_and_gpu_hours():
    config = get_config("paper")
    table = planning.load_throughput(ASSUMED_GPU)
    one, eight = (plan_study(config, table, gpus=n) for n in (1, 8))
    assert len(one.runs) == len(config.points()) == 100  # 5 depths x 2 archs x 2 twins x 5 seeds
    assert one.busy_s == pytest.approx(eight.busy_s)  # the same work
    assert eight.wall_s < one.wall_s / 4  # spread over 8 GPUs
    longest = max(r.train_s + r.probe_s for r in one.runs)
    assert one.wall_s >= one.busy_s and eight.wall_s >= max(longest, one.busy_s / 8)
    data = eight.to_dict()
    assert data["device_hours_busy"] == pytest.approx(one.busy_s / 3600)
    assert data["device_hours_held"] == pytest.approx(8 * eight.wall_s / 3600)
    assert sum(c["runs"] for c in data["per_run"]) == 100
    # two runs sharing a GPU share its throughput (each at half its rate), not their fixed 5 s start
    shared = plan_study(config, table, gpus=4, runs_per_gpu=2)
    assert shared.busy_s == pytest.approx(2 * one.busy_s - 100 * 5.0, rel=1e-9)


@pytest.mark.quick
@pytest.mark.parametrize("name", ["default", "classic"])
def test_the_shipped_table_predicts_the_default_study_on_this_machines_workers(name):
    plan = plan_study(get_config(name), planning.load_throughput(None), workers=2)
    assert all(run.measured for run in plan.runs)  # every network of the two studies was measured
    assert 60 < plan.wall_s < 3600


# -- the sources -------------------------------------------------------------------------------


@pytest.mark.quick
def test_compare_json_rows_become_rates(tmp_path):
    rows = [
        {"backend": "lightning", "device": "cpu", "spec": "resnet20", "precision": "32", "compile": False,
         "train_img_per_s": 400.0, "infer_img_per_s": 1600.0, "first_step_s": 0.2},
        {"backend": "lightning", "device": "cpu", "spec": "resnet56", "precision": "32", "compile": False,
         "train_img_per_s": 140.0, "infer_img_per_s": 500.0, "first_step_s": 0.4},
        {"backend": "lightning", "device": "cpu", "spec": "resnet20", "precision": "bf16", "compile": False,
         "train_img_per_s": 9e9, "infer_img_per_s": 9e9, "first_step_s": 0.2},
        {"backend": "lightning", "device": "cpu", "spec": "resnet20", "precision": "32", "compile": True,
         "train_img_per_s": 9e9, "infer_img_per_s": 9e9, "first_step_s": 0.2},
    ]  # fmt: skip
    path = tmp_path / "compare.json"
    path.write_text(json.dumps({"speed": rows}))
    table = planning.load_throughput(path)
    assert [(r.spec, r.train_img_s) for r in table.rates] == [("resnet20", 400.0), ("resnet56", 140.0)]
    result = cli("plan", "--config", "paper", "--backends", "lightning", "--throughput", str(path), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["runs"] == 50 and data["gpus"] == 0 and data["wall_s"] > 0  # 5 depths x 2 archs x 5 seeds


@pytest.mark.quick
@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not valid JSON"),
        ("[1, 2]", "not a compare.json"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"speed": 3}', "speed is 3: Input should be a valid list"),
        ('{"speed": []}', "no fp32, uncompiled speed rows"),
        (
            '{"speed": [{"backend": "lightning", "device": "cpu", "spec": "resnet20", "precision": "32", '
            '"train_img_per_s": -1, "infer_img_per_s": 5}]}',
            "speed.0.train_img_per_s is -1: Input should be greater than 0",
        ),
        (
            '{"speed": [{"backend": "lightning", "device": "cpu", "spec": "resnet20", "precision": "32", '
            '"train_img_per_s": NaN, "infer_img_per_s": 5}]}',
            "not valid JSON",
        ),
        (
            '{"speed": [{"backend": "lightning", "device": "cpu", "spec": "nonsense", "precision": "32", '
            '"train_img_per_s": 1, "infer_img_per_s": 5}]}',
            "a speed row is malformed",
        ),
    ],
)
def test_a_bad_throughput_file_is_one_line_exit_2(tmp_path, content, message):
    path = tmp_path / "compare.json"
    path.write_text(content)
    result = cli("plan", "--throughput", str(path))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.quick
@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpus", "8"], "has no keras on GPU"),
        (["--runs-per-gpu", "2"], "--runs-per-gpu needs --gpus"),
        (["--gpus", "2", "--workers", "2"], "--workers is for CPU plans"),
        (["--gpus", "0"], "--gpus: must be"),
        (["--throughput", "/nonexistent/compare.json"], "is missing or not a regular file"),
        (["--throughput", "/dev/zero"], "not a regular file"),
    ],
)
def test_bad_plan_requests_are_one_line_exit_2(args, message):
    result = cli("plan", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_finished_study_folder_is_a_throughput_source(tmp_path):
    """The study records each run's task seconds; its folder then plans studies on that machine."""
    out = tmp_path / "study"
    grid = ["--dataset", "synthetic", "--backends", "lightning", "--depths", "8,14", "--seeds", "0,1", "--epochs", "2",
            "--wandb", "disabled"]  # fmt: skip
    assert cli("run", *grid, "--workers", "2", "--out", str(out)).returncode == 0
    timings = json.loads((out / "timings.json").read_text())
    assert timings["workers"] == 2
    keys = {name for name in os.listdir(out / "runs") if not name.startswith(".")}
    assert {t["key"] for t in timings["tasks"] if t["phase"] == "train lightning"} == keys
    assert {t["key"] for t in timings["tasks"] if t["phase"] == "probe lightning runs"} == keys
    table = planning.load_throughput(out)
    assert sorted((r.backend, r.depth, r.spec.startswith("resnet")) for r in table.rates) == [
        ("lightning", 8, False),
        ("lightning", 8, True),
        ("lightning", 14, False),
        ("lightning", 14, True),
    ]
    assert all(r.fixed_s is not None and r.probe_s for r in table.rates)
    assert table.study_s["start"] >= 0 and table.probe_factor > 0
    two = json.loads(cli("plan", *grid, "--workers", "2", "--throughput", str(out), "--json").stdout)
    more_seeds = [*grid[:6], "--seeds", "0,1,2,3", *grid[8:]]
    four = json.loads(cli("plan", *more_seeds, "--workers", "2", "--throughput", str(out), "--json").stdout)
    assert four["runs"] == 2 * two["runs"] == 16
    assert four["run_seconds"] == pytest.approx(2 * two["run_seconds"])
    # the folder predicts its own study: its start-up is what its wall held beyond its tasks
    assert two["wall_s"] == pytest.approx(timings["wall_s"], rel=1e-6)


@pytest.mark.quick
def test_a_saved_table_plans_as_its_source_did_and_no_users_file_is_overwritten(tmp_path):
    saved = tmp_path / "table.json"
    first = cli("plan", "--config", "paper", "--gpus", "8", "--throughput", str(ASSUMED_GPU), "--save-table",
                str(saved), "--json")  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = cli("plan", "--config", "paper", "--gpus", "8", "--throughput", str(saved), "--json")
    assert json.loads(again.stdout)["wall_s"] == pytest.approx(json.loads(first.stdout)["wall_s"])
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    refused = cli("plan", "--save-table", str(mine))
    assert refused.returncode == 2 and "not a throughput table" in refused.stderr
    assert mine.read_text() == '{"my": "notes"}'


@pytest.mark.quick
def test_a_huge_studys_size_is_stated_from_a_sample_of_its_seeds():
    """Above 1000 runs `study_size` simulates the first seeds and scales by the runs: within 2 % of the
    whole schedule simulated (what `plan` does, seconds slower at this size)."""
    from study.experiment.plan import MAX_UNCONFIRMED_RUNS, study_size

    config = get_config("default").with_overrides(seeds=tuple(range(150)))  # 1200 runs
    table = planning.load_throughput(None)
    runs, seconds = study_size(config, table, workers=2)
    assert runs == 1200 > MAX_UNCONFIRMED_RUNS
    assert seconds == pytest.approx(plan_study(config, table, workers=2).wall_s, rel=0.02)


@pytest.mark.quick
def test_a_confirmed_large_study_is_stated_and_let_through():
    import argparse

    from study.cli.study import study_size_line

    config = get_config("default").with_overrides(seeds=tuple(range(200)))
    args = argparse.Namespace(executor="local", device="cpu", workers=2, confirm_size=True)
    assert study_size_line(config, args).startswith("study: 1600 runs, predicted ")
    small = study_size_line(get_config("default"), args)
    assert small.startswith("study: 56 runs, predicted ") and small.endswith(
        "min here (`resnet-study plan` with the same flags: the details)"
    )


@pytest.mark.quick
def test_a_study_the_shipped_table_cannot_time_is_stated_by_its_runs():
    import argparse

    from study.cli.study import study_size_line

    config = get_config("default").with_overrides(backends=("keras", "keras-jax", "lightning"))
    args = argparse.Namespace(executor="local", device="cpu", workers=2, confirm_size=False)
    assert study_size_line(config, args).startswith("study: 84 runs (no time: the shipped table lacks a backend")
