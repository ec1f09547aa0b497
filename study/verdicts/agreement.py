"""Do the twins agree? Exactness (the float64 replay) first, then equivalence of the float32 outcomes.

Two levels of evidence, one verdict (docs/design.md, "How the verdicts are reached"):

1. **Exactness** (exactness.json, `study.measure.exactness`): the study's recipe replayed by every
   twin in float64 from the same weights on the same batches. The verdict judges it itself: every
   recorded error of every network of a pair against the product's tolerance
   (`study.files.EXACTNESS_TOLERANCE`), whatever the file says; a pair the replay did not cover has
   no exactness evidence. Only networks whose rounding sensitivity (the replay of one twin from
   perturbed weights) stays within `EXACTNESS_ROUNDING_LIMIT` are judged: in a chaotic net correct
   twins differ as much as wrong ones; a pair covered by such nets alone is *ill_conditioned*.
2. **Outcomes**, per (arch, depth) cell, pair of backends and metric (final train and test error),
   from the float32 study runs. The unit of replication is the seed: both twins trained a network of
   each seed from the same initial weights on the same batches, so the seed's two runs are one pair,
   and the tests are on the per-seed differences d_s = a_s − b_s: exact sign tests on the typical
   seed (`study.verdicts.signs`; valid whatever the distribution of the differences — skewed,
   heavy-tailed, bimodal, rare divergences, identical runs — and whatever the correlation between the
   twins' runs, which is reported). Three tests per cell and metric: equivalence (sign TOST: more than
   half of all seeds within ±margin on each side), difference beyond the margin (the two one-sided
   tests, Bonferroni over the two) and plain difference (two-sided); each is Holm-corrected over all
   cells and metrics (K tests). Identical runs are evidence with a bound, never p = 0: with n seeds
   the smallest p is 2^-n, so 5 identical seeds cannot pass Holm over 12 tests (8 can), and a claim
   states the share of seeds its seeds leave open (Clopper-Pearson: 5 of 5 leave up to 45 %).
3. **Divergence**: a diverged run is a failure at chance level (`study.verdicts.inputs`), and the
   seeds where exactly one twin diverged are tested for asymmetry (exact two-sided sign test over all
   cells of a pair).

A cell whose network the replay found chaotic (`chaotic_cells`) is compared in distribution only,
never called equivalent (`study.verdicts.outcomes`): its equivalence tests leave the Holm family.

Per cell: *equivalent* (TOST after Holm), *differs* (beyond the margin after Holm; a chaotic cell:
one twin's runs shifted), *chaotic* (compared in distribution, no shift shown), *undecided* (neither,
or fewer than two seeds both twins ran). Every undecided cell states `bound` (the
differences the sign TOST excludes for the typical seed at the family's level alpha/K, at most 100
points), `inside`/`below`/`above` (its seeds within and beyond each side of the margin) and
`seeds_needed` (seeds for 80 % power of its sign TOST at level alpha/K at the observed shares, by
Laplace's rule, exactly over the trinomial).

Overall: *disagree* when a replay failed, a cell differs, or the twins diverge asymmetrically;
*agree* only when every pair's replay passed, every reproducible cell is equivalent and no chaotic
cell differs; *exact_outcomes_undecided*
when the replays passed and no cell differs but some are undecided (named, with their bounds and
what would settle them); *inconclusive* otherwise (a pair without a replay, one backend, no cell run
by two backends).

**Settling undecided cells** (`resnet-study run --settle N`, declared when the study starts): a
sequential design with two looks, the error split between them (Bonferroni over the looks). Look 1:
the grid seeds, every test above at alpha/2 (Holm over the K tests). Every cell undecided at look 1
gets N more seeds for every twin (`settle.json` records which); look 2 tests those cells on all their
seeds at alpha/2 with Bonferroni over the same K (level alpha/(2K)), whatever cells were chosen. A
cell decided at look 1 keeps that decision. A false claim in the final verdict is a false claim at
look 1 or at look 2 (where each look's tests would have run on every cell), so the family's error
stays at most alpha/2 + alpha/2 = alpha. A cell whose added runs are not all finished stays undecided:
look 2 has a fixed number of seeds. Exactness and divergence are judged once, on the grid seeds.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd
from scipy import stats

from study.core.twin import BACKENDS
from study.files import EXACTNESS_PERTURBATION, EXACTNESS_ROUNDING_LIMIT, EXACTNESS_TOLERANCE
from study.verdicts.common import as_float
from study.verdicts.outcomes import outcome_cells, second_look, tost_family
from study.verdicts.signs import MAX_SEEDS, shares, tost_seeds

METRICS = ("final_train_error", "final_test_error")


def cell_label(cell: dict, pairs: list, joiner: str = " vs ") -> str:
    """A cell's name, e.g. "plain-56"; in a study with more than one pair of backends also its pair,
    "plain-56 (keras vs lightning)" (the report joins with " − ": first minus second)."""
    name = f"{cell['arch']}-{cell['depth']}"
    return name + (f" ({joiner.join(cell['backends'])})" if len(pairs) > 1 else "")


def _seeds_to_settle(cell: dict, margin: float, sequential: bool) -> str:
    """What would settle an undecided cell, and its cost: the seeds for 80 % TOST power (the most any
    metric needs), the runs that adds to both twins, and their training time at the cell's own measured
    time per run (where results.csv has it). Outside a sequential study, also the `--settle` a new study
    would declare for 80 % power at its second look (level alpha/(2K))."""
    tests = cell["tests"].values()
    if any(t["n"] < 2 for t in tests):
        return "at least 2 seeds run by both twins"
    needed = [t["seeds_needed"] for t in tests]
    if any(t.get("tost_power") is None for t in tests):
        return "the seeds that would settle it (not computed)"
    if not all(needed):
        low = min(tests, key=lambda t: t["inside"] / t["n"])
        return (f"not within reach: {low['inside']} of {low['n']} seeds lie within the margin, so more seeds would not "
                f"show it (the typical seed differs), or more than {MAX_SEEDS} would be needed")  # fmt: skip
    have = min(t["n"] for t in tests)

    def cost(seeds: int) -> str:
        runs = 2 * max(0, seeds - have)
        return f"{runs} more runs" + (
            f", ~{runs * cell['wall_s'] / 60:.0f} min of training at its {cell['wall_s']:.0f} s per run"
            if cell.get("wall_s") else ""
        )  # fmt: skip

    text = f"about {max(needed)} seeds ({cost(max(needed))})"
    if sequential or any(t["inside"] is None for t in tests):
        return text
    looked = [tost_seeds(*shares((t["below"], t["above"], t["inside"]))[:2], t["level"] / 2) for t in tests]
    if all(looked):
        extra = max(0, max(looked) - have)
        text += f"; a new study declared with `run --settle {extra}` ({cost(max(looked))})"
    return text


def _as_decided(undecided: list[dict], wanted: float = 0.8) -> str:
    """The seeds that give "agree" as it is decided — every undecided cell's every metric equivalent —
    `wanted` power at the observed shares within the margin, whatever the dependence between the tests:
    each gets 1 - (1 - wanted) / T (Bonferroni over its T tests). "" where it cannot be computed."""
    tests = [t for c in undecided for t in c["tests"].values()]
    if len(tests) < 2 or any(t.get("inside") is None or t.get("tost_power") is None for t in tests):
        return ""
    each = 1 - (1 - wanted) / len(tests)
    seeds = [tost_seeds(*shares((t["below"], t["above"], t["inside"]))[:2], t["level"], each) for t in tests]
    if not all(seeds):
        return ""
    return (f"; for the verdict as decided (all {len(tests)} open tests equivalent), about {max(seeds)} seeds per "
            f"cell give {100 * wanted:.0f} % power")  # fmt: skip


def _seed_range(seeds: list[int]) -> str:
    seeds = sorted(seeds)
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 else (
        ", ".join(map(str, seeds)))  # fmt: skip


def _errors(errors: dict, spec: str) -> list[tuple[float, str, str]]:
    return [(math.inf if v == "inf" else float(v), q, spec) for q, v in errors.items()]


def rounding_sensitivity(network: dict) -> tuple[float, str, str] | None:
    """The largest error of the network's rounding replay, or None (a schema-1 file, which has none)."""
    return max(_errors(network["rounding"]["errors"], network["spec"])) if "rounding" in network else None


def replay_status(exactness: dict | None, pairs: list[tuple[str, str]]) -> dict:
    """Per pair of backends: "passed" (every recorded error of every judged network within the
    product's tolerance), "failed" (one beyond it), "ill_conditioned" (the replay covers the pair only
    on networks whose rounding sensitivity exceeds the product's limit, so it cannot judge it),
    "missing" (the replay does not cover the pair). A network is judged when its sensitivity is within
    `EXACTNESS_ROUNDING_LIMIT`, whatever the file says (every network of a schema-1 file)."""
    status, worst, chaotic = {}, {}, {}
    for pair in pairs:
        errors = []
        for network in (exactness or {}).get("networks", []):
            sensitivity = rounding_sensitivity(network)
            for entry in network["pairs"]:
                if set(entry["backends"]) != set(pair):
                    continue
                if sensitivity is not None and not sensitivity[0] <= EXACTNESS_ROUNDING_LIMIT:
                    chaotic[pair] = max(chaotic.get(pair, sensitivity), sensitivity)
                else:
                    errors += _errors(entry["errors"], network["spec"])
        if not errors:
            status[pair] = "ill_conditioned" if pair in chaotic else "missing"
            continue
        worst[pair] = max(errors)
        status[pair] = "passed" if worst[pair][0] <= EXACTNESS_TOLERANCE else "failed"
    return {"status": status, "worst": worst, "ill_conditioned": chaotic}


def chaotic_cells(exactness: dict | None) -> dict[tuple[str, int], float]:
    """(arch, depth) -> rounding sensitivity of every replayed network that amplifies rounding beyond
    `EXACTNESS_ROUNDING_LIMIT`: its study cell is compared in distribution (`study.verdicts.outcomes`).
    A cell the replay did not cover is compared seed by seed, as one that was shown not to be chaotic."""
    found = {}
    for network in (exactness or {}).get("networks", []):
        sensitivity = rounding_sensitivity(network)
        if sensitivity is not None and not sensitivity[0] <= EXACTNESS_ROUNDING_LIMIT and "arch" in network:
            found[(str(network["arch"]), int(network["depth"]))] = float(sensitivity[0])
    return found


def _exactness_summary(exactness: dict | None, replay: dict) -> dict:
    status = replay["status"]
    if exactness is None or not status:
        return {"status": "missing", "summary": "no float64 replay of the recipe in this folder (exactness.json)",
                "pairs": []}  # fmt: skip
    pairs = [{"backends": list(p), "status": s, "largest_difference": as_float(replay["worst"][p][0]) if p in
              replay["worst"] else None} for p, s in status.items()]  # fmt: skip
    chaotic = {}  # spec: (rounding sensitivity, its quantity) of each network not judged
    for network in exactness["networks"]:
        found = rounding_sensitivity(network)
        if found is not None and not found[0] <= EXACTNESS_ROUNDING_LIMIT:
            chaotic[network["spec"]] = found[:2]
    names = [network["spec"] for network in exactness["networks"] if network["spec"] not in chaotic]
    not_judged = "; ".join(f"{spec}: {error:.1g} in {quantity}" for spec, (error, quantity) in chaotic.items())
    not_judged = (
        f"not judged, as rounding alone moves them beyond {EXACTNESS_ROUNDING_LIMIT:.0e} (one twin from initial "
        f"weights changed by {EXACTNESS_PERTURBATION:.0e}): {not_judged}"
        if chaotic
        else ""
    )
    ranked = ("failed", "missing", "ill_conditioned", "passed")
    overall = next(s for s in ranked if s in status.values())
    judged = replay["worst"]
    if overall == "passed":
        error, quantity, spec = max(judged.values())
        summary = (
            f"the recipe replayed in float64 ({exactness['recipe']['epochs']} epochs: warm-up, both LR drops, "
            f"augmentation, train- and eval-mode BN, test evaluation) gives the same per-step losses, epoch "
            f"metrics and final weights in every twin: largest relative difference {error:.1e} ({quantity} of "
            f"{spec}), tolerance {EXACTNESS_TOLERANCE:.0e}; networks {', '.join(names)}"
            + (f"; {not_judged}" if chaotic else "")
        )
    elif overall == "ill_conditioned":
        summary = f"the float64 replay cannot judge the twins: every replayed network is {not_judged}"
    elif overall == "failed":
        pair, (error, quantity, spec) = next((p, w) for p, w in judged.items() if status[p] == "failed")
        summary = (
            f"the float64 replay of the recipe differs between the twins: {quantity} of {spec}, "
            f"{' vs '.join(pair)} differs by {error:.2g} (relative), tolerance {EXACTNESS_TOLERANCE:.0e}"
        )
    else:
        missing = [" vs ".join(p) for p, s in status.items() if s == "missing"]
        summary = f"the float64 replay does not cover {', '.join(missing)}"
    return {"status": overall, "tolerance": EXACTNESS_TOLERANCE, "pairs": pairs, "networks": names,
            "not_judged": sorted(chaotic), "summary": summary}  # fmt: skip


def divergence(results: pd.DataFrame, pairs: list[tuple[str, str]], alpha: float) -> list[dict]:
    """Per pair of backends, the seeds of a cell where exactly one twin diverged, and the exact
    two-sided sign test of H0: either twin is as likely to be the one."""
    out = []
    for first, second in pairs:
        a = results[results.backend == first].set_index(["arch", "depth", "seed"]).diverged
        b = results[results.backend == second].set_index(["arch", "depth", "seed"]).diverged
        joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
        only_a, only_b = int((joined.a & ~joined.b).sum()), int((~joined.a & joined.b).sum())
        p = float(stats.binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
        out.append({"backends": [first, second], "only_first": only_a, "only_second": only_b, "p": p,
                    "asymmetric": p < alpha})  # fmt: skip
    return out


def agreement(results: pd.DataFrame, alpha: float = 0.05, margin: float = 0.05, metrics=METRICS,
              exactness: dict | None = None, power: bool = True, settle: dict | None = None) -> dict:  # fmt: skip
    """The agreement verdict (see the module docstring). `results` and `exactness` as
    `study.verdicts.inputs.load_results` and `load_exactness` return them (None: no replay). Without
    `power`, no cell states its power, detectable difference and seeds needed (what a simulation of
    the procedure leaves out: they do not change the verdict). With `settle` (settle.json, as
    `study.verdicts.inputs.load_settle` returns it), the sequential design of a `--settle` study."""
    present = [b for b in BACKENDS if b in set(results.backend)]
    pairs = list(itertools.combinations(present, 2))
    header = {"margin": margin, "alpha": alpha, "metrics": list(metrics), "pairs": [list(p) for p in pairs],
              "design": "the seed's two runs are one pair (same initial weights and batches): exact sign tests "
                        "on the per-seed differences (the typical seed), Holm over all cells and metrics"}  # fmt: skip
    replay = replay_status(exactness, pairs)
    exact = _exactness_summary(exactness, replay)
    chaotic = chaotic_cells(exactness)
    if settle is None:
        cells = outcome_cells(results, pairs, metrics, margin, alpha, power, chaotic)
        diverging = divergence(results, pairs, alpha)
    else:  # look 1 on the grid seeds, look 2 on the cells it left undecided, each at alpha/2
        grid = results[results.seed.isin(settle["grid_seeds"])]
        cells = outcome_cells(grid, pairs, metrics, margin, alpha / 2, power, chaotic)
        second_look(cells, results, settle, metrics, margin, alpha / 2, power)
        diverging = divergence(grid, pairs, alpha)
        header["design"] += (
            f"; sequential (declared --settle {len(settle['extra_seeds'])}): look 1 on seeds "
            f"{_seed_range(settle['grid_seeds'])} at α/2 (Holm), look 2 on the cells it left undecided with "
            f"seeds {_seed_range(settle['extra_seeds'])} added, at α/2 (Bonferroni over the same "
            f"{tost_family(cells, metrics)} tests)"
        )
    if chaotic:
        header["design"] += ("; a chaotic cell (its net amplifies rounding in the float64 replay) is compared in "
                             "distribution: difference tests only, never called equivalent")  # fmt: skip

    def named(verdict):
        return [cell_label(c, pairs) for c in cells if c["verdict"] == verdict]

    equivalent, differ, undecided, alike = (named(v) for v in ("equivalent", "differs", "undecided", "chaotic"))
    pts = f"±{100 * margin:.1f} points"
    reproducible = [c for c in cells if "rounding_sensitivity" not in c]
    shown = (
        (
            f"{len(equivalent)} of {len(reproducible)} {'reproducible ' if chaotic else ''}cells equivalent "
            f"within {pts}"
            + (f": {', '.join(equivalent)}" if equivalent else "")
            + (f"; chaotic, compared in distribution, no difference shown: {', '.join(alike)}" if alike else "")
        )
        if cells
        else "no cell was run by two backends"
    )
    not_excluded = [f"{cell_label(c, pairs)}: {c['reason']}" for c in cells if c["verdict"] == "undecided"]
    asymmetric = [d for d in diverging if d["asymmetric"]]
    sequential = settle is not None
    settle = None
    if exact["status"] == "failed":
        verdict, reason = "disagree", exact["summary"]
    elif differ:
        verdict, reason = "disagree", f"the twins' outcomes differ beyond {pts} in {', '.join(differ)}"
    elif asymmetric:
        d = asymmetric[0]
        verdict = "disagree"
        reason = (f"{d['backends'][0]} diverged alone in {d['only_first']} seeds, {d['backends'][1]} in "
                  f"{d['only_second']} (sign test p = {d['p']:.2g})")  # fmt: skip
    elif len(present) < 2:
        verdict, reason = "inconclusive", "only one backend in the results" if present else "no results"
        settle = "run the study with at least two backends"
    elif not cells:
        verdict, reason = "inconclusive", "no (arch, depth) cell was run by two backends"
        settle = "run the same cells with each backend"
    elif exact["status"] == "missing":
        verdict, reason = "inconclusive", f"{exact['summary']}; outcomes: {shown}"
        settle = "run `resnet-study run` with the same flags on this folder: it replays the recipe (~10 s)"
    elif exact["status"] == "ill_conditioned":
        verdict, reason = "inconclusive", f"{exact['summary']}; outcomes: {shown}"
        settle = ("replay shallower networks (`StudyConfig.exactness_depths`; on digits, plain and residual nets of "
                  "depth 8 and 20 stay within the limit)")  # fmt: skip
    elif not reproducible:
        verdict = "exact_outcomes_undecided"
        reason = (f"the recipe is exact in float64; {shown}; every cell is chaotic, so no outcome is shown "
                  "equivalent seed by seed")  # fmt: skip
        settle = "add a depth whose nets do not amplify rounding (on digits: 8 or 20), replayed by the study"
    elif undecided:
        verdict = "exact_outcomes_undecided"
        reason = f"the recipe is exact in float64; {shown}; undecided: {', '.join(undecided)} (see not excluded)"
        settle = (
            "seeds for 80 % power of the equivalence test: "
            + "; ".join(
                f"{cell_label(c, pairs)} {_seeds_to_settle(c, margin, sequential)}"
                for c in cells
                if c["verdict"] == "undecided"
            )
            + _as_decided([c for c in cells if c["verdict"] == "undecided"])
        )
    else:
        verdict, reason = "agree", f"the recipe is exact in float64; {shown}"
    return {"verdict": verdict, "reason": reason, "settle": settle, **header, "exactness": exact,
            "proved": exact["summary"], "shown": shown, "not_excluded": not_excluded, "divergence": diverging,
            "cells": cells}  # fmt: skip
