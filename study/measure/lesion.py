"""The lesion study's measurement (Veit et al. 2016): delete blocks of a trained network at test time.

For every trained network of a study (both twins'): its test error intact, with each block deleted
in turn, and — for networks of at least `RANDOM_MIN_BLOCKS` blocks — with k random blocks deleted at
once (`RANDOM_KS`, `RANDOM_DRAWS` draws each, the same block sets for both twins' networks of a
seed). What "deleted" means is `study.core.spec.NetworkSpec.blocks`: a residual block keeps its
shortcut, a plain block becomes the identity (option A's parameter-free map where it changes shape).

Every network is evaluated in one evaluator twin (`StudyConfig.probe_backend`, Lightning by default)
from its checkpoint's weights (`Twin.checkpoint_state`; the port is exact, docs/design.md convention
3), so both twins' networks are lesioned by one implementation. The verdict is
`study.verdicts.lesion`.
"""

from __future__ import annotations

import numpy as np

from study.core.data import Dataset
from study.core.init import restrict_state
from study.core.spec import NetworkSpec
from study.core.twin import Twin

RANDOM_KS = (2, 4, 8, 16)  # blocks deleted at once
RANDOM_DRAWS = 3
RANDOM_MIN_BLOCKS = 9  # networks of depth 20 and deeper (6n+2 nets have 3n blocks)


def test_error(twin: Twin, spec: NetworkSpec, state: dict, dataset: Dataset) -> float:
    model = twin.build(spec, initialize=False)
    twin.load_torch_state(model, restrict_state(state, spec))
    logits = twin.forward(model, dataset.x_test, training=False)
    return float(np.mean(np.argmax(logits, axis=1) != dataset.y_test))


def lesion_rows(twin: Twin, spec: NetworkSpec, state: dict, dataset: Dataset, seed: int) -> list[dict]:
    """Test errors of one trained network: intact, each block deleted, k random blocks deleted."""
    blocks = [block.name for block in spec.blocks()]
    rows = [{"kind": "intact", "k": 0, "draw": 0, "blocks": "", "test_error": test_error(twin, spec, state, dataset)}]
    for name in blocks:
        error = test_error(twin, spec.with_overrides(lesion=(name,)), state, dataset)
        rows.append({"kind": "single", "k": 1, "draw": 0, "blocks": name, "test_error": error})
    if len(blocks) >= RANDOM_MIN_BLOCKS:
        for k in (k for k in RANDOM_KS if k < len(blocks)):
            for draw in range(RANDOM_DRAWS):
                rng = np.random.default_rng([seed, spec.depth, k, draw])  # the same sets for both twins' nets
                chosen = tuple(blocks[i] for i in sorted(rng.choice(len(blocks), size=k, replace=False)))
                error = test_error(twin, spec.with_overrides(lesion=chosen), state, dataset)
                rows.append({"kind": "random", "k": k, "draw": draw, "blocks": ";".join(chosen), "test_error": error})
    return rows
