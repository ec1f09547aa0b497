"""No TensorFlow where none is needed, no W&B unless a run logs to it.

TensorFlow is hidden by a package of that name, first on the path, whose import fails (as on a
machine without it, such as the GPU image): every path of the other three backends must then work,
and the TensorFlow backend must say in one line what to install.
"""

import subprocess
import sys

import pytest

QUICK = ["--dataset", "synthetic", "--epochs", "1", "--warmup-epochs", "0", "--wandb", "disabled"]


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.quick
def test_the_hiding_works(without_tensorflow):
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True,
                           env=without_tensorflow)  # fmt: skip
    assert probe.returncode == 1 and "hidden by the test" in probe.stderr


def test_training_on_keras_torch_runs_without_tensorflow(tmp_path, without_tensorflow):
    """The study, `agree` and `bench` of keras-jax, keras-torch and lightning without TensorFlow:
    tests/test_gpu_check.py (its rehearsal runs `compare` and a study on them with TensorFlow hidden)."""
    result = cli("train", "resnet-8", "--backend", "keras-torch", *QUICK, "--out", str(tmp_path / "run"),
                 env=without_tensorflow)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.quick
def test_the_tensorflow_backend_without_tensorflow_is_one_line_with_its_install(tmp_path, without_tensorflow):
    out = tmp_path / "run"
    result = cli("train", "resnet-8", "--backend", "keras", *QUICK, "--out", str(out), env=without_tensorflow)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert "the keras backend cannot load here" in result.stderr and "pip install" in result.stderr
    assert not out.exists()


IMPORTED = """
import sys
from study.cli import main
code = main(sys.argv[1:])
print(code, "wandb" in sys.modules, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("mode, imported", [("disabled", "False"), ("offline", "True")])
def test_wandb_is_imported_only_when_a_run_logs_to_it(tmp_path, mode, imported):
    args = ["train", "resnet-8", "--backend", "lightning", *QUICK[:-1], mode, "--out", str(tmp_path / "run")]
    result = subprocess.run([sys.executable, "-c", IMPORTED, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == f"0 {imported} False"  # and Lightning never loads TensorFlow
