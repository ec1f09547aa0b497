"""The training-budget verdict: is the deep plain net only slower, or does it stay behind?

Input: results.csv of a study whose grid varies the training budget (the ``budget`` config: depths 20
and 56, plain and residual, 15, 30 and 60 epochs). The unit of replication is the seed (both twins'
runs of one seed averaged where several twins ran). Per budget and seed, the plain gap (final training
error at the deepest minus the shallowest depth: the seed's two networks share its data order), and
the same for residual nets. Every claim is about the typical seed, by exact sign tests against the
minimum effect m (`study.verdicts.signs`: valid whatever the distribution; a seed exactly at m counts
against):

- *gap_persists*: the plain gap is shown above m at every budget (each at alpha: an
  intersection-union test) — within these budgets more training does not close it;
- *gap_closes*: the plain gap is shown below m at the largest budget (at alpha): given enough epochs
  the deep plain net catches up — it was only slower;
- *inconclusive*: neither, with the seeds that would settle it;
- *not_asked*: a study that trains one budget (it reads the question from its epochs instead:
  degradation's `over_training`).

It also reports how each seed's gap changed from the smallest to the largest budget (the median with
its distribution-free interval) and whether it is shown to close (the change below 0 in the typical
seed, at alpha). A study with one budget has no answer here; `over_training` in the degradation
verdict reads the same question from one budget's epochs.
"""

from __future__ import annotations

import pandas as pd

from study.verdicts.common import MARGIN_EFFECT, per_seed
from study.verdicts.degradation import seed_rises
from study.verdicts.signs import family_seeds, open_text, sign_test

CONFIG = "budget"


def budget_verdict(results: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Is the deep plain net only slower? (see the module docstring)"""
    header = {"alpha": alpha, "margin_effect": MARGIN_EFFECT, "config": CONFIG, "metric": "final_train_error",
              "method": "exact sign tests on the per-seed gap (the typical seed; study.verdicts.signs)"}  # fmt: skip
    budgets = sorted(int(e) for e in results.epochs.unique()) if "epochs" in results else []
    depths = sorted(set(results.depth[results.arch == "plain"]) & set(results.depth[results.arch == "resnet"]))
    if len(budgets) < 2 or len(depths) < 2:
        reason = (f"not asked: this study trains one budget; `resnet-study run --config {CONFIG}` trains 15, 30 and "
                  "60 epochs")  # fmt: skip
        return {"verdict": "not_asked", "reason": reason, "settle": None, **header, "budgets": []}
    ends = [depths[0], depths[-1]]
    seeds = per_seed(results, ["epochs", "arch", "depth"], "final_train_error")
    entries, gaps = [], {}
    for epochs in budgets:
        frame = seeds[seeds.epochs == epochs]
        plain, residual = (seed_rises(frame, "final_train_error", arch, ends) for arch in ("plain", "resnet"))
        entry = {"epochs": epochs, "depths": ends, "plain": None, "resnet": None}
        if len(residual):
            entry["resnet"] = sign_test(residual.to_numpy(float), MARGIN_EFFECT, "below", alpha)
        if len(plain):
            gaps[epochs] = plain
            entry["plain"] = sign_test(plain.to_numpy(float), MARGIN_EFFECT, "above", alpha)
            entry["plain_closed"] = sign_test(plain.to_numpy(float), MARGIN_EFFECT, "below", alpha)
        entries.append(entry)
    if len(gaps) < 2:
        return {"verdict": "inconclusive", "reason": "fewer than 2 budgets with plain runs at both depths",
                "settle": None, **header, "budgets": entries}  # fmt: skip
    first, last = min(gaps), max(gaps)
    change = (gaps[last] - gaps[first]).dropna().to_numpy(float)  # seed by seed
    header["change"] = {"from_epochs": first, "to_epochs": last, **sign_test(change, 0.0, "below", alpha)}
    pts = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    by_budget = {entry["epochs"]: entry for entry in entries if entry["plain"]}
    listing = "; ".join(f"{e} epochs: {pts(t['estimate'])} [{pts(t['ci_low'])}, {pts(t['ci_high'])}], {t['beyond']} "
                        f"of {t['n']} seeds above {pts(MARGIN_EFFECT)}"
                        for e, t in ((e, entry["plain"]) for e, entry in by_budget.items()))  # fmt: skip
    numbers = f"plain gap (depth {ends[1]} − depth {ends[0]}, points, median seed [distribution-free CI]): {listing}"
    m = pts(MARGIN_EFFECT)
    moved = header["change"]
    trend = (f"; it is closing ({pts(moved['estimate'])} points from {first} to {last} epochs in the median seed, "
             f"smaller in {moved['beyond']} of {moved['n']} seeds, p = {moved['p']:.2g}): a larger budget may close "
             "it" if moved["shown"] else "")  # fmt: skip
    persists = [entry["plain"] for entry in by_budget.values()]
    if all(test["shown"] for test in persists):
        verdict, settle = "gap_persists", None
        epochs, weakest = max(((e, entry["plain"]) for e, entry in by_budget.items()),
                              key=lambda item: item[1]["tail_bound"])  # fmt: skip
        reason = (f"the gap is above {m} points in the typical seed at every budget up to {last} epochs (each at "
                  f"alpha); {numbers}{trend}; left open: "
                  + open_text(weakest, f"have a gap of {m} points or less at {epochs} epochs"))  # fmt: skip
    elif by_budget[last]["plain_closed"]["shown"]:
        verdict, settle = "gap_closes", None
        reason = (f"the gap is below {m} points in the typical seed at {last} epochs; {numbers}; left open: "
                  + open_text(by_budget[last]["plain_closed"], f"keep a gap of {m} points or more"))  # fmt: skip
    else:
        verdict = "inconclusive"
        reason = f"neither shown at every budget nor closed at the largest; {numbers}{trend}"
        persist_seeds = family_seeds(persists)
        close_seeds = by_budget[last]["plain_closed"]["seeds_needed"]  # the sign test's own, at Laplace's share
        options = [f"about {s} seeds would give '{name}' 80 % power at the observed shares"
                   for s, name in ((persist_seeds, "gap_persists"), (close_seeds, "gap_closes")) if s]  # fmt: skip
        settle = "; ".join(options) or None
    return {"verdict": verdict, "reason": reason, "settle": settle, **header, "budgets": entries}
