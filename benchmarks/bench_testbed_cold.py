"""Back-to-back against sporadic inference latency on this machine (why the testbed's servers are slower than the profile).

The profiler times forward passes back to back (warm caches); a testbed server receives a request every few
hundred milliseconds, and in between its weights leave the caches of a shared CPU. This script times both on one
torch thread and prints a table. Run: ``.venv/bin/python benchmarks/bench_testbed_cold.py [--gap-s 0.4] [--repeats 15]``.
Numbers depend on the machine and on everything else running on it; compare the two columns of one run only.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from orchlib.profiling.mobilenet import build_variant, parse_variant
from orchlib.profiling.profiler import measure_latency_ms

VARIANTS = (
    "mobilenet_v1_1.0_224",
    "mobilenet_v1_1.0_224_quant",
    "mobilenet_v1_0.50_160",
    "mobilenet_v1_0.25_128_quant",
)


def sporadic_latency_ms(
    model: torch.nn.Module, example: torch.Tensor, repeats: int, gap_s: float
) -> np.ndarray:
    """``repeats`` single forward passes, each after ``gap_s`` seconds idle, in milliseconds."""
    samples = []
    with torch.inference_mode():
        for _ in range(repeats):
            time.sleep(gap_s)
            start = time.perf_counter()
            model(example)
            samples.append((time.perf_counter() - start) * 1e3)
    return np.array(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap-s", type=float, default=0.4, help="idle time before each sporadic pass (s)")
    parser.add_argument("--repeats", type=int, default=15, help="timed passes per variant and mode")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; gap {args.gap_s} s")
    print(f"{'variant':32s} {'back-to-back ms':>16s} {'sporadic ms':>12s} {'ratio':>6s}")
    for name in VARIANTS:
        model = build_variant(name, rng=0)
        resolution = parse_variant(name).resolution
        example = (
            torch.rand((1, 3, resolution, resolution), generator=torch.Generator().manual_seed(0)) * 2 - 1
        )
        hot = float(np.median(measure_latency_ms(model, example, threads=1, repeats=args.repeats, warmup=5)))
        cold = float(np.median(sporadic_latency_ms(model, example, args.repeats, args.gap_s)))
        print(f"{name:32s} {hot:16.1f} {cold:12.1f} {cold / hot:6.2f}")


if __name__ == "__main__":
    main()
