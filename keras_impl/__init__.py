"""Keras 3 (TensorFlow backend) twin of the study's networks and training loop."""

import os

# Keras must pick its backend before its first import; TensorFlow's C++ start-up chatter is noise
# for a command-line tool. Both are defaults a user's environment can override.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
