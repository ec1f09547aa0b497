"""What the study measures on each trained run, from its checkpoint: the lesion study and the block
gradient ratios (`study.measure.lesion`, `study.measure.block_ratios`). Nothing is trained again.

`probe_run` runs in a study worker right after the run it probes, and writes the run folder's
lesion.csv and norms.csv; `study.experiment.study_folder.update_tables` gathers them into the study's tables.
"""

from __future__ import annotations

import functools
from pathlib import Path

from study.core.data import Dataset, load_dataset
from study.core.init import initial_state
from study.core.spec import NetworkSpec
from study.core.twin import load
from study.files import BLOCK_RATIOS, LESION, SUMMARY, write_csv
from study.measure.block_ratios import block_ratio_rows
from study.measure.lesion import lesion_rows
from study.verdicts.inputs import load_summary


@functools.lru_cache(maxsize=2)
def _dataset(name: str, data_dir: str | None, seed: int) -> Dataset:
    return load_dataset(name, data_dir, seed=seed)  # the synthetic set depends on the seed, as in training


def is_probed(run_dir: Path) -> bool:
    return (run_dir / LESION).exists() and (run_dir / BLOCK_RATIOS).exists()


def probe_run(run_dir: Path, data_dir: str | None, evaluator: str) -> Path:
    """Lesion and norm-preservation rows of the finished run in `run_dir`, in the `evaluator` twin.

    Norms are measured at initialization (the run's initial weights: the same for both twins' runs
    of a seed) and after training. A diverged run gets empty tables: its weights are not finite.
    """
    summary = load_summary(run_dir / SUMMARY)
    spec = NetworkSpec.from_dict(summary["config"]["spec"])
    lesion, norms = [], []
    if not summary["diverged"]:
        dataset = _dataset(summary["dataset"], data_dir, summary["seed"])
        twin = load(evaluator)
        checkpoint = run_dir / Path(summary["checkpoint"]).name  # the folder may have moved (collect)
        trained = load(summary["backend"]).checkpoint_state(checkpoint)
        lesion = lesion_rows(twin, spec, trained, dataset, summary["seed"])
        for stage, state in (("init", initial_state(spec, summary["seed"])), ("trained", trained)):
            norms += [{"stage": stage} | row for row in block_ratio_rows(twin, spec, state, dataset)]
    write_csv(run_dir / LESION, lesion, None if lesion else ["kind"])
    write_csv(run_dir / BLOCK_RATIOS, norms, None if norms else ["stage"])
    return run_dir
