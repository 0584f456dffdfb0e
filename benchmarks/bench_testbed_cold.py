"""Back-to-back against sporadic inference latency on this machine (why the testbed's servers are slower than the profile).

The profiler times forward passes back to back (warm caches); a testbed server receives a request every few
hundred milliseconds, and in between its weights leave the caches of a shared CPU. This script times both on one
torch thread with the profiler's own function (``measure_latency_ms``; sporadic = its ``idle_gap_ms``, what
``orchlib profile --as-served`` runs) and prints a table. It is section 9 of ``benchmarks/run_all.py``. Run: ``.venv/bin/python benchmarks/bench_testbed_cold.py [--gap-s 0.4] [--repeats 15]``.
Numbers depend on the machine and on everything else running on it; compare the two columns of one run only.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from harness import Config, Section

from orchlib.profiling.mobilenet import build_variant, parse_variant
from orchlib.profiling.profiler import AS_SERVED_GAP_MS, measure_latency_ms

TITLE = "9. Testbed: back-to-back against sporadic inference (profile as served)"

VARIANTS = (
    "mobilenet_v1_1.0_224",
    "mobilenet_v1_1.0_224_quant",
    "mobilenet_v1_0.50_160",
    "mobilenet_v1_0.25_128_quant",
)


def measure(variants: tuple[str, ...], repeats: int, gap_s: float) -> list[tuple[str, float, float]]:
    """(variant, back-to-back median ms, sporadic median ms) on one torch thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for name in variants:
            model = build_variant(name, rng=0)
            resolution = parse_variant(name).resolution
            example = (
                torch.rand((1, 3, resolution, resolution), generator=torch.Generator().manual_seed(0)) * 2 - 1
            )
            hot = measure_latency_ms(model, example, threads=1, repeats=repeats, warmup=5)
            cold = measure_latency_ms(
                model, example, threads=1, repeats=repeats, warmup=0, idle_gap_ms=gap_s * 1e3
            )
            rows.append((name, float(np.median(hot)), float(np.median(cold))))
    finally:
        torch.set_num_threads(previous)
    return rows


def run(config: Config) -> Section:
    """Section 9 of RESULTS.md (quick: one variant, 3 passes, 50 ms gaps)."""
    gap_s = 0.05 if config.quick else AS_SERVED_GAP_MS / 1e3
    variants = VARIANTS[-1:] if config.quick else VARIANTS
    section = Section(
        TITLE,
        intro=(
            f"Median of {config.size(15, 3)} one-thread batch-1 passes per variant, back to back (the profiler's "
            f"default) and each after {gap_s * 1e3:g} ms idle (`orchlib profile --as-served`, what a testbed server "
            "sees). A ratio above 1 means a server runs slower than a back-to-back profile says. Load average at "
            f"start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
        ),
    )
    rows = measure(variants, config.size(15, 3), gap_s)
    section.table(
        ("variant", "back-to-back ms", "sporadic ms", "ratio"),
        [(name, f"{hot:.2f}", f"{cold:.2f}", f"{cold / hot:.2f}") for name, hot, cold in rows],
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--gap-s", type=float, default=AS_SERVED_GAP_MS / 1e3, help="idle time before each sporadic pass (s)"
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed passes per variant and mode")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; gap {args.gap_s} s")
    print(f"{'variant':32s} {'back-to-back ms':>16s} {'sporadic ms':>12s} {'ratio':>6s}")
    for name, hot, cold in measure(VARIANTS, args.repeats, args.gap_s):
        print(f"{name:32s} {hot:16.1f} {cold:12.1f} {cold / hot:6.2f}")


if __name__ == "__main__":
    main()
