"""One plain sentence per question: what the verdict table and the findings open each answer with.

A newcomer reads the answer before the evidence: "Yes: deeper plain nets train worse; residual nets do
not." The verdicts' identifiers (`exact_outcomes_undecided`, ...) stay in verdict.json; here each is
said in words, and the numbers follow in the table's evidence column and the finding's paragraph.
"""

from __future__ import annotations

from study.verdicts.agreement import cell_label

NOT_SETTLED = "Not settled: the seeds run cannot show it either way yet."


def _cells(agreement: dict, verdict: str) -> str:
    return ", ".join(cell_label(c, agreement["pairs"]) for c in agreement.get("cells", []) if c["verdict"] == verdict)


def degradation(entry: dict) -> str:
    verdict = entry["verdict"]
    if verdict == "holds":
        return "Yes: deeper plain nets train worse; residual nets do not."
    if verdict == "does_not_hold":
        rise = any(b.get("tests", {}).get("residual_rise", {}).get("shown") for b in entry.get("backends", {}).values())
        return ("No: residual nets train worse with depth too." if rise else
                "No: here deeper plain nets train about as well as shallow ones.")  # fmt: skip
    return NOT_SETTLED


def agreement(entry: dict) -> str:
    verdict = entry["verdict"]
    chaotic = _cells(entry, "chaotic")
    spared = (f" Where training is chaotic ({chaotic}) their runs are compared in distribution, and no difference "
              "shows.") if chaotic else ""  # fmt: skip
    if verdict == "agree":
        return "Yes: the twins compute the same numbers, and the nets they train end equally good." + spared
    if verdict == "disagree":
        if entry.get("exactness", {}).get("status") == "failed":
            return "No: the twins compute different numbers (the float64 replay differs)."
        differ = _cells(entry, "differs")
        return f"No: the nets the twins train end differently{f' ({differ})' if differ else ''}."
    if verdict == "exact_outcomes_undecided":
        return (f"The twins compute the same numbers; whether their trained nets end equally good is not settled in "
                f"{_cells(entry, 'undecided') or 'every cell'}." + spared)  # fmt: skip
    return "Not settled: " + (entry.get("reason") or "no evidence") + "."


def lesion(entry: dict) -> str:
    verdict = entry["verdict"]
    test = entry.get("test") or {}
    if verdict == "holds":
        return (f"Yes: deleting one block barely hurts a deep residual net ({100 * test['resnet_rise']:.1f} points at "
                f"depth {test['depth']}); it breaks a plain one ({100 * test['plain_rise']:.0f} points).")  # fmt: skip
    if verdict == "does_not_hold":
        return "No: deleting a block hurts residual nets as much as plain ones, or more."
    return NOT_SETTLED


def norm_preservation(entry: dict) -> str:
    verdict = entry["verdict"]
    if verdict == "holds":
        return ("Yes: the deeper the residual net, the closer its blocks keep the gradient's norm; plain blocks stay "
                "further off.")  # fmt: skip
    if verdict == "does_not_hold":
        return "No: residual blocks do not keep the gradient's norm better with depth, or plain blocks do as well."
    return NOT_SETTLED


RELU_SKIP = {
    "skip": "The skip: residual nets train with every activation; the deep plain ReLU net does not.",
    "skip_and_relu": "Both: the deep net needs the skip and the ReLU.",
    "relu": "The ReLU: the deep plain ReLU net trains; other activations fail even with the skip.",
    "either": "Either: the deep plain ReLU net trains, and so does every residual net.",
    "neither": "Neither: deep ReLU nets fail with and without the skip.",
}


def relu_vs_skip(entry: dict) -> str:
    verdict = entry["verdict"]
    if verdict == "not_asked":
        config = entry.get("config", "relu-skip")
        return f"Not asked here: this study trains one activation; `--config {config}` asks it."
    return RELU_SKIP.get(verdict, NOT_SETTLED)


def training_budget(entry: dict) -> str:
    verdict = entry["verdict"]
    if verdict == "gap_persists":
        return "No, not only slower: the deep plain net stays behind at every budget trained."
    if verdict == "gap_closes":
        return "Yes: given more epochs the deep plain net catches up."
    if verdict == "not_asked":
        return f"Not asked here: this study trains one budget; `--config {entry.get('config', 'budget')}` asks it."
    return NOT_SETTLED


HEADLINES = {
    "degradation": degradation,
    "agreement": agreement,
    "lesion": lesion,
    "norm_preservation": norm_preservation,
    "relu_vs_skip": relu_vs_skip,
    "training_budget": training_budget,
}

WORDS = {  # a verdict identifier as a section heading says it
    "holds": "holds",
    "does_not_hold": "does not hold",
    "inconclusive": "not settled",
    "agree": "they agree",
    "disagree": "they disagree",
    "exact_outcomes_undecided": "exact; outcomes not settled",
    "not_asked": "not asked here",
    "skip": "the skip",
    "skip_and_relu": "the skip and the ReLU",
    "relu": "the ReLU",
    "either": "either",
    "neither": "neither",
    "gap_persists": "the gap persists",
    "gap_closes": "the gap closes",
}


def headline(name: str, entry: dict) -> str:
    """The plain sentence that opens question `name`'s answer (verdict.json's entry)."""
    return HEADLINES[name](entry)


def words(verdict: str) -> str:
    """A verdict identifier in words, for headings."""
    return WORDS.get(verdict, verdict.replace("_", " "))
