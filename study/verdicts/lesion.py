"""The lesion verdict (Veit et al. 2016): do residual nets degrade gracefully where plain nets collapse?

Input: lesion.csv (`study.measure.lesion`): every trained network's test error intact, with each
block deleted in turn, and with k random blocks deleted. The unit of replication is the seed: the
twins' networks of one seed (same initial weights, same batches) count as one network, their values
averaged. Per seed the mean rise of test error over single-block deletions, each arch judged where
its claim lives: the residual nets at the deepest depth whose residual nets learned (Veit et al.'s
claim is about deep residual nets: the more blocks, the less each one matters), the plain nets at the
deepest depth whose plain nets learned (mean intact test error below `LEARNED`; a net that never
learned has nothing to lose). Both are a seed's networks (same seed, same data order), so a seed's
plain rise and residual rise are one pair. Every claim is about the typical seed, by an exact sign
test (`study.verdicts.signs`: valid whatever the distribution of the rises):

- ``difference``: the seed's plain rise exceeds its residual rise in more than half of all seeds;
- ``graceful``: the residual rise stays below `GRACEFUL` in more than half of all seeds;
- ``collapse``: the residual rise exceeds `GRACEFUL`; ``reversed``: the residual rise exceeds the plain.

*Holds* when ``difference`` and ``graceful`` are shown at alpha (an intersection-union test);
*does not hold* when ``collapse`` or ``reversed`` is shown at alpha/2 (Bonferroni over the two; at
least 6 seeds at alpha 0.05); else *inconclusive*, with the seeds that would settle it. A claim
states the share of seeds its seeds leave open. Means with t intervals are reported, not decided on.
"""

from __future__ import annotations

import pandas as pd

from study.core.spec import ARCHS
from study.verdicts.common import LEARNED, per_seed, t_interval
from study.verdicts.signs import fewest_seeds, open_text, sign_test

GRACEFUL = 0.10  # residual nets degrade gracefully: rise of test error per deleted block below 10 points


def network_rises(lesion: pd.DataFrame) -> pd.DataFrame:
    """Per network: intact error and the mean rise of test error over single-block deletions."""
    intact = lesion[lesion.kind == "intact"].set_index("run_key").test_error.rename("intact_error")
    single = lesion[lesion.kind == "single"].groupby("run_key").test_error.mean().rename("lesioned_error")
    ident = lesion.drop_duplicates("run_key").set_index("run_key")[["backend", "arch", "depth", "seed"]]
    table = ident.join(intact).join(single, how="inner")
    table["rise"] = table.lesioned_error - table.intact_error
    return table.reset_index()


def _depth_entry(depth: int, seeds: pd.DataFrame) -> dict:
    entry = {"depth": int(depth)}
    for arch, cell in seeds.groupby("arch"):
        low, high = t_interval(cell.rise.to_numpy(float))
        entry[arch] = {"n": len(cell), "intact_error": float(cell.intact_error.mean()), "rise": float(cell.rise.mean()),
                       "ci_low": low, "ci_high": high}  # fmt: skip
    return entry


def _tests(plain: pd.Series, residual: pd.Series, alpha: float) -> dict:
    """The four sign tests on the seeds' rises (`plain` and `residual` indexed by seed)."""
    paired = (plain - residual).dropna().to_numpy(float)  # seed by seed
    return {
        "difference": sign_test(paired, 0.0, "above", alpha),
        "graceful": sign_test(residual.to_numpy(float), GRACEFUL, "below", alpha),
        "collapse": sign_test(residual.to_numpy(float), GRACEFUL, "above", alpha / 2),
        "reversed": sign_test(-paired, 0.0, "above", alpha / 2),
        "min_p": 2.0 ** -len(paired),  # the smallest p the sign test can reach with these seeds
    }


def lesion_verdict(lesion: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Do residual nets degrade gracefully where plain nets collapse? (see the module docstring)"""
    header = {"alpha": alpha, "graceful": GRACEFUL, "learned": LEARNED, "unit": "seed (twins averaged)",
              "method": "exact sign tests on the seeds' rises (the typical seed; study.verdicts.signs)"}  # fmt: skip
    if lesion is None or lesion.empty:
        return {"verdict": "inconclusive", "reason": "no lesion data (lesion.csv)", **header, "depths": []}
    networks = network_rises(lesion)
    seeds = per_seed(networks, ["arch", "depth"], "rise").merge(
        per_seed(networks, ["arch", "depth"], "intact_error"), on=["arch", "depth", "seed"]
    )
    depths = [_depth_entry(depth, group) for depth, group in seeds.groupby("depth")]
    curves = (
        lesion[lesion.kind.isin(["intact", "single", "random"])]
        .groupby(["arch", "depth", "k"])
        .test_error.mean()
        .reset_index()
    )
    header["curves"] = [
        {"arch": r.arch, "depth": int(r.depth), "k": int(r.k), "test_error": float(r.test_error)}
        for r in curves.itertuples()
    ]
    learned = {arch: [d for d in depths if arch in d and d[arch]["intact_error"] < LEARNED] for arch in ARCHS}
    if not learned["plain"] or not learned["resnet"]:
        missing = " and ".join(a for a in ARCHS if not learned[a])
        reason = f"no depth whose {missing} nets learned (mean intact test error below {100 * LEARNED:.0f} %)"
        return {"verdict": "inconclusive", "reason": reason, **header, "depths": depths, "depth": None}
    at = {arch: learned[arch][-1]["depth"] for arch in ARCHS}  # each arch's deepest depth that learned
    plain, residual = (seeds[(seeds.arch == a) & (seeds.depth == at[a])].set_index("seed").rise.astype(float)
                       for a in ARCHS)  # fmt: skip
    resnet = learned["resnet"][-1]["resnet"]
    test = {"depth": at["resnet"], "plain_depth": at["plain"], "n_plain": len(plain), "n_resnet": len(residual),
            "plain_rise": float(plain.mean()), "resnet_rise": float(residual.mean()),
            "resnet_ci_low": resnet["ci_low"], "resnet_ci_high": resnet["ci_high"]}  # fmt: skip
    if len(plain) < 2 or len(residual) < 2:
        return {"verdict": "inconclusive", "reason": "fewer than 2 seeds per arch", **header, "depths": depths,
                "depth": at["resnet"], "test": test}  # fmt: skip
    test |= _tests(plain, residual, alpha)
    verdict, reason = _decide(test, alpha)
    return {"verdict": verdict, "reason": reason, **header, "depths": depths, "depth": at["resnet"], "test": test}


def _decide(test: dict, alpha: float) -> tuple[str, str]:
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731
    where = f"at depth {test['depth']}"
    if test["plain_depth"] != test["depth"]:
        where += f" (plain nets at {test['plain_depth']}, the deepest where they learned)"
    summary = (
        f"{where} one deleted block raises residual nets' test error by "
        f"{pts(test['resnet_rise'])} points on average, plain nets' by {pts(test['plain_rise'])} "
        f"({test['n_resnet']} and {test['n_plain']} seeds)"
    )
    shown = {name: test[name]["shown"] for name in ("difference", "graceful", "collapse", "reversed")}
    difference, graceful = test["difference"], test["graceful"]
    if shown["difference"] and shown["graceful"]:
        left_open = "; ".join((open_text(difference, "lose less to a lesion as a plain net than as a residual one"),
                               open_text(graceful, f"rise by {pts(GRACEFUL)} points or more")))  # fmt: skip
        return "holds", (
            f"{summary}; in the typical seed the plain rise is larger ({difference['beyond']} of {difference['n']} "
            f"seeds, sign test p = {difference['p']:.2g}) and the residual rise below {pts(GRACEFUL)} points "
            f"({graceful['beyond']} of {graceful['n']}, p = {graceful['p']:.2g}); left open: {left_open}"
        )
    if shown["collapse"]:
        return ("does_not_hold", f"residual nets collapse too: {summary} (above {pts(GRACEFUL)} points in "
                                 f"{test['collapse']['beyond']} of {test['collapse']['n']} seeds, p = "
                                 f"{test['collapse']['p']:.2g})")  # fmt: skip
    if shown["reversed"]:
        return "does_not_hold", f"residual nets degrade more than plain nets: {summary}"
    missing = [what for name, what in (("difference", "the plain rise larger"),
               ("graceful", f"the residual rise below {pts(GRACEFUL)} points")) if not shown[name]]  # fmt: skip
    note = ""
    if test["min_p"] > alpha:
        note = (f" (with {difference['n']} seeds the sign test's smallest p is {test['min_p']:.2g}; "
                f"{fewest_seeds(alpha)} seeds are the fewest that can show it)")  # fmt: skip
    needs = [f"{name}: about {test[name]['seeds_needed']} seeds" for name in ("difference", "graceful")
             if not shown[name] and test[name]["seeds_needed"]]  # fmt: skip
    settle = f"; 80 % power at the observed shares: {', '.join(needs)}" if needs else ""
    return "inconclusive", f"{summary}; not shown in the typical seed: {' and '.join(missing)}" + note + settle
