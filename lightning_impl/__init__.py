"""PyTorch (+ PyTorch Lightning) twin of the study's networks and training loop."""
