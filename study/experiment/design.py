"""Choose a study's design by measured power within a compute budget (`resnet-study design`).

A candidate design is a grid — depths, seeds, epochs, which twins — drawn from a *pilot*: a real
study folder with the candidate's epochs and at least its depths and twins (docs/data/pilot-*). Each
candidate is scored by simulated studies resampled from the pilot's real runs, not from assumed
distributions: a simulated study draws its n seeds with replacement from the pilot's seeds, each seed
with everything it produced (both twins' runs at every depth and arch, their lesion and block-ratio
rows), so every dependence of the real runs — a seed's twins sharing weights and batches, a seed's
depths sharing its data order — is kept. The product's verdict functions (`study.verdicts`) decide
each simulated study, with the pilot's float64 replay (and its rounding sensitivities) as the
exactness evidence. A question's *power* is the share of simulated studies whose verdict is decided
the way the pilot's runs point (degradation and lesion and norm preservation "holds", the twins
"agree"); a question the candidate cannot ask (one twin: no agreement) is "not asked". The cost is
`plan`'s prediction from a throughput table (by default the shipped one, measured on the 2-core
development machine): wall time, and CPU time as the runs' seconds plus the study's fixed phases.

What the resampling cannot show: seeds unlike all of the pilot's (a rare failure the pilot never
drew); the power it measures is the power at the pilot's seeds as the truth.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from study.configs import CONFIGS, StudyConfig
from study.core.errors import UserError
from study.experiment.plan import plan_study, replay_seconds
from study.experiment.throughput import Throughput
from study.verdicts.agreement import agreement
from study.verdicts.degradation import degradation
from study.verdicts.inputs import read_study_folder
from study.verdicts.lesion import lesion_verdict
from study.verdicts.norm_preservation import deviation, norm_verdict

QUESTIONS = ("degradation", "agreement", "lesion", "norm_preservation")
SCORED = 1.25  # candidates predicted within this multiple of the budget are simulated; the rest only costed
EXPECTED = {"degradation": "holds", "agreement": "agree", "lesion": "holds", "norm_preservation": "holds"}


@dataclass(frozen=True)
class Candidate:
    """One design: a pilot's epochs, and which of its depths, seeds and twins."""

    pilot: str  # the pilot folder's name
    epochs: int
    depths: tuple[int, ...]
    seeds: int
    backends: tuple[str, ...]

    def config(self, base: StudyConfig) -> StudyConfig:
        return base.with_overrides(depths=self.depths, seeds=tuple(range(self.seeds)), backends=self.backends,
                                   epochs=self.epochs, exactness_depths=self.depths,
                                   gradflow_depths=self.depths)  # fmt: skip

    def label(self) -> str:
        twins = "+".join(self.backends)
        return f"depths {'/'.join(map(str, self.depths))}, {self.seeds} seeds, {self.epochs} epochs, {twins}"


@dataclass
class Pilot:
    """A pilot study's tables, split by seed for resampling."""

    name: str
    config: StudyConfig
    exactness: dict | None
    seeds: list[int]
    results: dict[int, pd.DataFrame]
    lesion: dict[int, pd.DataFrame]
    norms: dict[int, pd.DataFrame]


def load_pilot(folder: Path) -> Pilot:
    """A pilot study folder, its per-network lesion and block-ratio rows reduced to what the verdicts
    read (the intact error and the mean over single-block deletions; each network's mean |log10 ratio|)."""
    tables = read_study_folder(folder)
    if tables.lesion is None or tables.norms is None or not tables.config:
        raise UserError(f"{folder}: a pilot needs the study's lesion.csv, norms.csv and study.json")
    config = StudyConfig.from_dict(tables.config)
    lesion = tables.lesion[tables.lesion.kind.isin(["intact", "single"])]
    keys = ["run_key", "backend", "arch", "depth", "seed", "kind", "k"]
    lesion = lesion.groupby(keys, as_index=False).test_error.mean()
    networks = deviation(tables.norms)  # one row per network: its mean |log10 ratio|, as the verdict reads it
    norms = networks.assign(ratio=10.0**networks.deviation)  # the one ratio whose |log10| is that deviation
    seeds = sorted(int(s) for s in tables.results.seed.unique())
    split = lambda frame: {s: frame[frame.seed == s] for s in seeds}  # noqa: E731
    return Pilot(folder.name, config, tables.exactness, seeds, split(tables.results), split(lesion), split(norms))


class Draws:
    """A pilot cut to a candidate's depths and twins, ready to resample: each table's rows of every
    pilot seed, and where each seed's rows lie."""

    def __init__(self, pilot: Pilot, depths, backends):
        self.tables = []
        for tables in (pilot.results, pilot.lesion, pilot.norms):
            keep = lambda f: f.depth.isin(depths) & (f.backend.isin(backends) | f.backend.isna())  # noqa: E731
            frames = [tables[s][keep(tables[s])] for s in pilot.seeds]
            frame = pd.concat(frames, ignore_index=True)
            ends = np.cumsum([0] + [len(f) for f in frames])
            rows = {s: np.arange(ends[i], ends[i + 1]) for i, s in enumerate(pilot.seeds)}
            self.tables.append((frame, frame.run_key.astype(str).to_numpy(), rows))

    def draw(self, picks: np.ndarray) -> tuple[pd.DataFrame, ...]:
        """One simulated study: the pilot's seeds `picks` as seeds 0..n-1 (a seed drawn twice is two seeds)."""
        out = []
        for frame, keys, rows in self.tables:
            index = np.concatenate([rows[int(s)] for s in picks])
            new = np.repeat(np.arange(len(picks)), [len(rows[int(s)]) for s in picks])
            study = frame.iloc[index].reset_index(drop=True)
            study["seed"] = new
            study["run_key"] = np.char.add(keys[index].astype(str), np.char.add("#", new.astype(str)))
            out.append(study)
        return tuple(out)


def _exactness(pilot: Pilot, depths, backends) -> dict | None:
    """The pilot's float64 replay, cut to the candidate's depths (the study replays its own depths)."""
    if pilot.exactness is None or len(backends) < 2:
        return None
    networks = [n for n in pilot.exactness["networks"] if int(n.get("depth", 0)) in depths]
    return {**pilot.exactness, "networks": networks} if networks else None


def verdicts(results: pd.DataFrame, lesion: pd.DataFrame, norms: pd.DataFrame, exactness: dict | None,
             alpha: float = 0.05) -> dict[str, str]:  # fmt: skip
    """The four questions' verdicts of one (simulated) study, as the product decides them."""
    out = {"degradation": degradation(results, alpha=alpha)["verdict"],
           "lesion": lesion_verdict(lesion, alpha=alpha)["verdict"],
           "norm_preservation": norm_verdict(norms, alpha=alpha)["verdict"]}  # fmt: skip
    if results.backend.nunique() > 1:
        out["agreement"] = agreement(results, alpha=alpha, exactness=exactness, power=False)["verdict"]
    return out


def score(pilot: Pilot, candidate: Candidate, studies: int, seed: int = 0) -> dict:
    """Per question: the share of `studies` simulated studies decided as expected, and of each verdict."""
    rng = np.random.default_rng([seed, candidate.seeds, *candidate.depths, len(candidate.backends)])
    exactness = _exactness(pilot, candidate.depths, candidate.backends)
    draws = Draws(pilot, candidate.depths, candidate.backends)
    counts: dict[str, dict[str, int]] = {}
    for _ in range(studies):
        picks = rng.choice(pilot.seeds, size=candidate.seeds, replace=True)
        found = verdicts(*draws.draw(picks), exactness)
        for question, verdict in found.items():
            counts.setdefault(question, {}).setdefault(verdict, 0)
            counts[question][verdict] += 1
    return {
        q: {"power": counts[q].get(EXPECTED[q], 0) / studies,
            "verdicts": {v: c / studies for v, c in sorted(counts[q].items())}} if q in counts else None
        for q in QUESTIONS
    }  # fmt: skip


def cost(candidate: Candidate, base: StudyConfig, table: Throughput, workers: int = 2) -> dict:
    """`plan`'s predicted wall time, and CPU time: the runs' seconds plus the study's fixed phases."""
    config = candidate.config(base)
    plan = plan_study(config, table, workers=workers)
    fixed = replay_seconds(config, table) + sum(table.study_s.get(k, 0.0) for k in ("start", "gradflow", "analysis"))
    return {"runs": len(plan.runs), "wall_s": plan.wall_s, "cpu_s": plan.busy_s + fixed}


def candidates(pilot: Pilot, seeds: list[int]) -> list[Candidate]:
    """Every (shallowest, deepest) pair of the pilot's depths, with each seed count, with both twins and
    with the cheaper twin alone (which cannot ask whether the twins agree)."""
    depths = sorted(pilot.config.depths)
    backends = tuple(pilot.config.backends)
    choices = [backends] + ([("lightning",)] if "lightning" in backends and len(backends) > 1 else [])
    return [
        Candidate(pilot.name, pilot.config.recipe.epochs, pair, n, twins)
        for pair in itertools.combinations(depths, 2)
        for n in seeds
        for twins in choices
    ]


def search(pilots: list[Path], seeds: list[int], studies: int, table: Throughput, wall_budget: float,
           cpu_budget: float, wanted: float = 0.9) -> list[dict]:  # fmt: skip
    """Every candidate of every pilot, scored and costed, best first: those within the budget whose
    every question asked reaches `wanted` power, cheapest first; then the rest, most questions
    decided first."""
    rows = []
    for folder in pilots:
        pilot = load_pilot(Path(folder))
        base = dataclasses.replace(CONFIGS["default"], recipe=pilot.config.recipe)
        for candidate in candidates(pilot, seeds):
            costed = cost(candidate, base, table)
            near = costed["wall_s"] <= SCORED * wall_budget and costed["cpu_s"] <= SCORED * cpu_budget
            scored = score(pilot, candidate, studies) if near else dict.fromkeys(QUESTIONS)
            asked = {q: s["power"] for q, s in scored.items() if s is not None}
            rows.append({
                "candidate": candidate, "scores": scored, **costed,
                "within_budget": costed["wall_s"] <= wall_budget and costed["cpu_s"] <= cpu_budget,
                "asked": len(asked), "decided": sum(p >= wanted for p in asked.values()),
                "weakest": min(asked.values()) if asked else 0.0, "simulated": near,
            })  # fmt: skip
    meets = lambda r: r["within_budget"] and r["decided"] == r["asked"]  # noqa: E731
    return sorted(rows, key=lambda r: (not meets(r), -r["asked"] if meets(r) else 0, r["cpu_s"] if meets(r) else
                                       -(r["decided"] + r["weakest"]), r["cpu_s"]))  # fmt: skip


def describe(rows: list[dict], wanted: float, top: int = 12) -> list[str]:
    """The design table (Markdown): each candidate's power per question and its predicted cost."""
    head = ["design", "runs", "wall (pred.)", "CPU (pred.)", "budget", *QUESTIONS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows[:top]:
        power = [("–" if not row["simulated"] else "not asked" if row["scores"][q] is None else
                  f"{row['scores'][q]['power']:.2f}") for q in QUESTIONS]  # fmt: skip
        lines.append("| " + " | ".join([row["candidate"].label(), str(row["runs"]), f"{row['wall_s'] / 60:.1f} min",
                                        f"{row['cpu_s']:.0f} s", "within" if row["within_budget"] else "over",
                                        *power]) + " |")  # fmt: skip
    lines.append(f"\npower: the share of simulated studies deciding the question as the pilot's runs point; "
                 f"a design meets the objective when every question it asks reaches {wanted:.2f}; –: predicted "
                 f"beyond {SCORED} x the budget, not simulated")  # fmt: skip
    return lines


def seeds_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--seed-counts must be whole numbers, e.g. 5,6,7; got {text!r}") from None
    if not values or any(not 2 <= v <= 64 for v in values):
        raise UserError(f"--seed-counts must be between 2 and 64; got {text!r}")
    return values
