"""Run in a process of its own (Keras picks its backend once per process): the agreement checks of
tests/test_agree.py for one Keras backend against Lightning, printed as one JSON object.

    python tests/keras_backend_agree.py {jax,torch,tensorflow} [--cases {spread,full,quick}] [--fault NAME]

"spread": test_agree.SPREAD's one pass in float64 (all but the 64x64 ResNet-50) and float32 (its
CIFAR-style nets), and ten training steps of ResNet-20 in both; "full" adds the rest of SPREAD in both;
"quick": ten float64 training steps of ResNet-8 on 8x8 inputs.

`--fault` breaks one convention in the Keras twin first, so the caller can see the checks fail.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study.core.twin import KERAS_BACKENDS, load  # noqa: E402

FAULTS = ("keras_gap_pooling", "bn_momentum_not_converted")


def inject(fault: str) -> None:
    import keras

    import keras_impl.models

    if fault == "keras_gap_pooling":  # Keras' own layer: on JAX and torch it averages float64 in float32
        keras_impl.models.GlobalAveragePooling2D = keras.layers.GlobalAveragePooling2D
    elif fault == "bn_momentum_not_converted":  # Keras' momentum is 1 - torch's: 0.1 passed through
        keras_impl.models.BN_MOMENTUM_TORCH = 0.9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=tuple(KERAS_BACKENDS))
    parser.add_argument("--fault", choices=FAULTS)
    parser.add_argument("--cases", choices=("spread", "full", "quick"), default="spread")
    args = parser.parse_args()
    twin = KERAS_BACKENDS[args.backend]
    load(twin)
    if args.fault:
        inject(args.fault)

    from test_agree import SPREAD, _id

    from study.core.presets import parse_spec
    from study.measure.numerics import compare_twins

    # ResNet-20's one pass is part of its training check below. On a 2-core CPU the 64x64 ResNet-50
    # takes over a minute of XLA compilation per dtype (the 33x35 one has its layer kinds), and the
    # ImageNet-style nets in float32 half a minute more: float64 is the precise check of every layer,
    # float32 that the rounding stays within its tolerance, which the small nets and training show.
    cases = [(_id(case), parse_spec(case[0], **case[1])) for case in SPREAD]
    full = args.cases == "full"
    checks = [
        (name, spec, dtype, 0)
        for name, spec in cases
        for dtype in ("float64", "float32")
        if full or name != "resnet20" and (spec.family == "cifar" or dtype == "float64" and "64,64" not in name)
    ]
    checks += [("resnet20", parse_spec("resnet20"), dtype, 10) for dtype in ("float64", "float32")]
    if args.cases == "quick":
        checks = [("resnet-8-digits", parse_spec("resnet-8", input_shape=(8, 8, 1)), "float64", 10)]
    results = []
    for name, spec, dtype, steps in checks:
        report = compare_twins(spec, dtype=dtype, batch=4, train_steps=steps, keras=twin)
        results.append({"case": name, "dtype": dtype, "train_steps": steps, **report.to_dict()})
    print(json.dumps({"backend": twin, "results": results}))


if __name__ == "__main__":
    main()
