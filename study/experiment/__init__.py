"""Running the study: one training run, the resumable runner, each run's probes afterwards, the terminal."""
