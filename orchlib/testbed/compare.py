"""The simulator against the testbed: the same requests and the same decisions, simulated and served for real.

:func:`simulate_same` replays a testbed run's request stream (the runner's replicate-0 stream of the same
seed: same arrival times, users, requirements and compute-noise draws) in the simulator, with the very action
the testbed's agent chose for each request, and returns the simulator's breakdown of each. :func:`sim_vs_real`
compares the two per tier and variant (median and p95 response time, and the median of each part of the
breakdown). :func:`run_comparison` profiles this machine with the project's profiler, then runs the testbed
and the simulator at each user count. The simulator gets each tier's per-request protocol cost as the testbed
measured it at the start of that run (``TierSpec.request_overhead_ms``, L11; :meth:`Testbed.measure_overhead`),
never a value fitted to the comparison.

Where the two differ, the parts say which piece of the latency model is off; see the note of issue 15.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from orchlib.study.runner import atomic_write
from orchlib.system.engine import RESPONSE_PARTS
from orchlib.system.scenario import TIERS, Scenario, TierSpec, testbed
from orchlib.system.simulator import Simulator, System, build_system
from orchlib.testbed.run import TestbedConfig, run_testbed, stream_rng

#: response-time parts compared, ms (the request table's names).
PARTS: tuple[str, ...] = (*RESPONSE_PARTS, "latency_ms")


def simulate_same(system: System, seed: int, real: pd.DataFrame) -> pd.DataFrame:
    """The simulator's breakdown of every request of a testbed run, served with the testbed's actions.

    Args:
        system: the scenario to simulate (its arrivals and requirements must be those the run used).
        seed: the run's seed.
        real: the run's request table (rows in request order; failed requests are simulated too, so that the
            simulated state stays the one the decisions met, and marked by their ``status``).

    Returns:
        A copy of ``real``'s identifying columns with the simulated parts (:data:`PARTS`).

    Raises:
        ValueError: the stream differs (another scenario or seed): a request's time or user does not match.
    """
    sim = Simulator(system, rng=stream_rng(seed))
    index = {name: i for i, name in enumerate(system.variant_names)}
    records = []
    for row in real.sort_values("request").itertuples(index=False):
        request = sim.next_request()
        if abs(request.time_ms - row.time_s * 1e3) > 1e-6 or request.user != row.user:
            raise ValueError(
                f"request {row.request}: the simulator draws time {request.time_ms:.3f} ms user {request.user}, the "
                f"testbed run has {row.time_s * 1e3:.3f} ms user {row.user}; simulate with the run's scenario and seed"
            )
        action = system.encode_action(TIERS.index(str(row.tier)), index[str(row.variant)])
        breakdown = sim.serve(request, action)
        parts = breakdown._asdict()
        parts["latency_ms"] = parts.pop("total_ms")
        records.append(
            {"request": row.request, "tier": str(row.tier), "variant": str(row.variant), "status": row.status}
            | parts
        )
    return pd.DataFrame.from_records(records)


def _p95(values: pd.Series) -> float:
    return float(np.percentile(values, 95)) if len(values) else float("nan")


def sim_vs_real(real: pd.DataFrame, simulated: pd.DataFrame, n_users: int) -> pd.DataFrame:
    """Per tier and variant: median and p95 response time and the median of each part, real and simulated.

    Only requests the testbed answered are compared. Errors are ``(simulated - real) / real`` in percent.

    Returns:
        One row per (tier, variant) with ``n_users``, ``n_requests``, ``real_median_ms``, ``sim_median_ms``,
        ``median_error_pct``, ``real_p95_ms``, ``sim_p95_ms``, ``p95_error_pct``, and ``real_<part>`` /
        ``sim_<part>`` medians for every part of :data:`PARTS` but the total.
    """
    ok = real["status"].to_numpy() == "ok"
    merged = real.loc[ok, ["request", "tier", "variant", *PARTS]].merge(
        simulated[["request", *PARTS]], on="request", suffixes=("_real", "_sim")
    )
    rows = []
    for (tier, variant), group in merged.groupby(["tier", "variant"], observed=True, sort=True):
        if group.empty:
            continue
        r, s = group["latency_ms_real"], group["latency_ms_sim"]
        row = {
            "n_users": n_users,
            "tier": tier,
            "variant": variant,
            "n_requests": len(group),
            "real_median_ms": r.median(),
            "sim_median_ms": s.median(),
            "real_p95_ms": _p95(r),
            "sim_p95_ms": _p95(s),
        }
        row["median_error_pct"] = 100 * (row["sim_median_ms"] - row["real_median_ms"]) / row["real_median_ms"]
        row["p95_error_pct"] = 100 * (row["sim_p95_ms"] - row["real_p95_ms"]) / row["real_p95_ms"]
        for part in PARTS[:-1]:
            row[f"real_{part}"] = group[f"{part}_real"].median()
            row[f"sim_{part}"] = group[f"{part}_sim"].median()
        rows.append(row)
    return pd.DataFrame(rows)


def with_overhead(scenario: Scenario, overhead_ms: Mapping[str, float]) -> Scenario:
    """``scenario`` with each tier's per-request protocol cost set (L11), e.g. a testbed run's measurement.

    Args:
        overhead_ms: ms per tier, ``{"end": .., "edge": .., "cloud": ..}`` (a testbed run's
            ``info["request_overhead_ms"]``, also in its ``run.json``).

    Raises:
        ValueError: a tier missing or unknown, or a value that is not a finite number >= 0.
    """
    if set(overhead_ms) != set(TIERS):
        raise ValueError(f"overhead_ms must give each of {list(TIERS)}, got {sorted(overhead_ms)}")
    return scenario.replace(
        **{
            tier: dataclasses.replace(getattr(scenario, tier), request_overhead_ms=overhead_ms[tier])
            for tier in TIERS
        }
    )


def comparison_scenario(
    n_users: int, profile: str | os.PathLike[str], variants: Sequence[str] | None = None
) -> Scenario:
    """The ``testbed`` preset at ``n_users`` with edge and cloud on ``profile`` (a profile of this machine)."""
    base = testbed()
    return base.replace(
        n_users=n_users,
        edge=TierSpec(str(profile), n_workers=base.edge.n_workers),
        cloud=TierSpec(str(profile), n_workers=base.cloud.n_workers),
        variant_subset=tuple(variants) if variants is not None else base.variant_subset,
    )


def profile_this_machine(
    path: Path,
    variants: Sequence[str],
    repeats: int = 30,
    progress: bool = True,
    idle_gap_ms: float | None = None,
) -> Path:
    """Profile ``variants`` on this machine with one torch thread (as the servers run) into ``path``.

    Args:
        idle_gap_ms: idle time before each timed pass, ms; None: "as served" with the profiler's
            :data:`~orchlib.profiling.profiler.AS_SERVED_GAP_MS` (the servers answer sporadic requests, T7);
            0: back to back.
    """
    from orchlib.profiling.profiler import AS_SERVED_GAP_MS, profile_metadata, profile_to_csv

    gap = AS_SERVED_GAP_MS if idle_gap_ms is None else idle_gap_ms
    command = f"orchlib.testbed.compare.profile_this_machine(repeats={repeats}, idle_gap_ms={gap:g})"
    metadata = profile_metadata(name=path.stem, threads=1, command=command, machine=None)
    if gap > 0:
        metadata["idle_gap_ms"] = f"{gap:g}"
    profile_to_csv(
        path,
        list(variants),
        threads=1,
        repeats=repeats,
        warmup=5,
        metadata=metadata,
        rng=0,
        progress=progress,
        idle_gap_ms=gap,
    )
    return path


def run_comparison(
    out_dir: str | os.PathLike[str],
    users: Sequence[int] = (1, 2, 4),
    duration_s: float = 60.0,
    variants: Sequence[str] | None = None,
    seed: int = 0,
    agent: str = "random",
    mode: str = "auto",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Profile this machine, then run the testbed and the simulator on the same requests at each user count.

    Writes ``this_machine_1thread.csv`` (the profile, "as served": :func:`profile_this_machine`), ``users_<n>/`` (each testbed run), ``requests.parquet``
    (real and simulated rows, column ``source``) and ``sim_vs_real.csv`` to ``out_dir``, each atomically. A run
    whose ``users_<n>/requests.parquet`` exists is reused (with the protocol cost its ``run.json`` recorded).
    Each user count is simulated with the per-request protocol cost its own testbed run measured (L11).

    Returns:
        ``(table, requests)``: :func:`sim_vs_real` rows for every user count, and the paired request rows.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = tuple(variants) if variants is not None else testbed().variant_subset
    profile = out / "this_machine_1thread.csv"
    if not profile.is_file():
        profile_this_machine(profile, names, progress=progress)
    tables, frames = [], []
    for n in users:
        scenario = comparison_scenario(n, profile, names)
        run_dir = out / f"users_{n}"
        if (run_dir / "requests.parquet").is_file():
            real = pd.read_parquet(run_dir / "requests.parquet")
            info = json.loads((run_dir / "run.json").read_text())
        else:
            config = TestbedConfig(
                scenario=scenario, agent=agent, duration_s=duration_s, seed=seed, mode=mode
            )
            result = run_testbed(config, out_dir=run_dir, progress=progress)
            real, info = result.requests, result.info
        if "request_overhead_ms" not in info:
            raise ValueError(
                f"{run_dir / 'run.json'} has no 'request_overhead_ms' (a run from before the protocol-cost "
                "measurement); delete that folder to run it again"
            )
        measured = with_overhead(scenario, info["request_overhead_ms"])
        simulated = simulate_same(build_system(measured), seed, real)
        tables.append(sim_vs_real(real, simulated, n))
        both = real[["request", "tier", "variant", "status", *PARTS]].assign(source="real", n_users=n)
        frames += [both, simulated.assign(source="simulated", n_users=n)]
    table = pd.concat(tables, ignore_index=True)
    requests = pd.concat(frames, ignore_index=True)
    requests["tier"] = pd.Categorical(requests["tier"].astype(str), categories=list(TIERS))
    atomic_write(out / "sim_vs_real.csv", table.to_csv(index=False, float_format="%.3f").encode())
    import io

    buffer = io.BytesIO()
    requests.to_parquet(buffer, index=False)
    atomic_write(out / "requests.parquet", buffer.getvalue())
    return table, requests
