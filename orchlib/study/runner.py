"""The experiment runner: one run = one agent serving one scenario's requests, recorded request by request.

A run is described by a frozen :class:`RunSpec` (scenario, agent catalogue name and keyword arguments,
environment options, seed, replicate). :func:`run_one` plays it and returns a tidy per-request table and a
summary; :func:`run_sweep` plays many, in parallel through joblib, caching each result on disk under a key
that changes whenever the spec or any data file it reads changes; :func:`grid` writes sweeps as data.

Seeds. Run ``(seed, replicate)`` draws everything from ``SeedSequence(seed, spawn_key=(replicate,))``
(the same as ``SeedSequence(seed).spawn(n)[replicate]``), split into an environment stream and an agent
stream. Two agents with the same seed and replicate therefore get the same random draws for arrivals,
requirements and compute noise (common random numbers; with Poisson arrivals, the very same requests),
which is what lets :func:`orchlib.study.metrics.compare_to_baseline` pair them by replicate. Results do not depend on the order runs are executed in, nor on the process: serial,
loky or Dask give the same numbers.

Fast path. Runs of catalogue agents that have a batched form (:func:`batch_agent`: tabular Q-learning with the
paper's and the textbook defaults, the location-only stand-in, UCB1, the fixed tier baselines, random, greedy on
the profiles, adaptive greedy, the hybrid and the oracle; in the ideal and the grounded world) run together on
the batched engine (:class:`orchlib.envs.batch.BatchEnv`, played by the one batched loop
:func:`orchlib.study.batch.play_batch`), one task per world (scenario and environment options) whatever their
agents, at most :data:`MAX_BATCH` runs per task; it records the same per-request table.
Each replicate's simulator draws from the generator ``OrchestrationEnv.reset`` would give it, so its requests
are the per-request path's, and the tables of the fixed policies, random, the profile agents, the oracle and the
Q-learners and UCB1 (whose per-request forms are the one-replicate views of the batched rules) are bit for bit
the per-request path's. A run's
numbers do not depend on the other runs of its batch. ``run_sweep(..., batched=False)`` plays everything on the
per-request path.

Parallelism. :func:`run_sweep` uses the backend of the active ``joblib.parallel_config`` (loky processes by
default), so ``with joblib.parallel_config(backend="dask"):`` sends the same sweep to a Dask cluster. Each
run is single-threaded work; to avoid oversubscription, loky caps BLAS/OpenMP threads in its workers at
``cpu_count // n_jobs``, :class:`orchlib.agents.dqn.DQN` runs torch on one thread, and every run of a sweep executes
with torch limited to one thread (restored afterwards). On a Dask cluster, start workers with
``threads_per_worker=1`` (and ``OMP_NUM_THREADS=1`` in their environment if agents use BLAS-heavy code).

Cache. ``out_dir`` holds, per run, ``<key>.parquet`` (the per-request table) and ``<key>.json`` (the spec with
its scenario, the data fingerprint, the data files and the summary). Both are written atomically (temporary
file in the same folder, fsync, ``os.replace``), the JSON last, so a run counts as done only when both are
complete; a killed sweep leaves at most hidden ``.*.tmp`` files, never a partial result, and rerunning it
computes only the missing runs. A cached run that cannot be used (truncated or corrupted Parquet or JSON,
a table of the wrong shape) is recomputed over, with a :class:`CacheWarning` naming the file; results of an
older :data:`RESULT_FORMAT` are never reused (the format is part of the key), and a sweep that finds some says
so once, also with a :class:`CacheWarning`. The key covers the spec and the contents of the data files, *not*
the code: after changing an agent's or the simulator's code, use a new ``out_dir`` (or bump
:data:`RESULT_FORMAT`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import inspect
import io
import itertools
import json
import math
import operator
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
from gymnasium.utils import seeding as gym_seeding
from tqdm.auto import tqdm

from orchlib.agents.base import Agent
from orchlib.agents.batched import BatchAgent, BatchOracle
from orchlib.envs.batch import BatchEnv
from orchlib.envs.orchestration import OrchestrationEnv, public_info
from orchlib.study import metrics
from orchlib.study.batch import play_batch
from orchlib.system.engine import RESPONSE_PARTS
from orchlib.system.scenario import TIERS, Scenario, preset
from orchlib.system.simulator import System, build_system, compile_engine

#: bump when the recorded columns or their meaning change, so older cached results are not reused.
#: 2: issue 13 changed catalogue defaults and the discrete state (the keys do not capture them); 3: the
#: engine's batched path records learners' runs from per-replicate streams (issue 14); 4: the grounded
#: discrete state gained the device class and device load, and the hybrid's residual forgets and charges
#: spread (issue 13b); 5: the per-request protocol cost ``overhead_ms`` is a part of the response time
#: (issue 15); 6: grounded Q-learning runs batched, and the hybrid's log-ratio sample is NumPy's log (issue 14b);
#: 7: the textbook Q-learning and the location-only stand-in run batched (their exploration streams changed); 8:
#: per-request Q-learning and Dyna-Q are the one-replicate view of the batched rules (their streams changed).
RESULT_FORMAT = 8

#: ``factory(env) -> Agent``: builds the agent of a run instead of the catalogue (tests, custom agents).
AgentFactory = Callable[[OrchestrationEnv], Agent]

#: env options a spec may not set, because the runner owns them.
_RUNNER_ENV_KEYS = frozenset({"scenario", "max_steps"})

_DECIDERS = ("central", "per_user")


def _freeze(value: Any, where: str) -> Any:
    """A hashable, JSON-able copy of ``value`` (lists become tuples), or TypeError naming ``where``."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v, where) for v in value)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite number {value!r} cannot be saved as JSON")
        return float(value)
    raise TypeError(
        f"{where}: {type(value).__name__} {value!r} is not JSON-able; use numbers, strings, bools, None or "
        "tuples of them"
    )


def _freeze_kwargs(kwargs: Mapping[str, Any] | Iterable[tuple[str, Any]], field: str) -> tuple:
    pairs = list(kwargs.items()) if isinstance(kwargs, Mapping) else [tuple(p) for p in kwargs]
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise TypeError(f"RunSpec.{field} must be (name, value) pairs with str names, got {pair!r}")
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"RunSpec.{field} names a keyword twice: {names}")
    return tuple(sorted((name, _freeze(value, f"RunSpec.{field}[{name!r}]")) for name, value in pairs))


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One run: which agent serves which scenario, with which seed. Hashable and JSON-able.

    ``agent_kwargs``/``env_kwargs`` may be given as a dict; they are stored as sorted ``(name, value)``
    pairs (lists become tuples) so that equal specs compare, hash and serialise equally.

    Raises:
        TypeError, ValueError: a field of the wrong type or out of range (the message names it).
    """

    #: the system served.
    scenario: Scenario
    #: catalogue name (``orchlib.agents.catalogue.AGENT_NAMES``).
    agent: str
    #: keyword arguments for ``make_agent``.
    agent_kwargs: tuple[tuple[str, Any], ...] = ()
    #: keyword arguments for :class:`~orchlib.envs.orchestration.OrchestrationEnv` (e.g. ``observation="box"``).
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    #: base seed of the sweep (>= 0).
    seed: int
    #: index of this independent run within the sweep (>= 0).
    replicate: int
    #: ``"central"``: one learner decides for every user; ``"per_user"``: one independent learner per user.
    deciders: Literal["central", "per_user"] = "central"
    #: legend name in results (None: the agent name).
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, Scenario):
            raise TypeError(f"RunSpec.scenario must be a Scenario, got {type(self.scenario).__name__}")
        if not isinstance(self.agent, str) or not self.agent:
            raise ValueError(f"RunSpec.agent must be a non-empty catalogue name, got {self.agent!r}")
        object.__setattr__(self, "agent_kwargs", _freeze_kwargs(self.agent_kwargs, "agent_kwargs"))
        object.__setattr__(self, "env_kwargs", _freeze_kwargs(self.env_kwargs, "env_kwargs"))
        reserved = _RUNNER_ENV_KEYS.intersection(name for name, _ in self.env_kwargs)
        if reserved:
            raise ValueError(
                f"RunSpec.env_kwargs may not set {sorted(reserved)}: the runner passes the scenario and runs "
                "exactly scenario.n_requests requests"
            )
        for name in ("seed", "replicate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"RunSpec.{name} must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.deciders not in _DECIDERS:
            raise ValueError(f"RunSpec.deciders must be one of {_DECIDERS}, got {self.deciders!r}")
        if self.label is not None and (not isinstance(self.label, str) or not self.label):
            raise ValueError(f"RunSpec.label must be a non-empty string or None, got {self.label!r}")

    @property
    def display_label(self) -> str:
        """The ``agent`` value in results tables: ``label``, or the catalogue name."""
        return self.label if self.label is not None else self.agent

    def replace(self, **changes: Any) -> RunSpec:
        """``dataclasses.replace`` (for chaining)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; keyword arguments as dicts, the scenario as :meth:`Scenario.to_dict`."""
        return {
            "scenario": self.scenario.to_dict(),
            "agent": self.agent,
            "agent_kwargs": dict(self.agent_kwargs),
            "env_kwargs": dict(self.env_kwargs),
            "seed": self.seed,
            "replicate": self.replicate,
            "deciders": self.deciders,
            "label": self.label,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a mapping, or a missing or unknown field (named, with the valid ones); the
                scenario's own fields as :meth:`Scenario.from_dict`.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"spec: expected an object with the fields of RunSpec, got {data!r}")
        fields = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        unknown = sorted(set(data) - set(fields))
        missing = [name for name in required if name not in data]
        if unknown or missing:
            raise ValueError(
                f"spec: unknown field(s) {unknown} and missing field(s) {missing}; RunSpec has fields {fields} "
                f"and requires {required}"
            )
        data = dict(data)
        data["scenario"] = Scenario.from_dict(data["scenario"])
        return cls(**data)

    def key(self, fingerprint: str) -> str:
        """Cache key: SHA-256 of the spec's JSON and the data fingerprint (:meth:`System.fingerprint`)."""
        payload = json.dumps(
            {"format": RESULT_FORMAT, "spec": self.to_dict(), "fingerprint": fingerprint}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def seed_sequences(self) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
        """(environment, agent) seed sequences of this run."""
        env_seq, agent_seq = np.random.SeedSequence(self.seed, spawn_key=(self.replicate,)).spawn(2)
        return env_seq, agent_seq


# ----------------------------------------------------------------------------------------------------------
# Systems, cached per process (building one reads and validates files)

_SYSTEMS: dict[str, tuple[System, str]] = {}
_MAX_SYSTEMS = 16


def system_for(scenario: Scenario) -> tuple[System, str]:
    """The :class:`System` of ``scenario`` and its fingerprint, built once per process.

    The cached system is reused only while the fingerprint of its data files is unchanged (the files are
    re-hashed on every call, which is cheap next to a run), so an edited data file is picked up at once.
    """
    text = scenario.to_json()
    cached = _SYSTEMS.get(text)
    if cached is not None and cached[0].fingerprint() == cached[1]:
        return cached
    system = build_system(scenario)
    entry = (system, system.fingerprint())
    if len(_SYSTEMS) >= _MAX_SYSTEMS:
        _SYSTEMS.pop(next(iter(_SYSTEMS)))
    _SYSTEMS[text] = entry
    return entry


# ----------------------------------------------------------------------------------------------------------
# One run

# the response time and its parts, ms, as the env's info names them (and the table does)
_BREAKDOWN = (*RESPONSE_PARTS, "latency_ms")
# info keys recorded for the request just served (see OrchestrationEnv's "Info"), in array-column order.
_SERVED = (
    "served_user",
    "served_time_ms",
    "served_requirement_class",
    "tier",
    "variant",
    "accuracy_pct",
    "met_requirement",
    *_BREAKDOWN,
)
_ORACLE = ("oracle_latency_ms", "regret_ms")

#: columns of the per-request table, in order.
REQUEST_COLUMNS: tuple[str, ...] = (
    "request",
    "time_s",
    "user",
    "state",
    "requirement_pct",
    "tier",
    "variant",
    "accuracy_pct",
    "met_requirement",
    *_BREAKDOWN,
    "reward",
    "oracle_latency_ms",
    "regret_ms",
    "agent",
    "scenario",
    "replicate",
)


def _make_agent(spec: RunSpec, env: OrchestrationEnv, factory: AgentFactory | None) -> tuple[Agent, bool]:
    """The run's agent and whether it may read the private info keys."""

    def build() -> Agent:
        if factory is not None:
            agent = factory(env)
        else:
            from orchlib.agents.catalogue import (
                make_agent,  # the catalogue imports every agent family; load it late
            )

            agent = make_agent(spec.agent, env, **dict(spec.agent_kwargs))
        if not isinstance(agent, Agent):
            raise TypeError(
                f"the factory of agent {spec.agent!r} returned {type(agent).__name__}, not an Agent"
            )
        return agent

    agent = build()
    if spec.deciders == "central":
        return agent, agent.privileged
    from orchlib.agents.bandits import PerUser

    # PerUser seeds each user's learner from its own rng, reset below; `agent` only tells privilege.
    return PerUser(env.observation_space, env.action_space, lambda _obs_space, _action_space: build()), (
        agent.privileged
    )


def _refuse(spec: RunSpec, request: int, action: Any, mask: np.ndarray) -> RuntimeError:
    return RuntimeError(
        f"agent {spec.display_label!r} chose action {action!r} for request {request}, which is not allowed by "
        f"info['action_mask'] (valid actions: {np.flatnonzero(mask).tolist()}); agents must respect the mask"
    )


def _play(spec: RunSpec, factory: AgentFactory | None, fingerprint: str | None) -> tuple[pd.DataFrame, dict]:
    started = time.perf_counter()
    scenario = spec.scenario
    system, found = system_for(scenario)
    if fingerprint is not None and found != fingerprint:
        raise RuntimeError(
            f"the data files of scenario {scenario.name!r} changed while the sweep ran (fingerprint "
            f"{found[:12]} instead of {fingerprint[:12]}); rerun the sweep"
        )
    env = OrchestrationEnv(system, **dict(spec.env_kwargs))
    agent, privileged = _make_agent(spec, env, factory)
    env_seq, agent_seq = spec.seed_sequences()
    obs, info = env.reset(seed=int(env_seq.generate_state(1, np.uint64)[0]))
    agent.reset(np.random.default_rng(agent_seq))
    view: Callable[[Mapping[str, Any]], Mapping[str, Any]] = (lambda i: i) if privileged else public_info
    discrete = env.observation_mode == "discrete"
    # In "penalty" mode the requirement is part of the reward, not a constraint: every action is allowed,
    # and the agent learns the requirement from the penalty (the env's info keeps the requirement mask).
    enforce_mask = env.accuracy_mode == "mask"
    every_action = np.ones(system.n_actions, dtype=bool)
    record = operator.itemgetter(*_SERVED, *(_ORACLE if env.oracle else ()))
    n = scenario.n_requests
    n_actions = system.n_actions
    rows: list[tuple] = []
    rewards = np.empty(n)
    states = np.full(n, -1, dtype=np.int64)
    # What the agent sees of info; the view of step i's info serves learn(i) and act(i + 1).
    shown = view(info)
    for i in range(n):
        mask = info["action_mask"] if enforce_mask else every_action
        action = agent.act(obs, mask, shown)
        try:
            a = operator.index(action)
        except TypeError:
            raise _refuse(spec, i, action, mask) from None
        if not (0 <= a < n_actions and mask[a]):
            raise _refuse(spec, i, action, mask)
        next_obs, reward, _, _, next_info = env.step(a)
        next_mask = next_info["action_mask"] if enforce_mask else every_action
        shown = view(next_info)
        agent.learn(obs, a, reward, next_obs, next_mask, shown)
        rows.append(record(next_info))
        rewards[i] = reward
        if discrete:
            states[i] = obs
        obs, info = next_obs, next_info
    values = np.array(rows, dtype=float).reshape(n, -1)
    column = dict(zip(_SERVED + _ORACLE, values.T, strict=False))
    frame = _request_frame(spec, system, column, rewards, states)
    return frame, _result_extra(spec, system, found, frame, started)


def _request_frame(
    spec: RunSpec, system: System, column: Mapping[str, np.ndarray], rewards: np.ndarray, states: np.ndarray
) -> pd.DataFrame:
    """The per-request table (:data:`REQUEST_COLUMNS`) from the recorded columns (``_SERVED`` and ``_ORACLE``
    names; the oracle's absent when the env ran without it)."""
    n = rewards.size
    nan = np.full(n, np.nan)
    return pd.DataFrame(
        {
            "request": np.arange(n, dtype=np.int64),
            "time_s": column["served_time_ms"] / 1e3,
            "user": column["served_user"].astype(np.int64),
            "state": states,
            "requirement_pct": system.requirement_pct[column["served_requirement_class"].astype(np.intp)],
            "tier": pd.Categorical.from_codes(column["tier"].astype(np.intp), categories=list(TIERS)),
            "variant": pd.Categorical.from_codes(
                column["variant"].astype(np.intp), categories=list(system.variant_names)
            ),
            "accuracy_pct": column["accuracy_pct"],
            "met_requirement": column["met_requirement"].astype(bool),
            **{name: column[name] for name in _BREAKDOWN},
            "reward": rewards,
            "oracle_latency_ms": column.get("oracle_latency_ms", nan),
            "regret_ms": column.get("regret_ms", nan),
            "agent": pd.Categorical.from_codes(np.zeros(n, np.intp), categories=[spec.display_label]),
            "scenario": pd.Categorical.from_codes(np.zeros(n, np.intp), categories=[spec.scenario.name]),
            "replicate": np.full(n, spec.replicate, dtype=np.int64),
        },
        columns=list(REQUEST_COLUMNS),
    )


def _result_extra(spec: RunSpec, system: System, found: str, frame: pd.DataFrame, started: float) -> dict:
    """The run's summary (identifiers, metrics, wall time since ``started``), fingerprint and data files."""
    summary = {
        "key": spec.key(found),
        "agent": spec.display_label,
        "agent_name": spec.agent,
        "scenario": spec.scenario.name,
        "replicate": spec.replicate,
        "seed": spec.seed,
        "deciders": spec.deciders,
        "agent_kwargs": json.dumps(dict(spec.agent_kwargs), sort_keys=True),
        "env_kwargs": json.dumps(dict(spec.env_kwargs), sort_keys=True),
    }
    stats = metrics.summarize_runs(frame).iloc[0]
    summary.update({k: _plain(stats[k]) for k in stats.index if k not in metrics.RUN_KEYS})
    summary["wall_time_s"] = time.perf_counter() - started
    return {
        "summary": summary,
        "fingerprint": found,
        "data_files": [str(p) for p in system.data_files],
    }


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number JSON needs."""
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------------------------------------
# The batched fast path: replicates of one (scenario, agent) played together on the engine


def batch_agent(spec: RunSpec, env: OrchestrationEnv) -> BatchAgent | BatchOracle | None:
    """The batched form of the spec's catalogue agent in ``env``, or None when it has none.

    The registry entry of the agent says (:data:`orchlib.agents.catalogue.AGENTS`, ``AgentEntry.batched``; built
    by :func:`orchlib.agents.catalogue.batched_agent` from the per-request agent with the spec's keyword
    arguments). Only a central decider with the discrete observation in ``"mask"`` mode qualifies; everything
    else (DQN, bandits without a batched form, per-user deciders, agents of a ``factory``) keeps the
    per-request path.
    """
    from orchlib.agents.catalogue import batched_agent

    if spec.deciders != "central":
        return None
    return batched_agent(spec.agent, env, **dict(spec.agent_kwargs))


def _batch_group_key(spec: RunSpec) -> str:
    """Specs with equal keys play in one world (scenario and environment options) and can share a batch,
    whatever their agents: each replicate's numbers depend only on its own spec (:func:`_play_batched`)."""
    options = {**_ENV_DEFAULTS, **dict(spec.env_kwargs)}  # options left at their default equal them given
    return json.dumps([spec.scenario.to_json(), options], sort_keys=True)


#: the environment's keyword options and their defaults.
_ENV_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(OrchestrationEnv.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}


def _agent_key(spec: RunSpec) -> str:
    """Specs with equal keys differ only in their replicate: one batched agent plays them all."""
    return spec.replace(replicate=0).to_json()


#: most replicates one batched task plays (the per-request table of each is held in memory until the end).
MAX_BATCH = 64


def _play_batched(specs: Sequence[RunSpec], fingerprint: str | None) -> list[tuple[str, pd.DataFrame, dict]]:
    """Play runs of one world (scenario and environment options) together on the batched engine
    (:func:`orchlib.study.batch.play_batch`): the per-request table of each, as :func:`_play` records it.

    The runs may be of different agents: the replicates of each agent (specs equal but for the replicate) form
    one contiguous block of the batch, played by that agent's batched form (:func:`batch_agent`). Each
    replicate's system draws from the generator the per-request path's ``env.reset`` would give it, so its
    requests are the per-request path's (and a fixed policy's whole table is bit for bit the same); a learner's
    exploration draws from the replicate's agent stream as its per-request form does (:mod:`orchlib.study.batch`).
    Nothing a replicate draws or sees depends on the other replicates of the
    batch, so its table is the same in any batch (tested). Each run's ``wall_time_s`` is the batch's time over
    its number of runs.
    """
    started = time.perf_counter()
    first = specs[0]
    system, found = system_for(first.scenario)
    if fingerprint is not None and found != fingerprint:
        raise RuntimeError(
            f"the data files of scenario {first.scenario.name!r} changed while the sweep ran; rerun the sweep"
        )
    env = OrchestrationEnv(system, **dict(first.env_kwargs))
    if any(_batch_group_key(spec) != _batch_group_key(first) for spec in specs):
        raise ValueError("a batch must play one scenario with one set of environment options")
    # each agent's replicates as one contiguous block of the batch: (block, batched agent)
    by_agent: dict[str, list[int]] = {}
    for k, spec in enumerate(specs):
        by_agent.setdefault(_agent_key(spec), []).append(k)
    order = [k for members in by_agent.values() for k in members]
    specs = [specs[k] for k in order]
    blocks: list[tuple[slice, Any]] = []
    start = 0
    for members in by_agent.values():
        spec = specs[start]
        agent = batch_agent(spec, env)
        if agent is None:
            raise ValueError(f"agent {spec.agent!r} with these options has no batched form")
        blocks.append((slice(start, start + len(members)), agent))
        start += len(members)
    seeds = [spec.seed_sequences() for spec in specs]
    # the generator OrchestrationEnv.reset(seed=...) gives the per-request path's simulator
    sim_rngs = [
        gym_seeding.np_random(int(env_seq.generate_state(1, np.uint64)[0]))[0] for env_seq, _ in seeds
    ]
    sim = BatchEnv(
        system,
        len(specs),
        sim_rngs,
        bandwidth_edges_mbps=env.bandwidth_edges_mbps,
        edge_load_edges=env.edge_load_edges,
        device_load_edges=env.state.device_load_edges,
    )
    for block, agent in blocks:
        agent.reset(block.stop - block.start, [np.random.default_rng(seq) for _, seq in seeds[block]])
    n, b = first.scenario.n_requests, len(specs)
    record = {name: np.empty((n, b)) for name in (*_SERVED, *(_ORACLE if env.oracle else ()))}
    rewards, states = np.empty((n, b)), np.empty((n, b), dtype=np.int64)
    accuracy = system.top1_pct

    def keep(i, requests, state, action, breakdown, reward, best_ms) -> None:
        if env.oracle:
            record["oracle_latency_ms"][i] = best_ms
        tier, variant = np.divmod(action, system.n_variants)
        record["served_user"][i] = requests.user
        record["served_time_ms"][i] = requests.time_ms
        record["served_requirement_class"][i] = requests.requirement_class
        record["tier"][i], record["variant"][i] = tier, variant
        record["accuracy_pct"][i] = accuracy[variant]
        record["met_requirement"][i] = True  # batched agents act within the request's mask
        for name in _BREAKDOWN[:-1]:
            record[name][i] = getattr(breakdown, name)
        total_ms = breakdown.total_ms
        record["latency_ms"][i] = total_ms
        if env.oracle:
            record["regret_ms"][i] = total_ms - best_ms
        rewards[i] = reward
        states[i] = state

    play_batch(sim, blocks, n, keep, reward_scale=env.reward_scale, best=env.oracle)
    out = []
    for k, spec in enumerate(specs):
        column = {name: values[:, k] for name, values in record.items()}
        frame = _request_frame(spec, system, column, rewards[:, k].copy(), states[:, k].copy())
        extra = _result_extra(spec, system, found, frame, started)
        extra["summary"]["wall_time_s"] /= b  # the batch's time, shared by its runs
        out.append((spec.key(found), frame, extra))
    return out


def run_one(spec: RunSpec, factory: AgentFactory | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Play one run: ``spec.scenario.n_requests`` requests, each decided by the agent and then learned from.

    For every request the agent receives the observation, ``info["action_mask"]`` and the info (the full
    info if the agent class is ``privileged``, else :func:`orchlib.envs.orchestration.public_info`); after the request is
    served it learns from ``(obs, a, r, next_obs, next_mask, info)``. With the env option
    ``accuracy_mode="penalty"`` the requirement is priced into the reward instead: the agent is given an
    all-True mask and may choose any action (``met_requirement`` then records the violations).

    Args:
        spec: what to run.
        factory: builds the agent from the environment instead of ``orchlib.agents.catalogue.make_agent`` (then
            ``spec.agent_kwargs`` is ignored; ``spec.agent`` still names the run).

    Returns:
        ``(requests, summary)``: the per-request table (columns :data:`REQUEST_COLUMNS`; string columns are
        categorical; ``state`` is -1 with box observations; ``oracle_latency_ms``/``regret_ms`` NaN when the
        env runs with ``oracle=False``) and a dict with the run identifiers, ``key``, ``n_requests``,
        ``mean_latency_ms``, ``p95_latency_ms``, ``mean_accuracy_pct``, ``violation_rate``,
        ``mean_regret_ms``, ``mean_oracle_latency_ms``, ``latency_ratio_to_oracle`` and ``wall_time_s``
        (building the environment and agent included).

    Raises:
        RuntimeError: the agent chose an action outside the mask it was given (the message names the agent,
            the request index and the action).
        DataError, ValueError: from building the system, the environment or the agent.
    """
    frame, extra = _play(spec, factory, None)
    return frame, extra["summary"]


# ----------------------------------------------------------------------------------------------------------
# Sweeps


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent, the old file, or the complete new one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it owner-only; results are meant to be shared
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # persist the rename itself (POSIX); a no-op concern elsewhere
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _save(out_dir: Path, key: str, spec: RunSpec, frame: pd.DataFrame, extra: dict) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write(out_dir / f"{key}.parquet", buffer.getvalue())
    record = {
        "format": RESULT_FORMAT,
        "key": key,
        "spec": spec.to_dict(),
        "scenario": spec.scenario.to_dict(),
        "fingerprint": extra["fingerprint"],
        "data_files": extra["data_files"],
        "summary": extra["summary"],
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
    }
    text = json.dumps(_json_safe(record), sort_keys=True, indent=1, allow_nan=False)
    atomic_write(out_dir / f"{key}.json", text.encode())


class CacheWarning(UserWarning):
    """A cached result in a sweep's ``out_dir`` could not be used (corrupted, or an older result format)."""


#: a cached run: its per-request table and its summary.
Cached = tuple[pd.DataFrame, dict[str, Any]]


def _read_cached(out_dir: Path, key: str) -> Cached | None:
    """The cached result ``key``, or None if it is absent or unusable (then a :class:`CacheWarning` names
    the file and why, and the run is recomputed over it)."""
    json_path, parquet_path = out_dir / f"{key}.json", out_dir / f"{key}.parquet"
    if not (json_path.is_file() and parquet_path.is_file()):
        return None

    def unusable(path: Path, why: str) -> None:
        warnings.warn(f"{path}: {why}; recomputing this run", CacheWarning, stacklevel=4)

    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return unusable(json_path, f"cached result is not valid JSON ({error})")
    summary = record.get("summary") if isinstance(record, dict) else None
    if not isinstance(summary, dict) or record.get("key") != key:
        return unusable(json_path, "cached result lacks its summary or key (an incomplete or foreign file)")
    if record.get("format") != RESULT_FORMAT:
        return unusable(
            json_path,
            f"written by result format {record.get('format')!r}, this orchlib writes {RESULT_FORMAT}",
        )
    try:
        frame = pd.read_parquet(parquet_path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError or others on a damaged file
        return unusable(parquet_path, f"cached table cannot be read ({type(error).__name__}: {error})")
    if list(frame.columns) != list(REQUEST_COLUMNS) or len(frame) != summary.get("n_requests"):
        return unusable(
            parquet_path,
            f"cached table has {len(frame)} rows and columns {list(frame.columns)}; expected "
            f"{summary.get('n_requests')} rows and columns {list(REQUEST_COLUMNS)}",
        )
    return frame, summary


def _report_older_formats(out_dir: Path) -> None:
    """One :class:`CacheWarning` if ``out_dir`` holds results of another result format (never reused: the
    format is part of every key), so that a sweep that recomputes everything says why."""
    if out_dir in _REPORTED_FORMATS:
        return
    formats: dict[Any, int] = {}
    for path in out_dir.glob("*.json"):
        try:
            found = json.loads(path.read_text(encoding="utf-8")).get("format")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue  # a damaged file is reported by _read_cached if a spec asks for it
        if found != RESULT_FORMAT:
            formats[found] = formats.get(found, 0) + 1
    if formats:
        _REPORTED_FORMATS.add(out_dir)
        counts = ", ".join(f"{n} of format {f!r}" for f, n in sorted(formats.items(), key=str))
        warnings.warn(
            f"{out_dir}: ignoring cached results written by an older orchlib ({counts}; this orchlib writes "
            f"result format {RESULT_FORMAT}); their runs are recomputed. Delete those files to free the space.",
            CacheWarning,
            stacklevel=3,
        )


#: result folders whose older-format files were already reported in this process.
_REPORTED_FORMATS: set[Path] = set()


@contextlib.contextmanager
def _torch_single_thread() -> Iterator[None]:
    """Torch on one thread while a run executes, if torch is loaded (runs are parallel across processes)."""
    torch = sys.modules.get("torch")
    if torch is None or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _task(
    specs: Sequence[RunSpec], factory: AgentFactory | None, fingerprint: str, batched: bool
) -> list[tuple[str, pd.DataFrame, dict]]:
    """One run on the per-request path, or replicates of one agent on the batched path."""
    if batched:
        return _play_batched(specs, fingerprint)
    spec = specs[0]
    with _torch_single_thread():
        frame, extra = _play(spec, factory, fingerprint)
    return [(spec.key(fingerprint), frame, extra)]


def _batches(
    missing: Sequence[tuple[RunSpec, str]], factory: AgentFactory | None, batched: bool, n_workers: int = 1
) -> list[tuple[list[RunSpec], str, bool]]:
    """The missing runs as ``(specs, fingerprint, batched)`` tasks.

    Runs without a batched form: one task each, first. Runs with one: together per world
    (:func:`_batch_group_key`), whatever their agents (a run's numbers do not depend on its batch), after them,
    each world in equal parts of at most :data:`MAX_BATCH` runs and about ``1 / (2 * n_workers)`` of the
    batched requests, so that the last tasks are small and the workers finish together."""
    if factory is not None or not batched:
        return [([spec], fp, False) for spec, fp in missing]
    groups: dict[str, tuple[list[RunSpec], str]] = {}
    tasks: list[tuple[list[RunSpec], str, bool]] = []
    for spec, fp in missing:
        system = system_for(spec.scenario)[0]
        if batch_agent(spec, OrchestrationEnv(system, **dict(spec.env_kwargs))) is None:
            tasks.append(([spec], fp, False))
            continue
        groups.setdefault(_batch_group_key(spec), ([], fp))[0].append(spec)
    total = sum(spec.scenario.n_requests for members, _ in groups.values() for spec in members)
    share = max(1, math.ceil(total / (2 * max(1, n_workers))))  # requests per batched task, about
    for members, fp in groups.values():
        requests = len(members) * members[0].scenario.n_requests  # (one world: one n_requests)
        n_chunks = max(math.ceil(requests / share), math.ceil(len(members) / MAX_BATCH))
        n_chunks = min(n_chunks, len(members))
        # equal parts (an agent's replicates may span two parts: each replicate is played alike in any batch)
        bounds = np.linspace(0, len(members), n_chunks + 1).round().astype(int)
        tasks += [(members[lo:hi], fp, True) for lo, hi in itertools.pairwise(bounds)]
    return tasks


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` returns (all runs, cached or computed now), in the order of the specs."""

    #: one row per request of every run (columns :data:`REQUEST_COLUMNS`).
    requests: pd.DataFrame
    #: one row per run: identifiers, ``key``, summary metrics, ``wall_time_s`` (of the run when computed).
    runs: pd.DataFrame
    specs: tuple[RunSpec, ...]
    #: result keys, parallel to ``specs``.
    keys: tuple[str, ...]
    #: how many runs this call computed (the others were read from the cache).
    n_computed: int
    out_dir: Path


def _categorical(values: pd.Series, categories: Sequence[str]) -> pd.Categorical:
    """``values`` as a categorical of ``categories`` (duplicates dropped, in order); a value not among them is
    missing."""
    categories = list(dict.fromkeys(categories))
    if isinstance(values.dtype, pd.CategoricalDtype) and all(
        isinstance(c, str) for c in values.cat.categories
    ):
        return values.cat.set_categories(categories).array  # recoded, without going through strings
    return pd.Categorical(values.astype(str), categories=categories)


def _check_identities(specs: Sequence[RunSpec]) -> None:
    seen: dict[tuple[str, str, int], RunSpec] = {}
    for spec in specs:
        ident = (spec.display_label, spec.scenario.name, spec.replicate)
        if ident in seen:
            raise ValueError(
                f"two specs share (agent label, scenario name, replicate) = {ident}, so their results could not "
                "be told apart; give them different labels, scenario names or replicates (or remove the "
                "duplicate)"
            )
        seen[ident] = spec


def run_sweep(
    specs: Sequence[RunSpec],
    out_dir: str | os.PathLike[str],
    n_jobs: int | None = None,
    progress: bool = True,
    factory: AgentFactory | None = None,
    batched: bool = True,
) -> SweepResult:
    """Run every spec not already cached in ``out_dir``, then return all results.

    Replicates of a catalogue agent with a batched form (:func:`batch_agent`: tabular Q-learning, UCB1,
    the fixed baselines) run together on the batched engine, one task per group; the others one run per
    task on the per-request path. Both record the same table; see :func:`_play_batched` for what is equal.

    Args:
        specs: the runs (see :func:`grid`). Each (label, scenario name, replicate) must be unique.
        out_dir: result folder (created if needed); see the module docstring for its layout.
        n_jobs: parallel runs. None: the active ``joblib.parallel_config``'s ``n_jobs``, else 1 (serial);
            under ``parallel_config(backend="dask")`` every core of the cluster is used.
        progress: show a ``tqdm.auto`` bar (terminal or notebook) over the runs computed.
        factory: ``factory(env) -> Agent`` used for every spec instead of the catalogue; it must be
            picklable (a module-level function or class) when runs go to other processes. Its runs take the
            per-request path.
        batched: False plays every run on the per-request path.

    Returns:
        A :class:`SweepResult`; identical numbers whether runs were computed serially, in parallel, on Dask
        or read from the cache (only ``runs.wall_time_s`` differs).

    Raises:
        ValueError: duplicate run identities or a spec that is not a :class:`RunSpec`.
        RuntimeError: an agent broke the action mask, or data files changed during the sweep.
    """
    specs = tuple(specs)
    if not specs:
        raise ValueError("specs must contain at least one RunSpec")
    for i, spec in enumerate(specs):
        if not isinstance(spec, RunSpec):
            raise TypeError(f"specs[{i}] must be a RunSpec, got {type(spec).__name__}")
    _check_identities(specs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fingerprints = {
        text: system_for(s)[1] for text, s in {sp.scenario.to_json(): sp.scenario for sp in specs}.items()
    }
    pairs = [(spec, fingerprints[spec.scenario.to_json()]) for spec in specs]
    keys = tuple(spec.key(fp) for spec, fp in pairs)
    cached = {key: entry for key in keys if (entry := _read_cached(out, key)) is not None}
    missing = [(spec, fp) for (spec, fp), key in zip(pairs, keys, strict=True) if key not in cached]
    if missing:
        _report_older_formats(out)
        # Results are saved here, in the calling process, as they arrive: a remote Dask worker needs no access
        # to out_dir, and runs finished before an interruption stay saved.
        n_workers = joblib.effective_n_jobs(n_jobs)
        if n_workers > 1:
            # compiled (or loaded) here once, so that the workers load the engine's kernels from numba's cache
            # instead of each compiling them at the same time (the first use after an install)
            compile_engine()
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
        tasks = _batches(missing, factory, batched, n_workers)
        jobs = (joblib.delayed(_task)(group, factory, fp, is_batch) for group, fp, is_batch in tasks)
        by_key = {spec.key(fp): spec for spec, fp in missing}
        with tqdm(total=len(missing), desc="orchlib runs", unit="run", disable=not progress) as bar:
            for results in parallel(jobs):
                for key, frame, extra in results:
                    _save(out, key, by_key[key], frame, extra)
                    bar.update()
    for key in keys:
        if key not in cached:  # read back what was just saved, so computed and cached runs load alike
            entry = _read_cached(out, key)
            if entry is None:
                raise RuntimeError(f"{out}: the result {key} just written cannot be read back")
            cached[key] = entry
    return _load(out, specs, keys, cached, n_computed=len(missing))


#: columns of ``SweepResult.runs``, in order (the summary of :func:`run_one`).
RUN_COLUMNS: tuple[str, ...] = (
    "key",
    "agent",
    "agent_name",
    "scenario",
    "replicate",
    "seed",
    "deciders",
    "agent_kwargs",
    "env_kwargs",
    "n_requests",
    "mean_latency_ms",
    "p95_latency_ms",
    "mean_accuracy_pct",
    "violation_rate",
    "mean_regret_ms",
    "mean_oracle_latency_ms",
    "latency_ratio_to_oracle",
    "wall_time_s",
)

_SUMMARY_FLOATS = (
    "mean_latency_ms",
    "p95_latency_ms",
    "mean_accuracy_pct",
    "violation_rate",
    "mean_regret_ms",
    "mean_oracle_latency_ms",
    "latency_ratio_to_oracle",
    "wall_time_s",
)


def _load(
    out: Path, specs: tuple[RunSpec, ...], keys: tuple[str, ...], cached: dict[str, Cached], n_computed: int
) -> SweepResult:
    frames, summaries = [], []
    for key in keys:
        frame, saved = cached[key]
        frames.append(frame)
        summaries.append({column: saved.get(column) for column in RUN_COLUMNS})
    labels = [s.display_label for s in specs]
    names = [s.scenario.name for s in specs]
    variants = [v for f in frames for v in f["variant"].cat.categories]
    categories = {"agent": labels, "scenario": names, "tier": TIERS, "variant": variants}
    # each run's categorical columns on the sweep's categories before concatenating, so that the concatenation
    # stays categorical (converting millions of concatenated labels through strings took seconds)
    frames = [
        frame.assign(**{column: _categorical(frame[column], values) for column, values in categories.items()})
        for frame in frames
    ]
    requests = pd.concat(frames, ignore_index=True)
    runs = pd.DataFrame(summaries, columns=list(RUN_COLUMNS))
    for column in _SUMMARY_FLOATS:  # JSON null (a NaN when saved) back to NaN
        runs[column] = runs[column].astype(float)
    runs["agent"] = _categorical(runs["agent"], labels)
    runs["scenario"] = _categorical(runs["scenario"], names)
    return SweepResult(requests, runs, specs, keys, n_computed, out)


def _required_observation(name: str) -> str | None:
    """The observation mode catalogue agent ``name`` needs (None: any, or not a catalogue name)."""
    from orchlib.agents.catalogue import AGENTS

    entry = AGENTS.get(name)
    return None if entry is None else entry.observation


def grid(
    scenarios: Iterable[Scenario | str],
    agents: Iterable[str | Mapping[str, Any]],
    n_replicates: int = 1,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
) -> list[RunSpec]:
    """Every (scenario, agent, replicate) combination as a list of :class:`RunSpec`.

    Args:
        scenarios: :class:`Scenario` objects or preset names.
        agents: catalogue names, or mappings with key ``"agent"`` and optionally ``"label"``,
            ``"agent_kwargs"``, ``"env_kwargs"``, ``"deciders"`` (RunSpec fields), e.g.
            ``{"agent": "q_learning", "label": "Q per user", "deciders": "per_user"}``.
        n_replicates: independent runs per combination (replicates ``0 .. n_replicates - 1``). Adding
            replicates later reuses the cached ones.
        seed: the sweep's base seed (every spec gets it; replicates split it, see the module docstring).
        env_kwargs: environment options for every agent (an agent's own ``env_kwargs`` are merged on top).
            A catalogue agent that needs a particular observation mode (its ``AgentEntry.observation`` in
            ``orchlib.agents.catalogue.AGENTS``, e.g. ``"box"`` for ``"dqn"``) gets it unless ``observation`` is
            set explicitly.

    Raises:
        ValueError, TypeError: bad counts, unknown keys in an agent mapping, or invalid spec fields.
    """
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, int) or n_replicates < 1:
        raise ValueError(f"n_replicates must be an integer >= 1, got {n_replicates!r}")
    allowed = {"agent", "label", "agent_kwargs", "env_kwargs", "deciders"}
    choices = []
    for i, agent in enumerate(agents):
        choice = {"agent": agent} if isinstance(agent, str) else dict(agent)
        unknown = set(choice) - allowed
        if unknown or "agent" not in choice:
            raise ValueError(
                f"agents[{i}]: a mapping needs key 'agent' and may have {sorted(allowed)}, got {sorted(choice)}"
            )
        choice["env_kwargs"] = {**(env_kwargs or {}), **dict(choice.get("env_kwargs", {}))}
        needed = _required_observation(choice["agent"])
        if needed is not None:
            choice["env_kwargs"].setdefault("observation", needed)
        choices.append(choice)
    resolved = [preset(s) if isinstance(s, str) else s for s in scenarios]
    return [
        RunSpec(scenario=scenario, seed=seed, replicate=replicate, **choice)
        for scenario in resolved
        for choice in choices
        for replicate in range(n_replicates)
    ]
