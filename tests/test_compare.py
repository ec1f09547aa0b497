"""`resnet-study compare`: every installed backend measured in one command, its agreement numbers the
ones `agree` reports, the picks computed from the rows by the stated rule, and the files it writes."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli import main
from study.compare.recommend import recommend
from study.compare.render import markdown, page
from study.compare.runner import run_worker

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--specs", "resnet8", "--batch", "8", "--steps", "2", "--repeats", "3", "--train-steps", "1"]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, env=env, timeout=900)


def test_compare_measures_what_is_installed_lists_the_rest_and_logs_to_wandb(tmp_path, without_tensorflow):
    """One test (the comparison runs once): TensorFlow hidden, so `keras` is listed with its install line,
    not measured; Lightning measured; the files and the offline W&B run written."""
    out = tmp_path / "out"
    env = {**without_tensorflow, "WANDB_MODE": "offline"}
    env.pop("WANDB_SERVICE", None)
    result = cli("compare", "--backends", "keras,lightning", *TINY, "--out", str(out), "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data == json.loads((out / "compare.json").read_text())
    [row] = data["speed"]
    assert (row["backend"], row["spec"], row["device"], row["precision"]) == ("lightning", "resnet-8", "cpu", "32")
    assert row["train_img_per_s"] > 0 and row["infer_img_per_s"] > 0 and row["peak_host_mb"] > 0
    assert row["first_step_s"] >= 0 and len(row["train_epochs"]) == 3 and row["peak_device_mb"] is None
    [missing] = data["missing"]
    assert missing["backend"] == "keras" and "hidden by the test" in missing["reason"]
    assert "tensorflow" in missing["install"]
    assert not data["failures"] and not data["agreement"]
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    assert data["versions"]["lightning"]["framework"].startswith("torch ")
    assert {d["use_case"] for d in data["recommendations"]["use_cases"]} == {
        "train",
        "inference",
        "first-step",
        "memory",
    }

    assert (out / "compare.md").read_text() == markdown(data)
    html = (out / "compare.html").read_text()
    assert html == page(data) and "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # opens from disk: nothing fetched
    [run] = (out / "wandb").glob("offline-run-*")
    media = run / "files" / "media" / "table" / "compare"
    assert {p.name.split("_")[0] for p in media.glob("*.table.json")} >= {"speed", "agreement"}
    speed = json.loads(next(media.glob("speed_*.table.json")).read_text())
    assert len(speed["data"]) == len(data["speed"])


@pytest.mark.quick
def test_compare_refuses_a_folder_that_is_not_its_own(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["compare", "--backends", "lightning", "--out", str(mine), "--wandb", "disabled"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"


@pytest.mark.quick
def test_a_worker_past_its_time_limit_is_stopped_and_reported(tmp_path):
    job = {"backend": "lightning", "device": "cpu", "specs": ["resnet8"], "precisions": ["32"], "compile": False,
           "batch": 8, "steps": 2, "repeats": 1, "agree_specs": ["resnet8"], "agree_batch": 8, "seed": 0,
           "train_steps": 1, "dtypes": ["float64"]}  # fmt: skip
    result, output = run_worker(job, tmp_path / "worker.json", 0.5, lambda line: None)
    assert result["failures"] == [{"step": "all", "error": "stopped at the time limit (0 s)"}] or (
        result["failures"][-1]["error"].startswith("stopped at the time limit")
    )
    assert "[stopped after" in output and not (tmp_path / "worker.json").exists()


@pytest.mark.quick
def test_the_page_escapes_what_it_shows():
    data = json.loads((ROOT / "docs" / "compare" / "cpu.json").read_text())
    data["failures"] = [{"backend": "keras", "step": "speed", "error": "<script>alert(1)</script>"}]
    html = page(data)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown(data)  # Markdown shows it as text, never runs it
    assert "<script" not in markdown(data)


# -- the picks: computed from rows by the stated rule (synthetic rows with a known answer) ------------


def speed_row(backend, spec="resnet-20", epochs=(100, 110, 120), infer=(500, 510), first=1.0, memory=1000.0, **kw):
    return {"backend": backend, "spec": spec, "precision": kw.get("precision", "32"),
            "compile": kw.get("compile", False), "train_img_per_s": sorted(epochs)[len(epochs) // 2],
            "train_epochs": list(epochs),
            "infer_img_per_s": sorted(infer)[len(infer) // 2], "infer_epochs": list(infer), "first_step_s": first,
            "peak_host_mb": memory, "peak_device_mb": None}  # fmt: skip


def agreement_row(backend, passed=True):
    return {"backend": backend, "spec": "resnet-20", "dtype": "float64", "passed": passed}


def picks(speed, agreement=()):
    advice = recommend({"speed": speed, "agreement": list(agreement)})
    return {d["use_case"]: d["pick"] for d in advice["use_cases"]}, advice


@pytest.mark.quick
def test_a_zero_measurement_is_ranked_without_dividing_by_it():
    """A row whose time to the first step or memory reads 0 (as a repeated precision once gave) is
    ranked and described, never a ZeroDivisionError."""
    rows = [speed_row("lightning", first=0.0, memory=0.0), speed_row("keras", first=0.0, memory=0.0),
            speed_row("keras", spec="resnet-8", epochs=(0, 0, 0)), speed_row("lightning", spec="resnet-8")]  # fmt: skip
    chosen, advice = picks(rows, [agreement_row("keras")])
    assert chosen["first-step"] and all(d["evidence"] for d in advice["use_cases"])


@pytest.mark.quick
def test_a_backend_is_ahead_only_where_its_epochs_all_beat_the_others():
    fast, slow = speed_row("lightning", epochs=(200, 210, 220)), speed_row("keras", epochs=(100, 110, 120))
    assert picks([fast, slow], [agreement_row("keras")])[0]["train"] == "lightning"
    overlapping = speed_row("keras", epochs=(150, 190, 205))  # median lower, but its best epoch beats 200
    assert picks([fast, overlapping], [agreement_row("keras")])[0]["train"] == "lightning or keras"


@pytest.mark.quick
def test_a_backend_that_disagrees_with_lightning_is_never_picked():
    fastest = speed_row("keras-jax", epochs=(900, 910, 920), infer=(9000, 9100), first=0.1, memory=10.0)
    chosen, advice = picks([speed_row("lightning"), fastest], [agreement_row("keras-jax", passed=False)])
    assert "keras-jax" not in " ".join(chosen.values())
    assert "does not agree" in advice["excluded"]["keras-jax"]
    unverified, advice = picks([speed_row("lightning"), fastest])  # no agreement row at all
    assert "keras-jax" not in " ".join(unverified.values()) and "not measured" in advice["excluded"]["keras-jax"]


@pytest.mark.quick
def test_the_pick_depends_on_the_network_where_winners_differ():
    rows = [speed_row("lightning", "resnet-20", epochs=(200, 201, 202)), speed_row("keras", "resnet-20"),
            speed_row("lightning", "resnet-56", epochs=(50, 51, 52)),
            speed_row("keras", "resnet-56", epochs=(90, 91, 92))]  # fmt: skip
    train = picks(rows, [agreement_row("keras")])[0]["train"]
    assert train.startswith("depends on the network") and "resnet-20 lightning" in train and "resnet-56 keras" in train


@pytest.mark.quick
def test_throughputs_of_too_few_epochs_do_not_rank():
    fast, slow = speed_row("lightning", epochs=(200, 210)), speed_row("keras", epochs=(100, 110))
    assert picks([fast, slow], [agreement_row("keras")])[0]["train"] == "lightning or keras"


@pytest.mark.quick
def test_rows_of_different_devices_are_never_ranked_together():
    gpu = speed_row("lightning", epochs=(900, 910, 920)) | {"device": "gpu"}
    cpu = speed_row("keras", epochs=(100, 110, 120)) | {"device": "cpu"}
    train = picks([gpu, cpu], [agreement_row("keras")])[0]["train"]
    assert "resnet-20 on gpu lightning" in train and "resnet-20 on cpu keras" in train


@pytest.mark.quick
def test_single_numbers_tie_within_their_margin():
    rows = [speed_row("lightning", memory=1000.0, first=10.0), speed_row("keras", memory=1040.0, first=12.0)]
    chosen = picks(rows, [agreement_row("keras")])[0]
    assert chosen["memory"] == "lightning or keras" and chosen["first-step"] == "lightning or keras"
    rows = [speed_row("lightning", memory=1000.0, first=10.0), speed_row("keras", memory=1200.0, first=20.0)]
    chosen = picks(rows, [agreement_row("keras")])[0]
    assert chosen["memory"] == "lightning" and chosen["first-step"] == "lightning"


@pytest.mark.quick
def test_bf16_and_compile_picks_appear_only_with_their_rows():
    rows = [speed_row("lightning"), speed_row("keras")]
    assert {"train-bf16", "lightning-compile"}.isdisjoint(picks(rows, [agreement_row("keras")])[0])
    rows += [speed_row("lightning", precision="bf16", epochs=(300, 310, 320)),
             speed_row("lightning", compile=True, epochs=(400, 410, 420), first=30.0)]  # fmt: skip
    chosen = picks(rows, [agreement_row("keras")])[0]
    assert chosen["train-bf16"] == "lightning" and chosen["lightning-compile"] == "compile"


@pytest.mark.quick
def test_the_docs_hold_the_cpu_comparison_as_compare_renders_it():
    """docs/benchmarks.md's "what to pick when" is compare's own output for docs/compare/cpu.json."""
    data = json.loads((ROOT / "docs" / "compare" / "cpu.json").read_text())
    assert markdown(data) in (ROOT / "docs" / "benchmarks.md").read_text()
    changed = copy.deepcopy(data)
    changed["speed"][0]["train_img_per_s"] += 1000
    assert markdown(changed) not in (ROOT / "docs" / "benchmarks.md").read_text()


@pytest.mark.quick
@pytest.mark.parametrize(
    "args",
    [
        ["--specs", "resnet-9"],
        ["--specs", ""],
        ["--backends", "keras,caffe"],
        ["--precisions", "16"],
        ["--batch", "0"],
        ["--timeout", "-1"],
        ["--compile", "--backends", "keras"],
    ],
)
def test_bad_compare_flags_are_one_line_and_exit_2(args, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", *args, "--out", str(out), "--wandb", "disabled"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()
