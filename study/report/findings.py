"""The report's opening: one paragraph per question the study exists for, generated from the verdicts.

Each paragraph gives the verdict, the numbers behind it and what the result does not show. Nothing
here is written per run by hand: `findings(verdict, context)` reads `verdict.json`'s content and a
little context about the study (data set, epochs, depths).
"""

from __future__ import annotations

import math

from study.configs import get_config
from study.verdicts.agreement import cell_label

ANSWERS = {  # study.verdicts.relu_skip's verdicts, in words
    "skip": "the skip",
    "skip_and_relu": "both — the skip and the ReLU",
    "relu": "the ReLU",
    "either": "either one",
    "neither": "neither",
}
PAPER = "`resnet-study run --config paper --data-dir <CIFAR-10>` is the full-scale run (CIFAR-10, 164 epochs)"


def _pts(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _times(value: float) -> str:
    """A growth factor as people read it: 1,810x, 9.0x, 0.0090x."""
    if value >= 100:
        return f"{value:,.0f}×"
    return f"{value:.2g}×" if value < 0.1 else f"{value:.1f}×"


def _scale(context: dict) -> str:
    """What this study is not: the caveat every finding shares."""
    if context.get("dataset") == "cifar10" and context.get("epochs", 0) >= 160:
        return "This is the paper's scale (CIFAR-10, 64k iterations)."
    return (
        f"This is {context.get('dataset', 'a small data set')} ({context.get('shape', '')}, {context.get('epochs')} "
        f"epochs), not CIFAR-10 and 64k iterations: {PAPER}."
    )


def degradation_finding(deg: dict, context: dict) -> str:
    parts = []
    for backend, entry in deg["backends"].items():
        cells = {(c["arch"], c["depth"]): c for c in entry["cells"]}
        tests = entry.get("tests") or {}
        depths = entry.get("depths") or []
        if len(depths) < 2 or not tests:
            parts.append(f"{backend}: {entry['reason']}")
            continue
        low, high = depths[0], depths[-1]
        plain = tests["plain_rise"]
        over = entry.get("over_training") or {}
        held = (
            f"; the gap is shown above {_pts(deg['margin_effect'])} from epoch {over['shown_from_epoch']} of "
            f"{over['last_epoch']} on, so plain nets are not merely slower within this budget"
            if over.get("shown_from_epoch")
            else ""
        )
        parts.append(
            f"{backend}: plain nets end at {_pts(cells[('plain', low)]['mean'])} training error at depth {low} and "
            f"{_pts(cells[('plain', high)]['mean'])} at depth {high} on average (the median seed's rise "
            f"{_pts(plain['estimate'])}, {100 * plain['ci_coverage']:.1f} % distribution-free interval "
            f"{_pts(plain['ci_low'])} to {_pts(plain['ci_high'])}; {plain['beyond']} of {plain['n']} seeds above "
            f"{_pts(deg['margin_effect'])}, sign test p = {plain['p']:.2g}); residual nets "
            f"{_pts(cells[('resnet', low)]['mean'])} and {_pts(cells[('resnet', high)]['mean'])}{held}"
        )
    return (
        f"**Degradation: {deg['verdict'].replace('_', ' ')}.** Do deeper plain nets train worse while residual nets "
        f"do not? Measured on the training error, so a rise is a failure to optimise, not overfitting. "
        f"{'; '.join(parts)}. {deg['reason'][0].upper()}{deg['reason'][1:]}. Not shown: whether the same holds at "
        f"CIFAR-10 scale. {_scale(context)}"
    )


def agreement_finding(agr: dict, context: dict) -> str:
    text = f"**The twins: {agr['verdict']}.** Proved exactly: {agr['proved']}. Shown statistically: {agr['shown']}."
    open_cells = []
    for cell in agr["cells"]:
        tests = [t for t in cell["tests"].values() if t["bound"] is not None]
        if cell["verdict"] == "undecided" and tests:
            seeds = [t["seeds_needed"] for t in tests]
            needed = f"about {max(seeds)}" if all(seeds) else "more than can be run"
            inside = min(tests, key=lambda t: t["inside"] / t["n"])
            open_cells.append(
                f"{cell_label(cell, agr['pairs'])} (differences beyond ±{_pts(max(t['bound'] for t in tests))} are "
                f"excluded in the typical seed; {inside['inside']} of {inside['n']} seeds within the margin; "
                f"{needed} seeds would settle the margin)"
            )
    if open_cells:
        text += " Not excluded: smaller differences in " + "; ".join(open_cells) + "."
    if looked := [cell_label(c, agr["pairs"]) for c in agr["cells"] if c.get("look") == 2]:
        text += (f" Decided at the second look of the declared `--settle` design (two looks at α/2 each): "
                 f"{', '.join(looked)}.")  # fmt: skip
    if agr.get("settle"):
        text += f" To settle it: {agr['settle']}."
    return (
        text + " What this does not show: that the twins run equally fast or behave alike on a GPU (bf16, TF32), "
        "which docs/benchmarks.md measures."
    )


def relu_skip_finding(rs: dict, context: dict) -> str:
    init = {(c["arch"], c["activation"], c["norm"]): c for c in rs.get("at_init", [])}
    evidence = []
    for norm, label in (("batch", "with BN"), ("none", "without BN")):
        row = []
        for activation in ("relu", "tanh", "sigmoid"):
            plain, residual = init.get(("plain", activation, norm)), init.get(("resnet", activation, norm))
            if plain and residual and plain["first_to_last"] and residual["first_to_last"]:
                plain_x, residual_x = _times(plain["first_to_last"]), _times(residual["first_to_last"])
                row.append(f"{activation} plain {plain_x} vs residual {residual_x}")
        if row:
            evidence.append(f"{label}: " + ", ".join(row))
    depth = next(iter(init.values()))["depth"] if init else None
    at_init = (
        f"At initialization (depth {depth}, the gradient norm of the first layer over the last one's: 1 is "
        f"preserved, above 1 grows towards the input, below vanishes): " + "; ".join(evidence) + "."
        if evidence
        else ""
    )
    closer = [  # activations whose residual net keeps the gradient nearer its output's norm than the plain net
        (activation, norm)
        for (arch, activation, norm), row in init.items()
        if arch == "resnet"
        and (plain := init.get(("plain", activation, norm)))
        and row["first_to_last"]
        and plain["first_to_last"]
        and abs(math.log10(row["first_to_last"])) < abs(math.log10(plain["first_to_last"]))
    ]
    pairs = [(a, n) for (arch, a, n) in init if arch == "resnet" and ("plain", a, n) in init]
    if pairs:
        at_init += (
            f" The skip keeps the gradient closer to its output's norm than the plain net in {len(closer)} of "
            f"{len(pairs)} activation x normalization settings"
            + (
                f" (not: {', '.join(f'{a} {n}' for a, n in pairs if (a, n) not in closer)})"
                if len(closer) < len(pairs)
                else ""
            )
            + "."
        )
    if rs.get("trained"):
        return (
            f"**ReLU or skip: {ANSWERS.get(rs['verdict'], rs['verdict'])}.** Trained: {rs['reason']}"
            + (f"; {rs['settle']}" if rs.get("settle") else "")
            + f". {at_init} "
            f"Not shown: other normalizations, initializations or optimizers. {_scale(context)}"
        )
    return (
        f"**ReLU or skip: answered at initialization only in this study.** {at_init} Trained runs answer it: "
        f"`resnet-study run --config {rs['config']}` (every activation, with and without BN, plain and residual at "
        f"depth 56: {len(get_config(rs['config']).points())} runs; `resnet-study plan --config {rs['config']}` "
        f"predicts their time on your machine). Not shown here: whether what holds at initialization still holds after "
        f"training."
    )


def lesion_finding(lesion: dict, context: dict) -> str:
    test = lesion.get("test") or {}
    curves = {(c["arch"], c["depth"], c["k"]): c["test_error"] for c in lesion.get("curves", [])}
    deepest = max((c["depth"] for c in lesion.get("curves", []) if c["arch"] == "resnet"), default=None)
    ks = sorted(k for (arch, depth, k) in curves if arch == "resnet" and depth == deepest)
    curve = ", ".join(f"k = {k}: {_pts(curves[('resnet', deepest, k)])}" for k in ks)
    numbers = (
        f" ({test['n_resnet']} residual and {test['n_plain']} plain seeds, each seed's networks (one per twin) "
        f"evaluated with every block deleted in turn and averaged.)"
        if test.get("n_resnet")
        else ""
    )
    reference = test.get("depth")
    unlearned = [d["depth"] for d in lesion.get("depths", []) if reference and d["depth"] > reference and "plain" in d]
    return (
        f"**Lesion (Veit et al.): {lesion['verdict'].replace('_', ' ')}.** Delete blocks of a trained network at "
        f"test time: do residual nets degrade gracefully where plain nets collapse? {lesion['reason']}.{numbers}"
        + (f" Residual nets at depth {deepest}, test error with k blocks deleted at random: {curve}." if curve else "")
        + " Not shown: "
        + (
            f"the comparison at depth {', '.join(map(str, unlearned))}, where the plain nets did not learn and have "
            "nothing left to lose; "
            if unlearned
            else ""
        )
        + f"a deleted downsampling block keeps only its parameter-free shortcut. {_scale(context)}"
    )


def norm_finding(norms: dict, context: dict) -> str:
    parts = []
    for stage, entry in norms.get("stages", {}).items():
        compare = entry.get("tests", {}).get("plain_vs_residual")
        cells = {(c["arch"], c["depth"]): c for c in entry.get("cells", [])}
        resnet = sorted((d, c) for (a, d), c in cells.items() if a == "resnet")
        if compare and resnet:
            trend = ", ".join(f"{c['mean_ratio']:.3f} at depth {d}" for d, c in resnet)
            parts.append(
                f"{stage}: residual blocks' median ratio {trend}; mean |log10 ratio| at depth {compare['depth']} "
                f"{compare['resnet']:.3f} residual vs {compare['plain']:.3f} plain (median seed; plain further from "
                f"1 in {compare['beyond']} of {compare['n']} seeds)"
            )
    return (
        f"**Norm preservation (Zaeemzadeh et al.): {norms['verdict'].replace('_', ' ')}.** The ratio "
        f"‖∂L/∂x_in‖ / ‖∂L/∂x_out‖ of every block (1: the block passes the gradient on with its norm): do residual "
        f"blocks approach 1 as the net gets deeper, and plain blocks not? "
        + ("; ".join(parts) + ". " if parts else f"{norms['reason']}. ")
        + f"Not shown: the ratios of deeper nets (110, 1202 layers) than this study trains. {_scale(context)}"
    )


def budget_finding(budget: dict, context: dict) -> str:
    change = budget["change"]
    return (
        f"**Training budget: {budget['verdict'].replace('_', ' ')}.** Is the deep plain net only slower? Trained "
        f"for {', '.join(str(b['epochs']) for b in budget['budgets'])} epochs: {budget['reason']}. From "
        f"{change['from_epochs']} to {change['to_epochs']} epochs the median seed's gap changed by "
        f"{_pts(change['estimate'])} ({100 * change['ci_coverage']:.1f} % distribution-free interval "
        f"{_pts(change['ci_low'])} to {_pts(change['ci_high'])}; smaller in {change['beyond']} of {change['n']} "
        "seeds). Not shown: budgets beyond "
        f"{change['to_epochs']} epochs. {_scale(context)}"
    )


def findings(verdict: dict, context: dict) -> list[str]:
    """One paragraph per question: degradation, the twins, ReLU or skip, lesion, norm preservation, and
    the training budget where the study varied it."""
    paragraphs = [
        degradation_finding(verdict["degradation"], context),
        agreement_finding(verdict["agreement"], context),
        relu_skip_finding(verdict["relu_vs_skip"], context),
        lesion_finding(verdict["lesion"], context),
        norm_finding(verdict["norm_preservation"], context),
    ]
    if verdict.get("training_budget", {}).get("change"):
        paragraphs.append(budget_finding(verdict["training_budget"], context))
    return paragraphs
