"""Is it the ReLU or the identity skip that lets the deep net train?

Trained evidence comes from a study whose grid varies the activation (the ``relu-skip`` config): at
its deepest depth, per activation and normalization, each net's final training error per seed (the
unit of replication; several twins' runs of one seed averaged). Every statement is about the typical
seed, by exact sign tests (`study.verdicts.signs`, valid whatever the distribution; a seed exactly at
the threshold counts against):

- a net *learns* when more than half of all seeds end below `LEARNED` (50 %; chance is 90 %), and
  *fails* when more than half end above it;
- the skip *helps* when more than half of all seeds' plain error exceeds their residual error (the same
  seed: the same data order) by more than `MARGIN_EFFECT` (2 points).

With BN (the study's recipe), the answer (`relu_skip_verdict`); each is a conjunction of statements,
each shown at alpha (an intersection-union test: its error at most alpha with no correction), and
"some other activation fails" a union over the other activations, each shown at alpha over their
number (Bonferroni):

- *skip*: the plain ReLU net fails, and with every activation the residual net learns and the skip
  helps: the skip, not the ReLU, trains the deep net;
- *skip_and_relu*: the plain ReLU net fails, the residual ReLU net learns and the skip helps it, and
  the residual net fails with some other activation: the deep net needs both;
- *relu*: the plain ReLU net learns, and a residual net with another activation fails;
- *either*: the plain ReLU net learns, and the residual net learns with every activation;
- *neither*: the plain and the residual ReLU nets both fail;
- *not_asked*: a study that trains one activation: the report gives the evidence at initialization
  (`study.measure.gradflow`: how fast the gradient decays per layer), a measurement, not a verdict,
  and names the config that answers with trained runs.
- *inconclusive*: otherwise (with the seeds that would settle it).
"""

from __future__ import annotations

import pandas as pd

from study.verdicts.common import LEARNED, MARGIN_EFFECT, as_float, per_seed
from study.verdicts.signs import fewest_seeds, seeds_for, sign_p, sign_test, tail_bound

CONFIG = "relu-skip"


def at_init(gradflow_fit: pd.DataFrame | None) -> list[dict]:
    """Per arch, activation and normalization at the deepest probed depth: the fitted log10 decay of the
    gradient norm per layer and the first-to-last layer ratio (`study.measure.gradflow`)."""
    if gradflow_fit is None or gradflow_fit.empty:
        return []
    deepest = gradflow_fit[gradflow_fit.depth == gradflow_fit.depth.max()]
    table = deepest.groupby(["arch", "activation", "norm"], as_index=False)[["decay_per_layer", "first_to_last"]].mean()
    return [
        {"arch": r.arch, "activation": r.activation, "norm": r.norm, "depth": int(deepest.depth.max()),
         "decay_per_layer": as_float(r.decay_per_layer), "first_to_last": as_float(r.first_to_last)}
        for r in table.itertuples()
    ]  # fmt: skip


def _net(values, alpha: float) -> dict:
    """One net's errors over the seeds: its median with the distribution-free interval, and the sign
    tests' p of "learns" (below `LEARNED`) and of "fails" (above it)."""
    learns = sign_test(values, LEARNED, "below", alpha)
    fails = sign_test(values, LEARNED, "above", alpha)
    keep = ("n", "estimate", "ci_low", "ci_high", "ci_coverage", "mean")
    return {**{key: learns[key] for key in keep}, "below": learns["beyond"], "above": fails["beyond"],
            "p_learns": learns["p"], "p_fails": fails["p"]}  # fmt: skip


def relu_skip_verdict(results: pd.DataFrame, gradflow_fit: pd.DataFrame | None = None, alpha: float = 0.05) -> dict:
    """The answer from trained runs where the study has them, with the evidence at initialization."""
    header = {"alpha": alpha, "metric": "final_train_error", "config": CONFIG, "at_init": at_init(gradflow_fit),
              "learned": LEARNED, "margin_effect": MARGIN_EFFECT,
              "method": "exact sign tests (the typical seed; study.verdicts.signs)"}  # fmt: skip
    activations = set(results.activation) if "activation" in results else set()
    grid = results.groupby("depth").activation.nunique() if activations else pd.Series(dtype=int)
    depths = [int(d) for d, count in grid.items() if count > 1]
    if not depths or "relu" not in activations:
        reason = (f"not asked: this study trains one activation; `resnet-study run --config {CONFIG}` answers with "
                  "trained runs (here: the gradient at initialization, a measurement)")  # fmt: skip
        return {"verdict": "not_asked", "reason": reason, "settle": None, "trained": False, **header, "cells": []}
    depth = max(depths)
    # The unit of replication is the seed: several twins' runs of one seed count once (their mean).
    data = per_seed(results[results.depth == depth], ["activation", "norm", "arch"], "final_train_error")
    cells = []
    for (activation, norm), group in data.groupby(["activation", "norm"]):
        by_arch = {arch: group[group.arch == arch].set_index("seed").final_train_error for arch in ("plain", "resnet")}
        cell = {"activation": activation, "norm": norm, "depth": depth}
        for arch, values in by_arch.items():
            cell[arch] = _net(values.to_numpy(float), alpha)
        # Does the skip help by more than the minimum effect, seed by seed? (plain − residual > m)
        gain = (by_arch["plain"] - by_arch["resnet"]).dropna().to_numpy(float)
        helps = sign_test(gain, MARGIN_EFFECT, "above", alpha)
        cell["skip_helps"] = {key: helps[key] for key in ("n", "beyond", "estimate", "ci_low", "ci_high", "p", "shown")}
        cells.append(cell)
    with_bn = [c for c in cells if c["norm"] == "batch"] or cells
    relu = next((c for c in with_bn if c["activation"] == "relu"), None)
    base = {"trained": True, "depth": depth, **header, "cells": cells}
    if relu is None or relu["plain"]["n"] == 0 or relu["resnet"]["n"] == 0:
        return {"verdict": "inconclusive", "reason": "no plain or residual ReLU runs with BN", "settle": None, **base}
    verdict, note = _decide(relu, [c for c in with_bn if c is not relu], alpha)
    settle = note if verdict == "inconclusive" else None
    pts = lambda v: "–" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    described = "; ".join(
        f"{c['activation']}{'' if c['norm'] == 'batch' else ' without BN'}: plain {pts(c['plain']['estimate'])}, "
        f"residual {pts(c['resnet']['estimate'])}" for c in cells
    )  # fmt: skip
    reason = f"final training error at depth {depth}, median seed: {described}" + ("" if settle else f"; {note}")
    return {"verdict": verdict, "reason": reason, "settle": settle, **base}


def _statements(relu: dict, others: list[dict], alpha: float) -> dict[str, list[tuple]]:
    """Each answer as its statements: (what it says, the sign test's seeds beyond, n, p, level). "Some
    other activation fails" stands as the other whose residual net's "fails" has the smallest p, at
    alpha over the number of others (Bonferroni): the union is shown exactly when that one is."""
    each = alpha / max(1, len(others))

    def say(c: dict, arch: str, kind: str, level: float = alpha) -> tuple:
        net = "plain" if arch == "plain" else "residual"
        if kind == "helps":
            test = c["skip_helps"]
            return (f"the skip helps {c['activation']} by more than {100 * MARGIN_EFFECT:.0f} points", test["beyond"],
                    test["n"], test["p"], level)  # fmt: skip
        entry = c[arch]
        beyond = entry["below"] if kind == "learns" else entry["above"]
        return (f"the {net} {c['activation']} net {kind}", beyond, entry["n"], entry[f"p_{kind}"], level)

    every = [relu, *others]
    failing = [say(min(others, key=lambda c: c["resnet"]["p_fails"]), "resnet", "fails", each)] if others else []
    learn_all = [say(c, "resnet", "learns") for c in every]
    return {
        "skip": [say(relu, "plain", "fails"), *learn_all, *(say(c, "resnet", "helps") for c in every)],
        "skip_and_relu": [say(relu, "plain", "fails"), say(relu, "resnet", "learns"), say(relu, "resnet", "helps"),
                          *failing],
        "relu": [say(relu, "plain", "learns"), *failing],
        "either": [say(relu, "plain", "learns"), *learn_all],
        "neither": [say(relu, "plain", "fails"), say(relu, "resnet", "fails")],
    }  # fmt: skip


def _decide(relu: dict, others: list[dict], alpha: float) -> tuple[str, str]:
    """The first answer (module docstring order) whose every statement is shown at its level, with what
    its weakest statement leaves open; else
    "inconclusive", naming the nearest answer (fewest statements the seeds lean against, then fewest
    open), what is open and the seeds that would show each at its observed share of seeds (Laplace's
    rule) — or that none would."""
    answers = _statements(relu, others, alpha)
    for answer, statements in answers.items():
        if all(p <= level for _, _, _, p, level in statements):
            what, beyond, n, _, _ = min(statements, key=lambda s: (s[1] / max(1, s[2]), s[2]))  # the weakest
            bound = tail_bound(n - beyond, n)
            return answer, (f"left open: {beyond} of {n} seeds do not exclude that up to {100 * bound:.0f} % of seeds "
                            f"go against '{what}'")  # fmt: skip

    def distance(statements: list[tuple]) -> tuple[int, int]:  # statements the seeds lean against, then open
        against = sum(2 * beyond <= n for _, beyond, n, _, _ in statements)
        return against, sum(p > level for _, _, _, p, level in statements)

    nearest, statements = min(answers.items(), key=lambda item: distance(item[1]))
    open_parts = []
    for what, beyond, n, p, level in statements:
        if p <= level:
            continue
        if n and sign_p(n, n) > level:
            need = f"{n} seeds cannot show it at {level:.3g}: it needs at least {fewest_seeds(level)} seeds"
        elif (seeds := seeds_for((beyond + 1) / (n + 2), level)) is not None:
            need = f"about {seeds} seeds would give it 80 % power at the observed share"
        else:
            need = "no number of seeds would show it at the observed share"
        open_parts.append(f"{what}: {beyond} of {n} seeds ({need})")
    return "inconclusive", f"nearest answer '{nearest}'; open: " + "; ".join(open_parts)
