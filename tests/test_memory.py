"""Host memory: freed activation-sized blocks stay in the process (glibc); Keras checkpoints leave TensorFlow out."""

import subprocess
import sys

import pytest

from study.experiment.memory import keep_freed_memory

STEPS = """
import resource, sys
import numpy as np
from study.experiment.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():  # a training step's pattern: a few 8 MiB buffers, every page written, then all freed
    buffers = [np.ones(2**21, dtype=np.float32) for _ in range(4)]
    del buffers
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.quick
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_buffers_are_reused_without_page_faults():
    assert page_faults("default") > 5_000  # glibc's defaults hand the blocks back: the pages fault again
    assert page_faults("keep") < 100


@pytest.mark.quick
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_keep_freed_memory_reports_success_on_glibc():
    assert keep_freed_memory() is True


SAVE = """
import os, sys
os.environ["KERAS_BACKEND"] = sys.argv[1]
import keras
import numpy as np
from keras_impl.port import checkpoint_state, save_checkpoint, to_torch_state
from study.core.presets import parse_spec
from study.core.twin import load

model = load("keras-" + sys.argv[1]).build(parse_spec("resnet8"), "float32")
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
save_checkpoint(model, sys.argv[2] + "/ours.keras")
assert "tensorflow" not in sys.modules, "save_checkpoint imported TensorFlow"
saved, state = checkpoint_state(sys.argv[2] + "/ours.keras"), to_torch_state(model)
assert saved.keys() == state.keys() and all(np.array_equal(saved[k], state[k]) for k in state)
model.save(sys.argv[2] + "/keras.keras")
print("tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_checkpoints_do_not_import_tensorflow_on_other_backends(tmp_path, backend):
    """Keras' own `model.save` imports TensorFlow on every backend (+460 MB for a Keras-on-PyTorch run)."""
    result = subprocess.run([sys.executable, "-c", SAVE, backend, str(tmp_path)], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # Keras' own save still does (when it no longer does, `save_checkpoint` can be plain `model.save`)
    assert result.stdout.split()[-1] == "True", result.stdout
