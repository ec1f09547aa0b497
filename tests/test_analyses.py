"""Lesion, norm preservation, ReLU vs skip and the Findings: each verdict flips with the truth of a
synthetic table, and deleting a block means what the spec says it means, in both twins."""

import itertools

import numpy as np
import pandas as pd
import pytest

from study.core.init import initial_state, restrict_state
from study.core.presets import parse_spec
from study.core.twin import load
from study.report.findings import findings
from study.verdicts.lesion import GRACEFUL, lesion_verdict
from study.verdicts.norm_preservation import norm_verdict
from study.verdicts.relu_skip import relu_skip_verdict

pytestmark = pytest.mark.quick  # every test here is in the edit loop's tier (README)

DEPTHS = (8, 20, 56)
NETWORKS = [(backend, seed) for backend in ("keras", "lightning") for seed in range(6)]  # 6: a claim at alpha/2


def lesion_table(intact, rise, rng_seed=0):
    """Single-block deletions of every network: intact(arch, depth) error, rise(arch, depth) per block."""
    rng, rows = np.random.default_rng(rng_seed), []
    for arch, depth, (backend, seed) in itertools.product(("plain", "resnet"), DEPTHS, NETWORKS):
        ident = {"run_key": f"{backend}-{arch}{depth}-s{seed}", "backend": backend, "arch": arch, "depth": depth,
                 "seed": seed, "activation": "relu", "norm": "batch"}  # fmt: skip
        base = intact(arch, depth) + rng.normal(0, 0.005)
        rows.append(ident | {"kind": "intact", "k": 0, "draw": 0, "blocks": "", "test_error": base})
        for block in range((depth - 2) // 2):
            error = min(0.9, base + rise(arch, depth) + rng.normal(0, 0.01))
            rows.append(ident | {"kind": "single", "k": 1, "draw": 0, "blocks": f"b{block}", "test_error": error})
    return pd.DataFrame(rows)


def learned_until_20(arch, depth):
    return 0.75 if (arch, depth) == ("plain", 56) else 0.03


def test_residual_nets_degrading_gracefully_where_plain_nets_collapse_holds():
    verdict = lesion_verdict(lesion_table(learned_until_20, lambda arch, depth: 0.5 if arch == "plain" else 0.02))
    assert verdict["verdict"] == "holds", verdict["reason"]
    test = verdict["test"]
    # each arch where its claim lives: residual nets at the deepest depth they learned, plain nets at 20
    assert verdict["depth"] == test["depth"] == 56 and test["plain_depth"] == 20
    assert "plain nets at 20, the deepest where they learned" in verdict["reason"]
    assert test["resnet_rise"] == pytest.approx(0.02, abs=0.01) and test["plain_rise"] == pytest.approx(0.5, abs=0.02)
    assert test["difference"]["p"] == test["graceful"]["p"] == 2.0**-6  # every seed of six: exact sign tests
    assert test["n_plain"] == test["n_resnet"] == len({seed for _, seed in NETWORKS})  # the seed is the unit


def test_the_twins_networks_of_one_seed_count_once():
    """Audit: both twins' networks of one seed counted as two networks (pseudo-replication): identical
    copies turned p = 0.10 into p = 0.02. The verdict of a table and of its doubled copy is the same."""
    one = lesion_table(learned_until_20, lambda arch, depth: 0.3 if arch == "plain" else 0.02)
    one = one[one.backend == "lightning"]
    both = pd.concat([one, one.assign(backend="keras", run_key=lambda f: "k" + f.run_key)])
    single, doubled = lesion_verdict(one), lesion_verdict(both)
    assert doubled["test"]["n_plain"] == single["test"]["n_plain"] == 6
    assert doubled["test"]["difference"]["p"] == pytest.approx(single["test"]["difference"]["p"])
    norms = norms_table(lambda depth: 1 + 2 / depth, lambda depth: 1.35)
    lone = norms[(norms.backend == "lightning") | (norms.stage == "init")]
    trained = lone[lone.stage == "trained"]
    doubled = pd.concat([lone, trained.assign(backend="keras", run_key=lambda f: "k" + f.run_key)])
    for stage in ("init", "trained"):
        tests = [norm_verdict(frame)["stages"][stage] for frame in (lone, doubled)]
        assert [c["n"] for c in tests[1]["cells"]] == [6] * 6
        assert tests[0]["tests"]["plain_further"]["p"] == pytest.approx(tests[1]["tests"]["plain_further"]["p"])


def test_residual_nets_that_collapse_too_do_not_hold():
    verdict = lesion_verdict(lesion_table(learned_until_20, lambda arch, depth: 0.5))
    assert verdict["verdict"] == "does_not_hold" and "collapse too" in verdict["reason"]


def test_residual_nets_degrading_as_much_as_plain_nets_do_not_hold():
    verdict = lesion_verdict(lesion_table(learned_until_20, lambda arch, depth: 0.06 if arch == "plain" else 0.08))
    assert verdict["verdict"] == "does_not_hold" and GRACEFUL > 0.08 and "more than plain" in verdict["reason"]


def test_a_lesion_verdict_needs_evidence_not_a_point_estimate():
    """Audit: "does not hold" came from point estimates. Residual rise barely above plain rise, within the
    noise, decides nothing."""
    verdict = lesion_verdict(lesion_table(learned_until_20, lambda arch, depth: 0.05 if arch == "plain" else 0.051))
    assert verdict["verdict"] == "inconclusive", verdict["reason"]


def test_no_plain_net_that_learned_is_inconclusive():
    verdict = lesion_verdict(lesion_table(lambda arch, depth: 0.8 if arch == "plain" else 0.03, lambda a, d: 0.05))
    assert verdict["verdict"] == "inconclusive" and verdict["depth"] is None


def norms_table(resnet_ratio, plain_ratio, rng_seed=0, seeds=6):
    """Block ratios at init and after training: resnet_ratio(depth) and plain_ratio(depth), with noise."""
    rng, rows = np.random.default_rng(rng_seed), []
    networks = [(backend, seed) for backend in ("keras", "lightning") for seed in range(seeds)]
    for stage, arch, depth, (backend, seed) in itertools.product(
        ("init", "trained"), ("plain", "resnet"), DEPTHS, networks
    ):
        ratio = (resnet_ratio if arch == "resnet" else plain_ratio)(depth)
        for block in range((depth - 2) // 2):
            ident = {"stage": stage, "run_key": f"{backend}-{arch}{depth}-s{seed}", "backend": backend,
                     "arch": arch, "depth": depth, "seed": seed, "activation": "relu", "norm": "batch"}  # fmt: skip
            noise = float(np.exp(rng.normal(0, 0.02)))
            rows.append(ident | {"block_index": block, "block": f"b{block}", "grad_in": 1.0, "grad_out": 1.0,
                                 "ratio": ratio * noise})  # fmt: skip
    return pd.DataFrame(rows)


def test_residual_blocks_approaching_ratio_1_with_depth_holds():
    verdict = norm_verdict(norms_table(lambda depth: 1 + 2 / depth, lambda depth: 1.35))
    assert verdict["verdict"] == "holds", verdict["reason"]
    trained = verdict["stages"]["trained"]["tests"]
    assert trained["plain_further"]["depth"] == 56 and trained["residual_approaches"]["depths"] == [8, 56]
    for test in trained.values():  # every seed of six, seed by seed: exact sign tests
        assert test["beyond"] == test["n"] == 6 and test["p"] == 2.0**-6
    five = norm_verdict(norms_table(lambda depth: 1 + 2 / depth, lambda depth: 1.35, seeds=5))
    assert five["verdict"] == "holds"  # all four at alpha (an intersection-union test): no correction
    assert "left open: 5 of 5 seeds do not exclude that up to 45 % of seeds go the other way in" in five["reason"]


def test_one_seed_against_the_trend_keeps_five_from_holding():
    """With 5 seeds a claim needs every seed (p = 1/32): one seed whose residual deviation is no lower at
    depth 56 than at 8 leaves it open, and the verdict says how many seeds would settle it."""
    norms = norms_table(lambda depth: 1 + 2 / depth, lambda depth: 1.35, seeds=5)
    odd = (norms.arch == "resnet") & (norms.seed == 3) & (norms.depth == 56)
    norms.loc[odd, "ratio"] = 1 + 2 / 8
    verdict = norm_verdict(norms)
    assert verdict["verdict"] == "inconclusive" and "seeds per cell would give" in verdict["settle"], verdict["reason"]
    assert int(verdict["settle"].split()[1]) > 5


def test_residual_blocks_moving_away_from_1_do_not_hold():
    """The opposite is shown at alpha/4 (four ways to fail): 7 seeds at least; 6 cannot show it."""
    verdict = norm_verdict(norms_table(lambda depth: 1 + depth / 100, lambda depth: 1.9, seeds=7))
    assert verdict["verdict"] == "does_not_hold" and "move away from ratio 1" in verdict["reason"]
    six = norm_verdict(norms_table(lambda depth: 1 + depth / 100, lambda depth: 1.9, seeds=6))
    assert six["verdict"] == "inconclusive" and "needs at least 7 seeds" in six["reason"]


def test_residual_blocks_flat_in_depth_decide_nothing():
    """Audit: tau >= 0 as a point estimate gave "does not hold"; a flat trend shows neither side."""
    verdict = norm_verdict(norms_table(lambda depth: 1.2, lambda depth: 1.35))
    assert verdict["verdict"] == "inconclusive", verdict["reason"]


def test_residual_blocks_further_from_1_than_plain_do_not_hold():
    verdict = norm_verdict(norms_table(lambda depth: 1 + 8 / depth, lambda depth: 1.05, seeds=7))
    assert verdict["verdict"] == "does_not_hold" and "further from ratio 1 than plain" in verdict["reason"]


def activation_table(error, seeds=tuple(range(6)), rng_seed=0):
    """Runs at depth 56 over activation x norm x arch x seed; error(arch, activation, norm) is the truth."""
    rng, rows = np.random.default_rng(rng_seed), []
    for activation, norm, arch, seed in itertools.product(("relu", "tanh", "sigmoid"), ("batch", "none"),
                                                          ("plain", "resnet"), seeds):  # fmt: skip
        value = float(np.clip(error(arch, activation, norm) + rng.normal(0, 0.02), 0, 1))
        rows.append({"run_key": f"{arch}-{activation}-{norm}-{seed}", "backend": "lightning", "arch": arch,
                     "depth": 56, "seed": seed, "activation": activation, "norm": norm, "final_train_error": value,
                     "final_test_error": value, "best_test_error": value, "diverged": False})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "truth, answer",
    [
        (lambda arch, act, norm: 0.8 if arch == "plain" else 0.02, "skip"),  # the skip trains every activation
        (lambda arch, act, norm: 0.02 if act == "relu" and arch == "resnet" else 0.85, "skip_and_relu"),
        (lambda arch, act, norm: 0.02 if act == "relu" else 0.8, "relu"),  # ReLU alone trains; the skip adds nothing
        (lambda arch, act, norm: 0.02 if act == "relu" or arch == "resnet" else 0.8, "either"),
        (lambda arch, act, norm: 0.8, "neither"),
    ],
)
def test_relu_or_skip_answer_follows_the_truth(truth, answer):
    verdict = relu_skip_verdict(activation_table(truth))
    assert verdict["verdict"] == answer, verdict["reason"]
    assert verdict["trained"] and verdict["depth"] == 56 and len(verdict["cells"]) == 6


@pytest.mark.parametrize("seeds, answer", [(3, "inconclusive"), (5, "skip"), (6, "skip")])
def test_relu_or_skip_needs_the_seeds_its_statements_need(seeds, answer):
    """Each statement is an exact sign test: 3 seeds cannot show any (p >= 1/8), and the verdict says how
    many would; "skip" is a conjunction, each part at alpha: 5 seeds suffice."""
    verdict = relu_skip_verdict(activation_table(lambda arch, a, n: 0.8 if arch == "plain" else 0.02,
                                                 seeds=tuple(range(seeds))))  # fmt: skip
    assert verdict["verdict"] == answer, verdict["reason"]
    assert (verdict["settle"] is not None) == (answer == "inconclusive")
    if seeds == 5:  # a claim names what its seeds leave open
        assert "left open: 5 of 5 seeds do not exclude that up to 45 % of seeds go against" in verdict["reason"]
    if answer == "inconclusive":  # the nearest answer, and what its statements need
        assert verdict["settle"].startswith("nearest answer 'skip'") and "at least 5 seeds" in verdict["settle"]


def test_a_failing_other_activation_is_a_union_corrected_by_bonferroni():
    """The answer "relu": some other activation's residual net fails — shown at alpha/2 (two others): 5 seeds of
    failing tanh and sigmoid (p = 1/32 > 0.025) do not show it; 6 do."""
    truth = lambda arch, act, norm: 0.02 if act == "relu" else 0.8  # noqa: E731
    five = relu_skip_verdict(activation_table(truth, seeds=tuple(range(5))))
    assert five["verdict"] == "inconclusive" and "at least 6 seeds" in five["settle"], five
    assert relu_skip_verdict(activation_table(truth, seeds=tuple(range(6))))["verdict"] == "relu"


def test_one_activation_is_answered_at_initialization_and_names_the_config():
    verdict = relu_skip_verdict(activation_table(lambda *a: 0.1)[lambda f: f.activation == "relu"])
    assert verdict["verdict"] == "not_asked" and not verdict["trained"] and "--config relu-skip" in verdict["reason"]


def test_findings_answer_every_question_from_the_verdicts():
    from tables import effect, table

    from study.verdicts.agreement import agreement
    from study.verdicts.degradation import degradation

    results = table(effect, seeds=tuple(range(8)), noise=0.005)
    verdict = {
        "degradation": degradation(results),
        "agreement": agreement(results),
        "relu_vs_skip": relu_skip_verdict(activation_table(lambda arch, a, n: 0.8 if arch == "plain" else 0.02)),
        "lesion": lesion_verdict(lesion_table(learned_until_20, lambda arch, d: 0.5 if arch == "plain" else 0.02)),
        "norm_preservation": norm_verdict(norms_table(lambda d: 1 + 2 / d, lambda d: 1.35)),
    }
    paragraphs = findings(verdict, {"dataset": "digits", "shape": "8x8 grey images", "epochs": 15})
    questions = ["**Degradation.**", "**The twins.**", "**ReLU or skip.**", "**Lesion (Veit et al.).**",
                 "**Norm preservation (Zaeemzadeh et al.).**", "*Scale.*"]  # fmt: skip
    assert [p.split(" ")[0] if not p.startswith("**") else p[: p.index(".**") + 3] for p in paragraphs] == questions
    # each answer opens with one plain sentence, the numbers after it; no identifier in the words
    assert paragraphs[0].startswith("**Degradation.** Yes: deeper plain nets train worse; residual nets do not.")
    assert "Not shown" in paragraphs[0]
    assert paragraphs[2].startswith("**ReLU or skip.** The skip:") and "sigmoid" in paragraphs[2]
    rise = f"{100 * verdict['lesion']['test']['plain_rise']:.1f}"  # the number behind the verdict, in points
    assert paragraphs[3].startswith("**Lesion (Veit et al.).** Yes: deleting one block") and rise in paragraphs[3]
    assert "CIFAR-10" in paragraphs[-1]
    for paragraph in paragraphs:
        assert len(paragraph.split()) <= 130, paragraph  # ~120 words a question; details one click away
        assert not any(word in paragraph for word in ("_hold", "exact_outcomes", "not_asked", "skip_and")), paragraph
    verdict["lesion"] = lesion_verdict(lesion_table(learned_until_20, lambda arch, depth: 0.5))
    assert findings(verdict, {"dataset": "digits", "epochs": 15})[3].startswith("**Lesion (Veit et al.).** No:")


@pytest.mark.parametrize("backend", ["keras", "lightning"])
def test_deleting_a_block_whose_branch_is_zero_changes_nothing(backend):
    """A residual block whose branch outputs 0 (last BN's gamma and beta 0) computes relu(x) = x on a ReLU
    net's non-negative input: deleting it must give the same logits; deleting a working block must not."""
    twin, spec = load(backend), parse_spec("resnet-14", input_shape=(8, 8, 1))
    state = initial_state(spec, seed=0)
    state["layer1.1.bn2.weight"][:] = 0.0
    x = np.random.default_rng(0).standard_normal((6, 8, 8, 1)).astype("float32")

    def logits(lesion):
        lesioned = spec.with_overrides(lesion=lesion)
        model = twin.build(lesioned, "float64")
        twin.load_torch_state(model, restrict_state(state, lesioned))
        return twin.forward(model, x.astype("float64"), training=False)

    whole = logits(())
    assert np.allclose(logits(("layer1.1",)), whole, rtol=1e-12, atol=1e-12)
    assert not np.allclose(logits(("layer1.0",)), whole, rtol=1e-3)
    plain = parse_spec("plain-14", input_shape=(8, 8, 1), lesion=("layer2.0", "layer1.1"))
    assert [b.shortcut for b in plain.blocks() if b.lesioned] == ["identity", "pad"]  # identity where it fits


def test_relu_or_skip_answers_skip_only_where_the_skip_is_shown_to_help():
    """Audit: the per-cell `skip_helps` tests were computed and not used. A tanh cell whose residual net
    learns but whose plain net is not shown worse by the minimum effect keeps the answer from "skip"."""

    def truth(arch, act, norm):
        if act == "tanh":
            return 0.03 if arch == "plain" else 0.02  # both learn: the skip does not help by 2 points
        return 0.8 if arch == "plain" else 0.02

    verdict = relu_skip_verdict(activation_table(truth))
    tanh = next(c for c in verdict["cells"] if (c["activation"], c["norm"]) == ("tanh", "batch"))
    assert not tanh["skip_helps"]["shown"] and verdict["verdict"] != "skip", verdict["reason"]


def test_a_plain_relu_net_that_learns_in_half_the_seeds_names_what_stays_open():
    """The relu-skip study's own finding at 6 seeds: plain ReLU-56 learns in 3 seeds and fails in 3 (a
    bimodal cell). Neither "fails" nor "learns" holds for its typical seed, so no answer is claimed; the
    verdict names the nearest answer, the open statement, and that more seeds would not show it."""

    def truth(arch, act, norm):
        return {"relu": 0.02, "tanh": 0.3, "sigmoid": 0.85}[act] if arch == "resnet" else 0.85

    table = activation_table(truth)
    half = (table.arch == "plain") & (table.activation == "relu") & (table.seed < 3)
    table.loc[half, "final_train_error"] = 0.2
    verdict = relu_skip_verdict(table)
    assert verdict["verdict"] == "inconclusive", verdict["reason"]
    assert verdict["settle"].startswith("nearest answer 'skip_and_relu'; open: the plain relu net fails: 3 of 6")
    assert "no number of seeds would show it" in verdict["settle"]
    table.loc[half, "final_train_error"] = 0.85  # every seed fails: the answer is shown
    assert relu_skip_verdict(table)["verdict"] == "skip_and_relu"
