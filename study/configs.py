"""Study configurations in code: the grid of (backend x arch x depth x seed) runs and their recipe.

`default` runs on the embedded digits data on a 2-core CPU in about 5 minutes and decides each of its
questions (its design: `resnet-study design`); `classic` is the earlier, larger default; `paper` is the
paper's CIFAR-10 experiment (section 4.2, Fig. 6), for a GPU; `relu-skip` and `budget` ask one more
question each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from study.core.errors import UserError
from study.core.recipe import MAX_SEED, TrainSpec
from study.core.records import run_determinants
from study.core.spec import ARCHS, NetworkSpec
from study.core.twin import BACKENDS, process_groups

RECIPE_FIELDS = tuple(field.name for field in dataclasses.fields(TrainSpec) if field.name != "seed")
STUDY_RECIPE = ("epochs", "warmup_epochs", "batch_size")  # what a study config states (`StudyConfig.to_dict`)
DEFAULT_RECIPE = TrainSpec().to_dict()


@dataclass(frozen=True)
class StudyConfig:
    name: str
    dataset: str  # digits | cifar10 | synthetic
    backends: tuple[str, ...]
    archs: tuple[str, ...]
    depths: tuple[int, ...]  # CIFAR-style 6n+2
    seeds: tuple[int, ...]
    recipe: TrainSpec  # every run's training recipe; its seed is each grid point's
    shortcut: str = "A"
    activations: tuple[str, ...] = ("relu",)  # a grid axis, like depths (the relu-skip config varies it)
    norms: tuple[str, ...] = ("batch",)  # a grid axis: "batch" and/or "none"
    gradflow_depths: tuple[int, ...] = ()  # depths probed by `gradflow` for the report; () = `depths`
    exactness_depths: tuple[int, ...] = ()  # float64 replay depths (those the grid trains); () = the shallowest, <= 20
    probe_backend: str = "lightning"  # the twin that evaluates every trained network (study.experiment.post_run)
    budgets: tuple[int, ...] = ()  # a grid axis of training epochs (the budget config); () = the recipe's
    settle: int = 0  # seeds added to each cell the agreement leaves undecided at look 1 (`run --settle`)

    def __post_init__(self) -> None:
        for field in ("backends", "archs", "depths", "seeds", "activations", "norms", "gradflow_depths",
                      "exactness_depths", "budgets"):  # fmt: skip
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if not (self.backends and self.archs and self.depths and self.seeds and self.activations and self.norms):
            raise UserError("a study needs at least one backend, arch, depth, seed, activation and norm")
        if any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= MAX_SEED for s in self.seeds) or len(
            set(self.seeds)
        ) != len(self.seeds):
            raise UserError(f"seeds must be different integers in 0..{MAX_SEED}; got {list(self.seeds)}")
        if unknown_arch := sorted(set(self.archs) - set(ARCHS)):
            raise UserError(f"unknown arch {unknown_arch[0]!r}; choose from {', '.join(ARCHS)}")
        unknown = sorted(set(self.backends) - set(BACKENDS))
        if unknown or self.probe_backend not in BACKENDS:
            raise UserError(
                f"unknown backend {(unknown or [self.probe_backend])[0]!r}; choose from {', '.join(BACKENDS)}"
            )
        process_groups(self.backends, self.probe_backend)  # the probe twin can run beside the backends
        if any(not isinstance(e, int) or e < max(1, self.recipe.warmup_epochs) for e in self.budgets):
            raise UserError(f"budgets must be whole epochs of at least the warm-up; got {list(self.budgets)}")
        for point in self.points():
            point.network_spec()  # validates depths, shortcut, activation, norm
        if not isinstance(self.settle, int) or isinstance(self.settle, bool) or self.settle < 0:
            raise UserError(f"--settle must be a whole number of seeds >= 0; got {self.settle!r}")
        if self.settle and max(self.seeds) + self.settle > MAX_SEED:
            raise UserError(f"--settle {self.settle}: the added seeds would pass {MAX_SEED}")
        if self.settle and len(self.backends) < 2:
            raise UserError("--settle adds seeds to the twins' undecided cells: it needs at least two backends")
        if self.settle and (len(self.activations) > 1 or len(self.norms) > 1 or self.budgets):
            raise UserError(f"--settle: the {self.name} config varies the activation, norm or budget; the "
                            "agreement's cells are those of one of each")  # fmt: skip

    def with_overrides(self, **overrides) -> StudyConfig:
        """A copy with the given fields replaced (None: keep); recipe fields (`epochs`, ...) go to the recipe."""
        given = {k: v for k, v in overrides.items() if v is not None}
        recipe = {k: given.pop(k) for k in list(given) if k in RECIPE_FIELDS}
        return dataclasses.replace(self, recipe=dataclasses.replace(self.recipe, **recipe), **given)

    def points(self) -> list[GridPoint]:
        """Every run, cheapest first within a seed, so a partial study covers all depths early."""
        return [
            GridPoint(self, backend, arch, depth, seed, activation, norm, epochs)
            for seed in self.seeds
            for depth in sorted(self.depths)
            for epochs in sorted(self.budgets) or (None,)
            for norm in self.norms
            for activation in self.activations
            for arch in self.archs
            for backend in self.backends
        ]

    def settle_seeds(self) -> tuple[int, ...]:
        """The seeds `--settle` adds to an undecided cell: the next `settle` after the grid's."""
        return tuple(range(max(self.seeds) + 1, max(self.seeds) + 1 + self.settle))

    def settle_points(self, cells: list[dict]) -> list[GridPoint]:
        """Every run `--settle` adds: each settle seed of each cell ({"arch", "depth"}) for every backend."""
        return [
            GridPoint(self, backend, cell["arch"], int(cell["depth"]), seed, self.activations[0], self.norms[0])
            for seed in self.settle_seeds()
            for cell in cells
            for backend in self.backends
        ]

    def to_dict(self) -> dict:
        """The config as study.json holds it (and the study id hashes it): the recipe's fields inline,
        those the study sets (`STUDY_RECIPE`) always, any other only where it is not TrainSpec's default."""
        data = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "recipe":
                recipe = value.to_dict()
                data |= {k: recipe[k] for k in STUDY_RECIPE}
                data |= {
                    k: recipe[k] for k in RECIPE_FIELDS if k not in STUDY_RECIPE and recipe[k] != DEFAULT_RECIPE[k]
                }
            elif field.name not in ("budgets", "settle") or value:  # a study without them keeps its id
                data[field.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StudyConfig:
        """The config `to_dict` wrote (study.json's "config"); a malformed one is a `UserError`."""
        try:
            names = {f.name for f in dataclasses.fields(cls)} - {"recipe"}
            recipe = TrainSpec(**{k: data[k] for k in RECIPE_FIELDS if k in data})
            given = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
            return cls(recipe=recipe, **given)
        except (TypeError, ValueError, AttributeError) as error:
            raise UserError(f"not a study config: {error}") from None

    @property
    def study_id(self) -> str:
        """The study's name and a hash of its whole configuration: every machine running this study
        (the agents of one sweep) gives its runs the same W&B group."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.name}-{digest}"


def longest_first(points: list[GridPoint]) -> list[GridPoint]:
    """The order the runner starts runs in: the costliest first (epochs x training FLOPs per image; one
    data set per study), so the last runs to start are the shortest and the workers finish together
    (longest-processing-time-first scheduling, within 4/3 of the shortest possible wall time); among
    equals, the grid's order (seed by seed)."""
    return sorted(points, key=lambda p: -(p.epochs or p.study.recipe.epochs) * p.network_spec().macs)


@dataclass(frozen=True)
class GridPoint:
    """One run of a study: its full configuration determines its `run_key`."""

    study: StudyConfig
    backend: str
    arch: str
    depth: int
    seed: int
    activation: str = "relu"
    norm: str = "batch"
    epochs: int | None = None  # the training budget (StudyConfig.budgets); None: the recipe's

    def network_spec(self) -> NetworkSpec:
        return NetworkSpec(
            family="cifar",
            depth=self.depth,
            residual=self.arch == "resnet",
            shortcut=self.study.shortcut,
            activation=self.activation,
            norm=self.norm,
        )

    def train_spec(self) -> TrainSpec:
        return dataclasses.replace(self.study.recipe, seed=self.seed, epochs=self.epochs or self.study.recipe.epochs)

    def config(self) -> dict:
        """Everything that determines the run's result (not where or how fast it runs)."""
        return run_determinants(self.backend, self.study.dataset, self.network_spec(), self.train_spec())

    @property
    def run_key(self) -> str:
        """Readable and unique: ``lightning-plain56-s1-<hash of the full config>``, with the activation
        and ``nobn`` after the depth where they are not ReLU and BN (``lightning-plain56-tanh-nobn-s1-...``), and the
        budget where the study varies it (``lightning-plain56-e60-s1-...``)."""
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:10]
        variant = (
            ("" if self.activation == "relu" else f"-{self.activation}")
            + ("" if self.norm == "batch" else "-nobn")
            + ("" if self.epochs is None else f"-e{self.epochs}")
        )
        return f"{self.backend}-{self.arch}{self.depth}{variant}-s{self.seed}-{digest}"


# The study's two twins by default; `--backends` adds Keras on JAX and on PyTorch (any subset of BACKENDS).
TWINS = ("keras", "lightning")

CONFIGS = {
    # The main job, chosen as an experimental design (`resnet-study design`, docs/benchmarks.md): the
    # cheapest grid whose every question is decided with at least 90 % power at the effects measured on
    # digits (pilot studies resampled), within 5 minutes and 550 CPU seconds on a 2-core CPU. Depth 8
    # against 32: plain-32 already fails to train in 10 epochs (16-52 % training error), residual-32
    # learns (below 1 %), and a depth-32 net costs half a depth-56 one. Seven seeds: the twins'
    # equivalence is judged in the cells whose nets do not amplify rounding (both depth-8 cells and
    # residual-32: 6 tests under Holm need 2^-n <= 0.05/6), plain-32's chaotic cell is compared in
    # distribution. Every depth is replayed in float64, so the agreement knows which cells are chaotic.
    "default": StudyConfig(
        name="default",
        dataset="digits",
        backends=TWINS,
        archs=ARCHS,
        depths=(8, 32),
        seeds=tuple(range(7)),
        recipe=TrainSpec(epochs=10, warmup_epochs=2),
        gradflow_depths=(8, 32),
        exactness_depths=(8, 32),
    ),
    # The default study until it was chosen by design: depths 8 / 20 / 56, five seeds, 15 epochs with
    # two warm-up epochs at LR 0.01 (at 10 epochs and one warm-up epoch resnet-56 sometimes stalls at
    # 50 % for a while), while plain-56 stays far behind (50-75 %). Twice the default's time, and its five
    # seeds leave the twins' float32 outcomes undecided (Holm over 12 tests needs eight; docs/benchmarks.md);
    # kept to compare against.
    "classic": StudyConfig(
        name="classic",
        dataset="digits",
        backends=TWINS,
        archs=ARCHS,
        depths=(8, 20, 56),
        seeds=(0, 1, 2, 3, 4),
        recipe=TrainSpec(epochs=15, warmup_epochs=2),
        gradflow_depths=(8, 20, 56),
    ),
    # He et al. 2015, section 4.2: CIFAR-10, 64k iterations at batch 128 = 164 epochs of the 50k
    # training images, LR 0.1 divided by 10 at 32k and 48k iterations (50 % and 75 %), warm-up at
    # LR 0.01 (the paper's, for ResNet-110; here for every net, one epoch). Five seeds: the fewest with
    # which an exact sign test can show a claim about the typical seed at alpha 0.05. For GPUs.
    "paper": StudyConfig(
        name="paper",
        dataset="cifar10",
        backends=TWINS,
        archs=ARCHS,
        depths=(20, 32, 44, 56, 110),
        seeds=(0, 1, 2, 3, 4),
        recipe=TrainSpec(epochs=164, warmup_epochs=1),
    ),
    # Is it the ReLU or the identity skip that trains the deep net? The classic study's recipe at its
    # deepest depth, with each activation, with and without BN, plain and residual; one backend (the
    # twins agree) and six seeds — the fewest with which every answer can be shown (a failing other
    # activation at alpha/2, `study.verdicts.relu_skip`): 72 runs.
    "relu-skip": StudyConfig(
        name="relu-skip",
        dataset="digits",
        backends=("lightning",),
        archs=ARCHS,
        depths=(56,),
        seeds=tuple(range(6)),
        recipe=TrainSpec(epochs=15, warmup_epochs=2),
        activations=("relu", "tanh", "sigmoid"),
        norms=("batch", "none"),
        gradflow_depths=(8, 20, 56),
    ),
    # Is plain-56 only slower? The classic recipe at depths 20 and 56, plain and residual, trained for
    # 15, 30 and 60 epochs (the LR drops at 50 % and 75 % of each budget); Lightning, five seeds (the
    # fewest for an exact sign test at alpha 0.05): 60 runs. `study.verdicts.budget` answers.
    "budget": StudyConfig(
        name="budget",
        dataset="digits",
        backends=("lightning",),
        archs=ARCHS,
        depths=(20, 56),
        seeds=tuple(range(5)),
        recipe=TrainSpec(epochs=15, warmup_epochs=2),
        budgets=(15, 30, 60),
        gradflow_depths=(20, 56),
    ),
}


def get_config(name: str) -> StudyConfig:
    if name not in CONFIGS:
        raise UserError(f"unknown study config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name]
