"""The design search (`resnet-study design`, `study.experiment.design`): candidate studies resampled
from a real pilot (docs/data/pilot-e10), decided by the product's verdicts, costed by `plan`."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.configs import CONFIGS
from study.experiment import design
from study.experiment.throughput_tables import load_throughput

PILOT = Path(__file__).parent.parent / "docs" / "data" / "pilot-e10"
DEFAULT = design.Candidate("pilot-e10", 10, (8, 32), 7, ("keras", "lightning"))


@pytest.mark.quick
def test_a_resampled_study_keeps_each_seeds_runs_together():
    pilot = design.load_pilot(PILOT)
    results, lesion, norms = design.Draws(pilot, (8, 32), ("keras", "lightning")).draw(np.array([3, 3, 5]))
    assert sorted(results.seed.unique()) == [0, 1, 2] and set(results.depth) == {8, 32}
    original = pilot.results[3].set_index(["backend", "arch", "depth"]).final_train_error.sort_index()
    for seed in (0, 1):  # seed 3 drawn twice: two seeds, each with all of seed 3's runs (both twins, both depths)
        drawn = results[results.seed == seed].set_index(["backend", "arch", "depth"]).final_train_error.sort_index()
        pd.testing.assert_series_equal(drawn, original.loc[drawn.index])
        assert len(drawn) == 8
    assert results.run_key.is_unique and lesion.seed.max() == 2 and set(norms.seed) <= {0, 1, 2}


def test_the_default_design_decides_every_question_at_the_pilots_effects():
    pilot = design.load_pilot(PILOT)
    scores = design.score(pilot, DEFAULT, studies=30)
    assert all(scores[q]["power"] >= 0.85 for q in design.QUESTIONS), scores  # 90 % at 2000 studies (docs)
    # with one twin the agreement is not asked
    alone = design.score(pilot, design.Candidate("pilot-e10", 10, (8, 32), 7, ("lightning",)), studies=5)
    assert alone["agreement"] is None and alone["degradation"]["power"] == 1.0


@pytest.mark.quick
def test_a_pilot_whose_deep_plain_nets_learn_gives_degradation_no_power(tmp_path):
    """The search reads the pilot's runs: make plain-32 learn in every run and degradation is never
    decided as holding, while the questions that do not read plain-32's error keep their power."""
    folder = tmp_path / "pilot"
    shutil.copytree(PILOT, folder)
    results = pd.read_csv(folder / "results.csv")
    deep = (results.arch == "plain") & (results.depth == 32)
    results.loc[deep, "final_train_error"] = 0.003
    results.to_csv(folder / "results.csv", index=False)
    scores = design.score(design.load_pilot(folder), DEFAULT, studies=10)
    assert scores["degradation"]["power"] == 0.0 and scores["degradation"]["verdicts"].get("does_not_hold", 0) > 0
    assert scores["norm_preservation"]["power"] == 1.0


@pytest.mark.quick
def test_five_seeds_cannot_show_the_twins_equivalent_in_six_tests():
    """Holm over 6 equivalence tests needs 2^-n <= 0.05/6: 7 seeds. The search measures that, not a rule."""
    pilot = design.load_pilot(PILOT)
    five = design.score(pilot, design.Candidate("pilot-e10", 10, (8, 32), 5, ("keras", "lightning")), studies=10)
    assert five["agreement"]["power"] == 0.0 and five["degradation"]["power"] == 1.0


@pytest.mark.quick
def test_cost_is_plans_prediction():
    costed = design.cost(DEFAULT, CONFIGS["default"], load_throughput(None))
    assert costed["runs"] == 56 and 0 < costed["wall_s"] < costed["cpu_s"]


def test_the_search_ranks_designs_meeting_the_objective_first(capsys):
    table = load_throughput(None)
    rows = design.search([PILOT], [5, 7], studies=10, table=table, wall_budget=700, cpu_budget=1300)
    best = rows[0]
    assert best["within_budget"] and best["decided"] == best["asked"] == 4, best
    meeting = [r for r in rows if r["within_budget"] and r["decided"] == r["asked"]]
    assert [r["cpu_s"] for r in meeting if r["asked"] == 4] == sorted(r["cpu_s"] for r in meeting if r["asked"] == 4)
    assert "power: the share" in "\n".join(design.describe(rows, 0.9))


def test_design_refuses_a_folder_that_is_not_a_pilot(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "study", "design", str(tmp_path / "empty")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    done = subprocess.run([sys.executable, "-m", "study", "design", str(tmp_path / "missing")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "not a study folder" in done.stderr


@pytest.mark.quick
@pytest.mark.parametrize("counts", ["0", "x", "5,1"])
def test_design_refuses_bad_seed_counts(counts):
    with pytest.raises(design.UserError, match="--seed-counts"):
        design.seeds_list(counts)


@pytest.mark.quick
@pytest.mark.parametrize("flags", [["--power", "1"], ["--wall-budget", "0"], ["--cpu-budget", "nan"]])
def test_design_refuses_bad_budgets_and_power_in_one_line(flags):
    done = subprocess.run([sys.executable, "-m", "study", "design", str(PILOT), *flags], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and flags[0] in done.stderr, done.stderr
