"""Block gradient ratios (Zaeemzadeh et al.): how much does each block change the gradient's norm?

For every block, the ratio ||dL/dx_in|| / ||dL/dx_out|| of the loss gradient's norm at the block's
input and at its output (`Twin.block_gradients`; a block's input is the stem's or the previous
block's output), on one batch of training images in train mode; `study.experiment.post_run` measures
every trained network at initialization and after training. A block with ratio 1 passes the
gradient on with its norm unchanged. The verdict is `study.verdicts.norm_preservation`.
"""

from __future__ import annotations

from study.core.data import Dataset
from study.core.spec import NetworkSpec
from study.core.twin import Twin

BATCH = 128  # training images per probe


def block_ratio_rows(twin: Twin, spec: NetworkSpec, state: dict, dataset: Dataset) -> list[dict]:
    """One row per block: gradient norms at its input and output and their ratio."""
    model = twin.build(spec, initialize=False)
    twin.load_torch_state(model, state)
    norms = twin.block_gradients(model, dataset.x_train[:BATCH], dataset.y_train[:BATCH])
    names = list(norms)
    return [
        {
            "block_index": i,
            "block": name,
            "grad_in": norms[before],
            "grad_out": norms[name],
            "ratio": norms[before] / norms[name] if norms[name] > 0 else None,
        }
        for i, (before, name) in enumerate(zip(names[:-1], names[1:], strict=True))
    ]
