"""Item 11: what the engine's first compilation costs, kernel by kernel (issue 22, "measure first").

In a fresh process with an empty compiled cache (a new ``NUMBA_CACHE_DIR``),
:func:`orchlib.system.simulator.compile_engine` compiles every entry point of the engine while a
``numba:compile`` listener (numba's event API) records, per kernel, how many signatures were compiled and the CPU seconds spent compiling it, less the time of
the kernels compiled inside it (numba compiles a called kernel while typing its caller). Then the process's peak
resident memory, and the same for the first env on ``paper`` + 200 steps alone (what a notebook's first cell
pays). A second process with the cache just written shows what every later run pays: loading.

Run it alone: ``cd benchmarks && ../.venv/bin/python bench_compile.py`` prints the section.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile

from harness import Config, Section, fmt

#: compile every entry point (or only the first env) and report per-kernel self CPU seconds as JSON.
_SCRIPT = """
import json, resource, sys, time
from numba.core import event

stack, kernels = [], {}


class Listener(event.Listener):
    def on_start(self, ev):
        func = ev.data["dispatcher"].py_func
        stack.append([f"{func.__module__}.{func.__qualname__}", time.process_time(), 0.0])

    def on_end(self, ev):
        name, start, inner = stack.pop()
        spent = time.process_time() - start
        entry = kernels.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += spent - inner
        if stack:
            stack[-1][2] += spent


event.register("numba:compile", Listener())
wall, cpu = time.perf_counter(), time.process_time()
if sys.argv[1] == "engine":
    from orchlib.system.simulator import compile_engine

    compile_engine()
else:
    import numpy as np

    from orchlib.envs.orchestration import OrchestrationEnv

    env = OrchestrationEnv("paper")
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, r, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
print(json.dumps({
    "wall_s": time.perf_counter() - wall,
    "cpu_s": time.process_time() - cpu,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "kernels": kernels,
}))
"""


def _run(config: Config, what: str, cache: str | None) -> dict:
    env = dict(os.environ)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    done = subprocess.run(
        [config.python, "-c", _SCRIPT, what], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _caches(config: Config):
    """An empty cache directory (removed afterwards); in quick mode the project's own cache, so that the quick
    run (a smoke test of the harness) does not compile everything twice."""
    if config.quick:
        return contextlib.nullcontext(None)
    return tempfile.TemporaryDirectory(prefix="orchlib-numba-cache-")


def run(config: Config) -> Section:
    section = Section(
        "11. The engine's first compilation, kernel by kernel",
        intro=(
            "A fresh process with an empty compiled cache (`NUMBA_CACHE_DIR`), then one that loads what it "
            "wrote. Self CPU time per kernel: its compilation less that of the kernels compiled inside it "
            "(numba's `numba:compile` events). Each rule is compiled once per argument types; one set of types "
            "serves every world."
        ),
    )
    with _caches(config) as cache:
        cold = _run(config, "engine", cache)
        warm = _run(config, "engine", cache)
    with _caches(config) as cache:
        env_cold = _run(config, "env", cache)
        env_warm = _run(config, "env", cache)
    first = "the project's own cache (quick mode)" if config.quick else "empty cache"
    section.table(
        ("what", "wall, s", "CPU, s", "peak RSS, MB", "kernels compiled"),
        [
            (label, fmt(r["wall_s"]), fmt(r["cpu_s"]), fmt(r["peak_mb"]), str(len(r["kernels"])))
            for label, r in (
                (f"every entry point (`compile_engine()`), {first}", cold),
                ("every entry point, cache written by the run above", warm),
                (f"first env on `paper` + 200 steps, {first}", env_cold),
                ("first env on `paper` + 200 steps, cache written by the run above", env_warm),
            )
        ],
    )
    rows = sorted(cold["kernels"].items(), key=lambda item: -item[1][1])
    shown = rows if not config.quick else rows[:5]
    section.table(
        ("kernel", "signatures compiled", "self CPU, s"),
        [(f"`{name}`", str(n), fmt(seconds)) for name, (n, seconds) in shown],
        caption=f"every entry point from an empty cache; self CPU seconds add up to {fmt(sum(s for _, s in cold['kernels'].values()))} s",
    )
    return section


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="show only the five costliest kernels")
    args = parser.parse_args()
    print(run(Config(quick=args.quick, skip_reproduce=True, reproduce_timeout_s=0)).markdown())
