import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def no_shared_wandb_service():
    """A test that ran W&B in this process leaves WANDB_SERVICE set: every command a later test starts
    would then share that service (and its run ids). Each test's commands start their own."""
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture
def without_tensorflow(tmp_path):
    """An environment whose `import tensorflow` fails (as on a machine without it, e.g. the GPU image)."""
    fake = tmp_path / "hidden" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("No module named tensorflow (hidden by the test)")\n')
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(fake.parent), os.environ.get("PYTHONPATH")]))}
