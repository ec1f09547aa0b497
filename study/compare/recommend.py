"""What to pick for each use case, computed from the measured rows of a comparison (never written by hand).

Only backends shown to compute the same numbers as the Lightning twin on this device are candidates
(every agreement row passed; Lightning is the reference). For each use case and network the best row
wins, and every other row that the measurements cannot tell from it ties with it:

- throughputs (training, inference) are timed over several epochs: a backend is ahead only where its
  slowest timed epoch beats the other's fastest (disjoint ranges), otherwise the two tie; with fewer
  than MIN_SAMPLES timed epochs no spread is known and they tie;
- a peak memory or a time to the first step is one number: within MEMORY_MARGIN / FIRST_STEP_MARGIN
  of the best (or FIRST_STEP_SECONDS), they tie.

A use case's pick is the set of backends best or tied on every network measured; where no backend is,
the pick depends on the network and each network's best is named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MEMORY_MARGIN = 0.05
MIN_SAMPLES = 3  # timed epochs a throughput needs before it can rank (--repeats)
FIRST_STEP_MARGIN = 0.25
FIRST_STEP_SECONDS = 0.5  # a start this much faster is not worth choosing a framework for
RULE = (
    f"a backend is ahead only where its slowest of at least {MIN_SAMPLES} timed epochs beats the other's fastest "
    "(throughput), or by "
    f"more than {MEMORY_MARGIN:.0%} (peak memory) or {FIRST_STEP_MARGIN:.0%} and {FIRST_STEP_SECONDS} s "
    "(time to the first step); "
    "otherwise they tie. Only backends that agree with Lightning on this device are candidates."
)


@dataclass(frozen=True)
class UseCase:
    key: str
    question: str
    value: str  # the row's key of the measured number
    unit: str
    samples: str | None = None  # the row's key of its per-epoch samples (throughputs)
    higher_is_better: bool = True
    margin: float = 0.0  # ties for single numbers: within this fraction of the best
    absolute: float = 0.0  # ... or within this much of it
    keep: Callable[[dict], bool] = lambda row: row["precision"] == "32" and not row["compile"]


def _memory(row: dict) -> float:
    return row["peak_device_mb"] if row.get("peak_device_mb") is not None else row["peak_host_mb"]


USE_CASES = (
    UseCase("train", "Train fastest (fp32, as the study does)", "train_img_per_s", "img/s", "train_epochs"),
    UseCase(
        "train-bf16",
        "Train fastest in bf16 mixed precision",
        "train_img_per_s",
        "img/s",
        "train_epochs",
        keep=lambda row: row["precision"] == "bf16" and not row["compile"],
    ),
    UseCase("inference", "Evaluate or serve fastest (inference)", "infer_img_per_s", "img/s", "infer_epochs"),
    UseCase(
        "first-step",
        "Short jobs and quick iteration (time to the first step)",
        "first_step_s",
        "s",
        higher_is_better=False,
        margin=FIRST_STEP_MARGIN,
    ),
    UseCase(
        "memory",
        "Largest network or batch that fits (peak memory)",
        "peak_memory_mb",
        "MB",
        higher_is_better=False,
        margin=MEMORY_MARGIN,
    ),
    UseCase(
        "keras",
        "You write Keras: the fastest Keras backend to train on",
        "train_img_per_s",
        "img/s",
        "train_epochs",
        keep=lambda row: row["precision"] == "32" and not row["compile"] and row["backend"] != "lightning",
    ),
)


def excluded_backends(result: dict) -> dict[str, str]:
    """Backends with speed rows that are not candidates, and why."""
    reasons = {}
    for backend in dict.fromkeys(row["backend"] for row in result["speed"]):
        if backend == "lightning":
            continue
        rows = [row for row in result["agreement"] if row["backend"] == backend]
        failed = [f"{row['spec']} {row['dtype']}" for row in rows if not row["passed"]]
        if not rows:
            reasons[backend] = "its agreement with Lightning was not measured"
        elif failed:
            reasons[backend] = f"it does not agree with Lightning ({', '.join(failed)})"
    return reasons


def _value(case: UseCase, row: dict) -> float | None:
    return _memory(row) if case.value == "peak_memory_mb" else row.get(case.value)


def _ties(case: UseCase, best: dict, other: dict) -> bool:
    if case.samples:
        best_samples, other_samples = best[case.samples], other[case.samples]
        if min(len(best_samples), len(other_samples)) < MIN_SAMPLES:  # no spread measured: cannot rank
            return True
        if case.higher_is_better:
            return max(other_samples) >= min(best_samples)
        return min(other_samples) <= max(best_samples)
    best_value, other_value = _value(case, best), _value(case, other)
    if case.higher_is_better:
        return other_value >= best_value * (1 - case.margin)
    return other_value <= best_value * (1 + case.margin) or other_value - best_value <= case.absolute


def _describe(case: UseCase, row: dict) -> str:
    value = _value(case, row)
    number = f"{value:.1f}" if case.unit == "s" else f"{value:.0f}"
    spread = ""
    if case.samples and row.get(case.samples):
        spread = f" ({min(row[case.samples]):.0f}-{max(row[case.samples]):.0f} over its epochs)"
    return f"{row['backend']} {number} {case.unit}{spread}"


def decide(case: UseCase, rows: list[dict]) -> dict | None:
    """The pick for one use case from candidate rows (None where no row serves it)."""
    rows = [row for row in rows if case.keep(row) and _value(case, row) is not None]
    if not rows:
        return None
    per_spec, evidence = {}, []
    devices = {row.get("device") for row in rows}  # rows of different devices are never ranked together

    def where(row: dict) -> str:
        return row["spec"] if len(devices) == 1 else f"{row['spec']} on {row.get('device')}"

    for spec in dict.fromkeys(where(row) for row in rows):
        ranked = sorted(
            (row for row in rows if where(row) == spec),
            key=lambda row: _value(case, row),
            reverse=case.higher_is_better,
        )
        best = ranked[0]
        tied = [best["backend"], *(row["backend"] for row in ranked[1:] if _ties(case, best, row))]
        per_spec[spec] = tied
        line = f"{spec}: {_describe(case, best)}"
        if len(ranked) > 1:
            runner_up = ranked[1]
            high, low = (best, runner_up) if case.higher_is_better else (runner_up, best)
            ratio = _value(case, high) / _value(case, low) if _value(case, low) > 0 else None  # a 0 s or 0 MB row
            times = "" if ratio is None else f" ({ratio:.2f}x{'' if case.higher_is_better else ' it'})"
            line += f"; next {_describe(case, runner_up)}{times}"
        evidence.append(line + (f"; tied: {', '.join(tied)}" if len(tied) > 1 else ""))
    everywhere = [b for b in per_spec[next(iter(per_spec))] if all(b in tied for tied in per_spec.values())]
    if everywhere:
        pick = " or ".join(everywhere)
        clear = len(everywhere) == 1
    else:
        pick = "depends on the network: " + "; ".join(f"{spec} {' or '.join(t)}" for spec, t in per_spec.items())
        clear = False
    return {
        "use_case": case.key,
        "question": case.question,
        "pick": pick,
        "clear": clear,
        "per_spec": per_spec,
        "evidence": evidence,
    }


def recommend(result: dict) -> dict:
    """{"rule", "excluded": {backend: why}, "use_cases": [pick per use case]} from a comparison's rows."""
    excluded = excluded_backends(result)
    candidates = [row for row in result["speed"] if row["backend"] not in excluded]
    use_cases = [decision for case in USE_CASES if (decision := decide(case, candidates)) is not None]
    compiled = compile_decision(result["speed"])
    if compiled:
        use_cases.append(compiled)
    return {"rule": RULE, "excluded": excluded, "use_cases": use_cases}


def compile_decision(rows: list[dict]) -> dict | None:
    """Whether torch.compile pays off for the Lightning twin here: compiled against eager rows."""
    pairs = []
    for row in rows:
        if row["backend"] == "lightning" and row["compile"]:
            eager = [r for r in rows if r["backend"] == "lightning" and not r["compile"]
                     and (r["spec"], r["precision"]) == (row["spec"], row["precision"])]  # fmt: skip
            if eager:
                pairs.append((eager[0], row))
    if not pairs:
        return None
    case = USE_CASES[0]
    evidence, faster = [], []
    for eager, compiled in pairs:
        ahead = not _ties(case, compiled, eager) and compiled["train_img_per_s"] > eager["train_img_per_s"]
        faster.append(ahead)
        speedup = compiled["train_img_per_s"] / max(eager["train_img_per_s"], 1e-9)
        evidence.append(
            f"{eager['spec']} {eager['precision']}: compiled {compiled['train_img_per_s']:.0f} img/s against eager "
            f"{eager['train_img_per_s']:.0f} ({speedup:.2f}x); "
            f"first step {compiled['first_step_s']:.1f} s against {eager['first_step_s']:.1f} s"
        )
    if all(faster):
        pick = "compile"
    elif not any(faster):
        pick = "eager (compiling was not measurably faster here)"
    else:
        pick = "depends on the network"
    return {
        "use_case": "lightning-compile",
        "question": "Lightning: torch.compile (--compile) for long runs?",
        "pick": pick,
        "clear": all(faster) or not any(faster),
        "per_spec": {},
        "evidence": evidence,
    }
