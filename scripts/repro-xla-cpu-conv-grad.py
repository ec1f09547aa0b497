"""Minimal reproduction, without any code of this project: XLA's CPU backend computes the gradients of
a small 3x3 convolution several times slower than PyTorch's CPU kernels on the same machine.

The convolutions are ResNet-20's on CIFAR-sized inputs (batch 128, NHWC, float32): a stride-1 3x3
convolution at each stage's width, and the stride-2 one that enters stages 2 and 3. For each, the
forward pass, the input gradient (dX) and the kernel gradient (dW) are timed alone: JAX through
`jax.vjp` of `lax.conv_general_dilated` under `jax.jit`, PyTorch through `torch.nn.grad` /
`F.conv2d` (channels-last). Then the compiled HLO of JAX's kernel gradient is searched for the
convolution XLA runs: a "convolution" whose window is the whole feature map, after transposes of
the activations, where PyTorch runs an im2col GEMM.

    python scripts/repro-xla-cpu-conv-grad.py [--threads N] [--repeats R]

Upstream (open when written): jax-ml/jax#23783 (transposed convolutions orders of magnitude slower,
CPU and CUDA), jax-ml/jax#31662 and openxla/xla#34273 (gradient of a transposed convolution 30x
slower than PyTorch). See docs/benchmarks.md, "Keras on JAX on a CPU".
"""

from __future__ import annotations

import argparse
import os
import re
import time

SHAPES = [  # (name, spatial size, in channels, out channels, stride)
    ("stage 1, 3x3 s1", 32, 16, 16, 1),
    ("stage 2, 3x3 s1", 16, 32, 32, 1),
    ("stage 3, 3x3 s1", 8, 64, 64, 1),
    ("into stage 2, 3x3 s2", 32, 16, 32, 2),
    ("into stage 3, 3x3 s2", 16, 32, 64, 2),
]
BATCH = 128


def best_ms(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def jax_times(size, cin, cout, stride, repeats):
    import jax
    import jax.numpy as jnp
    from jax import lax

    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (BATCH, size, size, cin), jnp.float32)
    w = jax.random.normal(key, (3, 3, cin, cout), jnp.float32)
    padding = ((1, 1), (1, 1))

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    y, pullback = jax.vjp(conv, x, w)
    dy = jnp.ones_like(y)
    forward = jax.jit(conv)
    dx = jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0])
    dw = jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0])
    hlo = dw.lower(x, w, dy).compile().as_text()
    windows = re.findall(r"convolution\([^\n]*window=\{size=([0-9x]+)", hlo)
    return {
        "forward": best_ms(lambda: forward(x, w).block_until_ready(), repeats),
        "dX": best_ms(lambda: dx(x, w, dy).block_until_ready(), repeats),
        "dW": best_ms(lambda: dw(x, w, dy).block_until_ready(), repeats),
        "dW window": ",".join(windows) or "(no convolution op: a custom call)",
        "dW transposes": hlo.count(" transpose("),
    }


def torch_times(size, cin, cout, stride, repeats):
    import torch
    import torch.nn.functional as F

    x = torch.randn(BATCH, cin, size, size).contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, 3, 3).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, w, stride=stride, padding=1)
    dy = torch.ones_like(y)
    with torch.no_grad():
        return {
            "forward": best_ms(lambda: F.conv2d(x, w, stride=stride, padding=1), repeats),
            "dX": best_ms(lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, stride=stride, padding=1), repeats),
            "dW": best_ms(lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=stride, padding=1), repeats),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for both libraries (default 1)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    import jax
    import torch

    torch.set_num_threads(args.threads)
    print(f"jax {jax.__version__} (CPU), torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, NHWC")
    print("| convolution | op | JAX ms | PyTorch ms | JAX / PyTorch |")
    print("| --- | --- | ---: | ---: | ---: |")
    notes = []
    for name, size, cin, cout, stride in SHAPES:
        j = jax_times(size, cin, cout, stride, args.repeats)
        t = torch_times(size, cin, cout, stride, args.repeats)
        label = f"{name} ({size}x{size}, {cin}->{cout})"
        for op in ("forward", "dX", "dW"):
            print(f"| {label} | {op} | {j[op]:.2f} | {t[op]:.2f} | {j[op] / t[op]:.1f}x |")
        notes.append(f"{name}: XLA's dW is a convolution with window {j['dW window']}, {j['dW transposes']} transposes")
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
