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
