"""The report's opening: one paragraph per question the study exists for, generated from the verdicts.

Each paragraph opens with its answer in one plain sentence (`study.report.headlines`), then the
numbers behind it and what the result does not show, in about 120 words at most. Nothing
here is written per run by hand: `findings(verdict, context)` reads `verdict.json`'s content and a
little context about the study (data set, epochs, depths).
"""

from __future__ import annotations

import math

from study.configs import get_config
from study.report import headlines
from study.verdicts.agreement import cell_label

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
        held = (f"; the gap holds from epoch {over['shown_from_epoch']} of {over['last_epoch']} on"
                if over.get("shown_from_epoch") else "")  # fmt: skip
        parts.append(
            f"{backend}: plain nets {_pts(cells[('plain', low)].get('median'))} → "
            f"{_pts(cells[('plain', high)].get('median'))} training error from depth {low} to {high} (median seed; "
            f"{plain['beyond']} of {plain['n']} seeds rise by more than {100 * deg['margin_effect']:.0f} points, p = "
            f"{plain['p']:.2g}), residual nets {_pts(cells[('resnet', low)].get('median'))} → "
            f"{_pts(cells[('resnet', high)].get('median'))}{held}"
        )
    return (
        f"**Degradation.** {headlines.degradation(deg)} {'; '.join(parts)}. Training error, so a rise is a failure "
        f"to optimise, not overfitting. Not shown: why, or that it holds at CIFAR-10 scale."
    )


def agreement_finding(agr: dict, context: dict) -> str:
    exact = agr.get("exactness") or {}
    pair = next((p for p in exact.get("pairs", []) if p.get("largest_difference") is not None), None)
    proved = (f" In float64 the recipe's replay gives the same losses, metrics and weights in every twin (largest "
              f"relative difference {pair['largest_difference']:.1e}, tolerance {exact['tolerance']:.0e})."
              if exact.get("status") == "passed" and pair else f" Float64 replay: {agr['proved']}.")  # fmt: skip
    text = f"**The twins.** {headlines.agreement(agr)}{proved} Trained in float32: {agr['shown']}."
    open_cells = []
    for cell in agr["cells"]:
        tests = [t for t in cell["tests"].values() if t["bound"] is not None]
        if cell["verdict"] == "undecided" and tests:
            seeds = [t["seeds_needed"] for t in tests]
            needed = f"about {max(seeds)}" if all(seeds) else "more than can be run"
            open_cells.append(f"{cell_label(cell, agr['pairs'])} (beyond ±{_pts(max(t['bound'] for t in tests))} "
                              f"excluded; {needed} seeds would settle it)")  # fmt: skip
    if open_cells:
        text += " Not excluded: smaller differences in " + "; ".join(open_cells) + "."
    if looked := [cell_label(c, agr["pairs"]) for c in agr["cells"] if c.get("look") == 2]:
        text += f" Decided at the second look of the declared `--settle` design: {', '.join(looked)}."
    return text + " Not shown: that the twins run equally fast (docs/benchmarks.md measures it)."


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
        f"At initialization (depth {depth}; the first layer's gradient norm over the last one's, 1 preserved): "
        + "; ".join(evidence)
        + "."
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
            f"**ReLU or skip.** {headlines.relu_vs_skip(rs)} Trained: {rs['reason']}"
            + (f"; {rs['settle']}" if rs.get("settle") else "")
            + f". {at_init} Not shown: other normalizations, initializations or optimizers."
        )
    return (
        f"**ReLU or skip.** {headlines.relu_vs_skip(rs)} Measured instead, not decided: "
        f"{at_init[:1].lower()}{at_init[1:]} Trained runs answer it ({len(get_config(rs['config']).points())} "
        "runs)."
    )


def lesion_finding(lesion: dict, context: dict) -> str:
    test = lesion.get("test") or {}
    curves = {(c["arch"], c["depth"], c["k"]): c["test_error"] for c in lesion.get("curves", [])}
    deepest = max((c["depth"] for c in lesion.get("curves", []) if c["arch"] == "resnet"), default=None)
    ks = sorted(k for (arch, depth, k) in curves if arch == "resnet" and depth == deepest and k >= 2)
    curve = ", ".join(f"k = {k}: {_pts(curves[('resnet', deepest, k)])}" for k in ks)
    reference = test.get("plain_depth", test.get("depth"))
    unlearned = [d["depth"] for d in lesion.get("depths", []) if reference and d["depth"] > reference and "plain" in d]
    reason = lesion["reason"].split("; left open")[0]
    return (
        f"**Lesion (Veit et al.).** {headlines.lesion(lesion)} {reason[0].upper()}{reason[1:]}."
        + (f" Residual-{deepest} with k random blocks deleted: {curve}." if curve else "")
        + " Not shown: "
        + (f"plain nets at depth {', '.join(map(str, unlearned))}, which never learned; " if unlearned else "")
        + "a deleted downsampling block keeps only its parameter-free shortcut."
    )


def norm_finding(norms: dict, context: dict) -> str:
    parts = []
    for stage, entry in norms.get("stages", {}).items():
        tests = entry.get("tests", {})
        approach, further = tests.get("residual_approaches"), tests.get("plain_further")
        if approach and further and further.get("plain") is not None:
            low, high = approach["depths"][0], approach["depths"][-1]
            parts.append(
                f"{'at initialization' if stage == 'init' else 'trained'}: residual blocks nearer 1 at depth {high} "
                f"than at {low} in {approach['beyond']} of {approach['n']} seeds, plain blocks further off at {high} "
                f"(mean |log10 ratio| {further['plain']:.3f} vs {further['resnet']:.3f}) in {further['beyond']} of "
                f"{further['n']}"
            )
    return (
        f"**Norm preservation (Zaeemzadeh et al.).** {headlines.norm_preservation(norms)} The ratio "
        f"‖∂L/∂x_in‖ / ‖∂L/∂x_out‖ of every block (1: the gradient passes with its norm). "
        + (f"{measured[:1].upper()}{measured[1:]}. " if (measured := "; ".join(parts)) else f"{norms['reason']}. ")
        + "Not shown: nets deeper than this study's, or that norm preservation causes trainability."
    )


def budget_finding(budget: dict, context: dict) -> str:
    change = budget["change"]
    return (
        f"**Training budget.** {headlines.training_budget(budget)} Trained "
        f"for {', '.join(str(b['epochs']) for b in budget['budgets'])} epochs: {budget['reason']}. From "
        f"{change['from_epochs']} to {change['to_epochs']} epochs the median seed's gap changed by "
        f"{_pts(change['estimate'])} ({100 * change['ci_coverage']:.1f} % distribution-free interval "
        f"{_pts(change['ci_low'])} to {_pts(change['ci_high'])}; smaller in {change['beyond']} of {change['n']} "
        f"seeds). Not shown: budgets beyond {change['to_epochs']} epochs."
    )


def findings(verdict: dict, context: dict) -> list[str]:
    """One paragraph per question, each opening with its answer in one plain sentence
    (`study.report.headlines`): degradation, the twins, ReLU or skip, lesion, norm preservation, the
    training budget where the study varied it; then the scale every answer shares."""
    paragraphs = [
        degradation_finding(verdict["degradation"], context),
        agreement_finding(verdict["agreement"], context),
        relu_skip_finding(verdict["relu_vs_skip"], context),
        lesion_finding(verdict["lesion"], context),
        norm_finding(verdict["norm_preservation"], context),
    ]
    if verdict.get("training_budget", {}).get("change"):
        paragraphs.append(budget_finding(verdict["training_budget"], context))
    return [*paragraphs, f"*Scale.* {_scale(context)}"]
