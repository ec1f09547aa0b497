"""Synthetic results tables whose truth is known, for the statistics' tests."""

import numpy as np
import pandas as pd

DEPTHS = (8, 20, 56)


def effect(arch, depth):
    """He et al.'s picture: plain error rises 0.4 points per layer, residual error flat and low."""
    return 0.05 + 0.004 * (depth - 8) if arch == "plain" else 0.03


def flat(arch, depth):
    return 0.10 if arch == "plain" else 0.05


def reversed_(arch, depth):
    return 0.30 - 0.004 * (depth - 8) if arch == "plain" else 0.05


def table(
    error=effect, seeds=(0, 1, 2, 3, 4, 5), backends=("keras", "lightning"), noise=0.005, twin_noise=0.002, rng_seed=0
) -> pd.DataFrame:
    """Runs of every backend x arch x depth x seed; ``error(arch, depth)`` (or a dict backend -> such a
    function) is the true mean error fraction. Seed noise (sd `noise`) is shared by the twins, which differ only by
    `twin_noise`; test error = train error + 0.05. Errors clipped to [0, 1]."""
    rng = np.random.default_rng(rng_seed)
    shared = {(a, d, s): rng.normal(0, noise, 2) for a in ("plain", "resnet") for d in DEPTHS for s in seeds}
    truth = error if isinstance(error, dict) else dict.fromkeys(backends, error)
    rows = []
    for backend in backends:
        for (arch, depth, seed), (train_noise, test_noise) in shared.items():
            train = truth[backend](arch, depth) + train_noise + rng.normal(0, twin_noise)
            test = train + 0.05 + test_noise + rng.normal(0, twin_noise)
            rows.append(
                {
                    "run_key": f"{backend}-{arch}{depth}-s{seed}",
                    **{"backend": backend, "arch": arch, "depth": depth, "shortcut": "A", "activation": "relu"},
                    **{"seed": seed, "dataset": "digits", "epochs": 30, "final_train_loss": 0.1},
                    "final_train_error": float(np.clip(train, 0, 1)),
                    "final_test_error": float(np.clip(test, 0, 1)),
                    "best_test_error": float(np.clip(test - 0.01, 0, 1)),
                    **{"diverged": False, "wall_s": 10.0, "train_img_per_s": 1000.0, "params": 1000},
                }
            )
    return pd.DataFrame(rows)
