"""Keras 3 twin of the study's networks and training loop, on TensorFlow, JAX or PyTorch.

Keras picks its backend when it is first imported: `study.core.twin.load` sets KERAS_BACKEND for
the backend asked for ("keras": tensorflow, "keras-jax", "keras-torch") before importing this package.
"""

import os

# TensorFlow's C++ start-up chatter is noise for a command-line tool; a user's environment can say otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
