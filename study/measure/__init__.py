"""What asks a twin and returns rows: same numbers (`numerics`, `exactness`), gradients at initialization
(`gradflow`), speed (`bench`), and the probes of a trained network (`lesion`, `block_ratios`)."""
