"""The twin contract: everything both twins implement against, and nothing else.

Pure Python and NumPy (no TensorFlow, no torch). Both twins import only this package; the
application (`study/*.py`) reaches a twin only through `study.core.twin.load`.

- `spec`: what network and what training recipe (`NetworkSpec`, `TrainSpec`, presets, analytic counts).
- `data`: the data sets as arrays, and the order and augmentation of every epoch's batches.
- `init`: the initial weights of a (spec, seed), generated once in NumPy and ported into either twin.
- `records`: what a training run is given (`RunContext`) and returns (`EpochRecord`, `TrainOutcome`).
- `probe`: what one forward/backward pass returns (`Probe`).
- `twin`: the `Twin` protocol (build, count, port, probe, train, raw loop) and the one loader.
- `errors`: the one exception the command line turns into a one-line message and exit code 2.

The reference for every convention both twins follow is docs/design.md.
"""
