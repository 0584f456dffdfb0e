"""The random-worlds study's cost (figure 11), to choose its request count within ``make reproduce``'s budget.

For each request count, a study of ``--worlds`` worlds x 3 replicates x every method (the batched path) runs
from an empty cache twice: serially in this process, whose CPU time (``resource.getrusage``) does not depend on
what else the machine runs, and with ``--jobs`` processes, whose wall time does; then once more from the cache.
The table projects both to the 100 worlds of ``make reproduce`` (linear in worlds: every world is its own
batch); ``CPU / jobs`` is the wall time on otherwise idle cores if the work split perfectly. A warm-up study of
one world runs first (the engine's kernels load once per process).

Run it alone: ``.venv/bin/python benchmarks/bench_worlds.py [--worlds 6] [--requests 1000 1500 2000] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from orchlib.study import worlds


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=6)
    parser.add_argument("--requests", type=int, nargs="+", default=[1000, 1500, 2000])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    full = worlds.FULL_STUDY
    with tempfile.TemporaryDirectory() as warm:
        worlds.run_world_study(full.replace(n_worlds=1, n_requests=100), warm, n_jobs=1, progress=False)
    scale = full.n_worlds / args.worlds
    rows = []
    for n_requests in args.requests:
        study = full.replace(n_worlds=args.worlds, n_requests=n_requests)
        with tempfile.TemporaryDirectory() as out:
            cpu = _cpu_s()
            worlds.run_world_study(study, out, n_jobs=1, progress=False)
            cpu = _cpu_s() - cpu
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            worlds.run_world_study(study, out, n_jobs=args.jobs, progress=False)
            wall = time.perf_counter() - start
            start = time.perf_counter()
            worlds.run_world_study(study, out, n_jobs=args.jobs, progress=False)
            cached = time.perf_counter() - start
        rows.append((n_requests, cpu, wall, cached))
    n_runs = args.worlds * full.n_replicates * len(full.methods)
    print(
        f"random-worlds study: {args.worlds} worlds x {full.n_replicates} replicates x {len(full.methods)} methods "
        f"({n_runs} runs); {os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        f"| requests per run | CPU, serial (s) | wall, {args.jobs} jobs (s) | from cache (s) "
        f"| 100 worlds: CPU / {args.jobs} (s) | 100 worlds: wall (s) |"
    )
    print("|---|---|---|---|---|---|")
    for n_requests, cpu, wall, cached in rows:
        print(
            f"| {n_requests} | {cpu:.1f} | {wall:.1f} | {cached:.1f} | {cpu * scale / args.jobs:.0f} "
            f"| {wall * scale:.0f} |"
        )


if __name__ == "__main__":
    main()
