"""Is it the ReLU or the identity skip that lets the deep net train?

Trained evidence comes from a study whose grid varies the activation (the ``relu-skip`` config): at
its deepest depth, per activation and normalization, plain vs residual nets' final training error
(one-sided Welch of H0 plain − residual <= 2 points, Holm over the cells: does the skip help by more
than the minimum effect? `skip_helps`), the seed the unit of replication, and whether each net
learned: a net *learns* when its error's 95 % CI lies below `LEARNED` (50 %; chance is 90 %), *fails*
when it lies above. With BN (the study's recipe), the answer (`relu_skip_verdict`):

- *skip*: the plain ReLU net fails, and with every activation the residual net learns and the skip
  helps (`skip_helps`): the skip, not the ReLU, trains the deep net;
- *skip_and_relu*: the plain ReLU net fails, the residual ReLU net learns and the skip helps it, and
  the residual net fails with some other activation: the deep net needs both;
- *relu*: the plain ReLU net learns, and a residual net with another activation fails;
- *either*: the plain ReLU net learns, and the residual net learns with every activation;
- *neither*: the plain and the residual ReLU nets both fail;
- *inconclusive*: otherwise (a CI straddling 50 % decides nothing), or without a trained activation
  grid — then the report gives the evidence at initialization (`study.measure.gradflow`: how fast the gradient
  decays per layer) and names the config that answers with trained runs.
"""

from __future__ import annotations

import pandas as pd

from study.verdicts.common import LEARNED, MARGIN_EFFECT, Difference, as_float, holm, per_seed, t_interval

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


def relu_skip_verdict(results: pd.DataFrame, gradflow_fit: pd.DataFrame | None = None, alpha: float = 0.05) -> dict:
    """The answer from trained runs where the study has them, with the evidence at initialization."""
    header = {"alpha": alpha, "metric": "final_train_error", "config": CONFIG, "at_init": at_init(gradflow_fit)}
    activations = set(results.activation) if "activation" in results else set()
    grid = results.groupby("depth").activation.nunique() if activations else pd.Series(dtype=int)
    depths = [int(d) for d, count in grid.items() if count > 1]
    if not depths or "relu" not in activations:
        reason = f"this study trains one activation; `resnet-study run --config {CONFIG}` answers with trained runs"
        return {"verdict": "inconclusive", "reason": reason, "trained": False, **header, "cells": []}
    depth = max(depths)
    # The unit of replication is the seed: several twins' runs of one seed count once (their mean).
    data = per_seed(results[results.depth == depth], ["activation", "norm", "arch"], "final_train_error")
    cells = []
    for (activation, norm), group in data.groupby(["activation", "norm"]):
        plain = group[group.arch == "plain"].final_train_error.to_numpy(float)
        residual = group[group.arch == "resnet"].final_train_error.to_numpy(float)
        cell = {
            "activation": activation,
            "norm": norm,
            "depth": depth,
            "n_plain": len(plain),
            "n_resnet": len(residual),
        }
        for arch, values in (("plain", plain), ("resnet", residual)):
            estimate = (float(values.mean()), *t_interval(values)) if len(values) else (None, None, None)
            cell[arch], cell[f"{arch}_ci_low"], cell[f"{arch}_ci_high"] = estimate
        # Does the skip help by more than the minimum effect? H0 plain − residual <= m (one-sided Welch).
        p = None
        if len(plain) >= 2 and len(residual) >= 2:
            p = Difference.of_means((1.0, plain), (-1.0, residual)).p_above(MARGIN_EFFECT)
        cell["p"] = p
        cells.append(cell)
    for cell, adjusted in zip(cells, holm([c["p"] for c in cells]), strict=True):
        cell["p_holm"] = adjusted
        cell["skip_helps"] = adjusted is not None and adjusted < alpha
    with_bn = [c for c in cells if c["norm"] == "batch"] or cells
    relu = next((c for c in with_bn if c["activation"] == "relu"), None)
    others = [c for c in with_bn if c["activation"] != "relu"]
    if relu is None or relu["plain_ci_low"] is None:
        return {
            "verdict": "inconclusive",
            "reason": "too few plain ReLU runs",
            "trained": True,
            **header,
            "cells": cells,
        }
    learns = lambda c, arch: c[f"{arch}_ci_high"] is not None and c[f"{arch}_ci_high"] < LEARNED  # noqa: E731
    fails = lambda c, arch: c[f"{arch}_ci_low"] is not None and c[f"{arch}_ci_low"] > LEARNED  # noqa: E731
    pts = lambda v: f"{100 * v:.0f} %"  # noqa: E731
    described = "; ".join(
        f"{c['activation']}{'' if c['norm'] == 'batch' else ' without BN'}: plain {pts(c['plain'])}, residual "
        f"{pts(c['resnet'])}" for c in cells if c["plain"] is not None and c["resnet"] is not None
    )  # fmt: skip
    residual_learns = [learns(c, "resnet") for c in [relu, *others]]
    other_fails = any(fails(c, "resnet") for c in others)
    skip_helps = all(c["skip_helps"] for c in [relu, *others])
    if fails(relu, "plain") and all(residual_learns) and skip_helps:
        verdict = "skip"
    elif fails(relu, "plain") and learns(relu, "resnet") and relu["skip_helps"] and other_fails:
        verdict = "skip_and_relu"
    elif learns(relu, "plain") and other_fails:
        verdict = "relu"
    elif learns(relu, "plain") and all(residual_learns):
        verdict = "either"
    elif fails(relu, "plain") and fails(relu, "resnet"):
        verdict = "neither"
    else:
        verdict = "inconclusive"
    reason = f"final training error at depth {depth}: {described}"
    return {"verdict": verdict, "reason": reason, "trained": True, "depth": depth, **header, "cells": cells}
