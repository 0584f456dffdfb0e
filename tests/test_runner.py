"""The runner: one run's table, seeds, the mask and info split, and sweeps (cache, resume, parallel, Dask).

Agents here are small classes defined in this module and passed through ``factory`` (module-level, so that
loky and Dask workers can unpickle them), so these tests do not depend on the agent catalogue.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from typing import Any, ClassVar

import joblib
import numpy as np
import pandas as pd
import pytest

from orchlib.agents.base import Agent, random_valid_action
from orchlib.envs.orchestration import PRIVATE_INFO_KEYS, OrchestrationEnv
from orchlib.study.runner import REQUEST_COLUMNS, RUN_COLUMNS, RunSpec, grid, run_one, run_sweep
from orchlib.system.engine import RESPONSE_PARTS
from orchlib.system.profiles import DATA_DIR
from orchlib.system.scenario import Scenario, TierSpec, ideal, paper, tiny

N_REQUESTS = 300


@pytest.fixture(scope="module")
def scenario():
    return tiny().replace(n_requests=N_REQUESTS)


# ---------------------------------------------------------------- agents for the tests


class NoisyGreedy(Agent):
    """Mean reward per action, explores a random valid action with probability 0.3: uses its rng and learns."""

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        self.rng_ = np.random.default_rng(rng)
        self.sums_ = np.zeros(self.n_actions)
        self.counts_ = np.zeros(self.n_actions)

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        if self.rng_.random() < 0.3:
            return random_valid_action(mask, self.rng_)
        means = np.where(self.counts_ > 0, self.sums_ / np.maximum(self.counts_, 1), 0.0)
        return int(np.flatnonzero(mask)[np.argmax(means[mask])])

    def learn(self, obs, action, reward, next_obs, next_mask, info) -> None:
        self.sums_[action] += reward
        self.counts_[action] += 1


class AlwaysFirst(Agent):
    """Action 0: the end device with the first (most accurate) variant, valid for every requirement."""

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        self.rng_ = np.random.default_rng(rng)

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        return 0


class Rebel(AlwaysFirst):
    """Takes the first action the mask forbids, as soon as one is forbidden."""

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        forbidden = np.flatnonzero(~mask)
        return int(forbidden[0]) if forbidden.size else 0


class Cheapest(AlwaysFirst):
    """The last allowed action: the cloud with the last (least accurate) variant."""

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        return int(np.flatnonzero(mask)[-1])


class Peeker(AlwaysFirst):
    """Records the info keys it is shown."""

    seen: ClassVar[set[str]] = set()

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        Peeker.seen.update(info)
        return 0

    def learn(self, obs, action, reward, next_obs, next_mask, info) -> None:
        Peeker.seen.update(info)


class PrivilegedPeeker(Peeker):
    privileged = True


class UserLogger(NoisyGreedy):
    """Records which users' requests each instance decided."""

    instances: ClassVar[list[UserLogger]] = []

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        super().reset(rng)
        self.users_: set[int] = set()
        UserLogger.instances.append(self)

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        self.users_.add(info["user"])
        return super().act(obs, mask, info)


def noisy_greedy(env: OrchestrationEnv) -> Agent:
    return NoisyGreedy(env.observation_space, env.action_space)


def always_first(env: OrchestrationEnv) -> Agent:
    return AlwaysFirst(env.observation_space, env.action_space)


class CountingFactory:
    """Builds NoisyGreedy agents, counting calls; raises KeyboardInterrupt on call ``interrupt_at`` (1-based)."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at

    def __call__(self, env: OrchestrationEnv) -> Agent:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return noisy_greedy(env)


def comparable(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's tables without the one column that legitimately differs between executions."""
    return result.requests, result.runs.drop(columns="wall_time_s")


def assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(comparable(a)[0], comparable(b)[0])
    pd.testing.assert_frame_equal(comparable(a)[1], comparable(b)[1])


# ---------------------------------------------------------------- RunSpec and seeds


def test_seed_streams_are_spawned_children_of_the_base_seed():
    for replicate in (0, 3):
        spec = RunSpec(scenario=tiny(), agent="x", seed=2022, replicate=replicate)
        direct = np.random.SeedSequence(2022, spawn_key=(replicate,))
        spawned = np.random.SeedSequence(2022).spawn(4)[replicate]
        assert np.array_equal(direct.generate_state(4), spawned.generate_state(4))
        env_seq, agent_seq = spec.seed_sequences()
        children = spawned.spawn(2)
        assert np.array_equal(env_seq.generate_state(4), children[0].generate_state(4))
        assert np.array_equal(agent_seq.generate_state(4), children[1].generate_state(4))
    # neighbouring base seeds must not give overlapping replicate streams (the seed + i mistake)
    a = RunSpec(scenario=tiny(), agent="x", seed=0, replicate=1).seed_sequences()[0].generate_state(2)
    b = RunSpec(scenario=tiny(), agent="x", seed=1, replicate=0).seed_sequences()[0].generate_state(2)
    assert not np.array_equal(a, b)


def test_runspec_round_trips_through_json_and_normalises_kwargs(scenario):
    spec = RunSpec(
        scenario=scenario,
        agent="q",
        agent_kwargs={"epsilon": 0.1, "alpha": 0.5},
        env_kwargs={"bandwidth_edges_mbps": [5.0, 15.0]},
        seed=3,
        replicate=2,
        deciders="per_user",
        label="Q per user",
    )
    assert spec.agent_kwargs == (("alpha", 0.5), ("epsilon", 0.1))
    assert spec.env_kwargs == (("bandwidth_edges_mbps", (5.0, 15.0)),)
    again = RunSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec and hash(again) == hash(spec)
    assert again.key("f") == spec.key("f")
    assert spec.display_label == "Q per user"
    assert spec.replace(label=None).display_label == "q"


def test_key_changes_with_every_field_and_the_fingerprint(scenario):
    spec = RunSpec(scenario=scenario, agent="q", seed=0, replicate=0)
    variants = [
        spec.replace(scenario=scenario.replace(n_requests=N_REQUESTS + 1)),
        spec.replace(agent="r"),
        spec.replace(agent_kwargs={"alpha": 0.1}),
        spec.replace(env_kwargs={"observation": "box"}),
        spec.replace(seed=1),
        spec.replace(replicate=1),
        spec.replace(deciders="per_user"),
        spec.replace(label="Q"),
    ]
    keys = {spec.key("f")} | {v.key("f") for v in variants} | {spec.key("g")}
    assert len(keys) == len(variants) + 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": -1}, "RunSpec.seed"),
        ({"replicate": 1.0}, "RunSpec.replicate"),
        ({"deciders": "everyone"}, "RunSpec.deciders"),
        ({"agent": ""}, "RunSpec.agent"),
        ({"label": ""}, "RunSpec.label"),
        ({"env_kwargs": {"max_steps": 10}}, "max_steps"),
        ({"agent_kwargs": {"alpha": float("nan")}}, "agent_kwargs"),
        ({"agent_kwargs": [("alpha", 1), ("alpha", 2)]}, "twice"),
    ],
)
def test_runspec_refuses_bad_fields(scenario, changes, message):
    fields = {"scenario": scenario, "agent": "q", "seed": 0, "replicate": 0, **changes}
    with pytest.raises(ValueError, match=re.escape(message)):
        RunSpec(**fields)


def test_runspec_refuses_non_json_values(scenario):
    with pytest.raises(TypeError, match=r"agent_kwargs\['net'\]"):
        RunSpec(scenario=scenario, agent="q", seed=0, replicate=0, agent_kwargs={"net": object()})
    with pytest.raises(TypeError, match=r"RunSpec\.scenario"):
        RunSpec(scenario="tiny", agent="q", seed=0, replicate=0)


# ---------------------------------------------------------------- one run


def test_run_one_records_one_consistent_row_per_request(scenario):
    spec = RunSpec(scenario=scenario, agent="noisy", seed=7, replicate=1, label="Noisy greedy")
    frame, summary = run_one(spec, factory=noisy_greedy)
    assert tuple(frame.columns) == REQUEST_COLUMNS
    assert len(frame) == N_REQUESTS
    assert frame["request"].tolist() == list(range(N_REQUESTS))
    for column in ("tier", "variant", "agent", "scenario"):
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
    assert set(frame["agent"]) == {"Noisy greedy"} and set(frame["scenario"]) == {"tiny"}
    assert (frame["replicate"] == 1).all()
    parts = frame[list(RESPONSE_PARTS)]
    np.testing.assert_allclose(parts.sum(axis=1), frame["latency_ms"], rtol=1e-12)
    np.testing.assert_allclose(frame["reward"], -frame["latency_ms"] / 1e3, rtol=1e-12)
    np.testing.assert_allclose(
        frame["regret_ms"], frame["latency_ms"] - frame["oracle_latency_ms"], atol=1e-9
    )
    assert (frame["regret_ms"] >= -1e-9).all()
    assert (np.diff(frame["time_s"]) >= 0).all()
    assert set(frame["user"]) == {0, 1}
    assert set(frame["requirement_pct"]) <= {0.0, 65.0}
    assert frame["met_requirement"].all()  # the agent respects the mask
    assert frame["state"].between(0, OrchestrationEnv(scenario).n_states - 1).all()
    # the agent explores, so several tiers and variants appear
    assert frame["tier"].nunique() == 3 and frame["variant"].nunique() >= 2
    # summary = the metrics of the table
    assert summary["n_requests"] == N_REQUESTS
    assert summary["mean_latency_ms"] == pytest.approx(frame["latency_ms"].mean())
    assert summary["p95_latency_ms"] == pytest.approx(np.percentile(frame["latency_ms"], 95))
    assert summary["mean_accuracy_pct"] == pytest.approx(frame["accuracy_pct"].mean())
    assert summary["violation_rate"] == 0.0
    assert summary["mean_regret_ms"] == pytest.approx(frame["regret_ms"].mean())
    assert summary["wall_time_s"] > 0
    assert (summary["agent"], summary["agent_name"], summary["replicate"], summary["seed"]) == (
        "Noisy greedy",
        "noisy",
        1,
        7,
    )


def test_run_one_is_reproducible_and_replicates_differ(scenario):
    spec = RunSpec(scenario=scenario, agent="noisy", seed=7, replicate=0)
    a, _ = run_one(spec, factory=noisy_greedy)
    b, _ = run_one(spec, factory=noisy_greedy)
    c, _ = run_one(spec.replace(replicate=1), factory=noisy_greedy)
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["time_s"], c["time_s"])


def test_box_observation_records_no_state(scenario):
    spec = RunSpec(scenario=scenario, agent="noisy", seed=0, replicate=0, env_kwargs={"observation": "box"})
    frame, _ = run_one(spec, factory=noisy_greedy)
    assert (frame["state"] == -1).all()


def test_an_action_outside_the_mask_is_refused(scenario):
    spec = RunSpec(scenario=scenario, agent="rebel", seed=0, replicate=0)
    with pytest.raises(RuntimeError, match=r"agent 'rebel' chose action \d+ for request \d+.*action_mask"):
        run_one(spec, factory=lambda env: Rebel(env.observation_space, env.action_space))


def test_penalty_mode_lets_agents_violate_the_requirement_at_a_cost(scenario):
    spec = RunSpec(
        scenario=scenario,
        agent="rebel",
        seed=0,
        replicate=0,
        env_kwargs={"accuracy_mode": "penalty", "accuracy_penalty": 2.0},
    )
    frame, summary = run_one(spec, factory=lambda env: Rebel(env.observation_space, env.action_space))
    # Rebel is given an all-True mask, so it takes action 0, which meets every requirement of tiny
    assert summary["violation_rate"] == 0.0
    spec = spec.replace(agent="cheap")
    frame, summary = run_one(spec, factory=lambda env: Cheapest(env.observation_space, env.action_space))
    violated = ~frame["met_requirement"]
    assert 0 < summary["violation_rate"] == violated.mean()
    assert (frame.loc[violated, "requirement_pct"] == 65.0).all()
    expected = -frame["latency_ms"] / 1e3 - 2.0 * violated
    np.testing.assert_allclose(frame["reward"], expected, rtol=1e-12)


def test_private_info_reaches_only_privileged_agents(scenario):
    spec = RunSpec(scenario=scenario.replace(n_requests=20), agent="peek", seed=0, replicate=0)
    Peeker.seen = set()
    run_one(spec, factory=lambda env: Peeker(env.observation_space, env.action_space))
    assert "action_mask" in Peeker.seen and "latency_ms" in Peeker.seen
    assert not PRIVATE_INFO_KEYS & Peeker.seen
    Peeker.seen = set()
    run_one(spec, factory=lambda env: PrivilegedPeeker(env.observation_space, env.action_space))
    assert Peeker.seen >= PRIVATE_INFO_KEYS


def test_per_user_deciders_give_each_user_its_own_learner(scenario):
    UserLogger.instances = []
    spec = RunSpec(scenario=scenario, agent="noisy", seed=0, replicate=0, deciders="per_user")
    frame, _ = run_one(spec, factory=lambda env: UserLogger(env.observation_space, env.action_space))
    deciding = [agent for agent in UserLogger.instances if agent.users_]
    assert sorted(next(iter(a.users_)) for a in deciding) == [0, 1]
    assert all(len(a.users_) == 1 for a in deciding)
    central, _ = run_one(spec.replace(deciders="central"), factory=noisy_greedy)
    assert not central["variant"].equals(frame["variant"])


# ---------------------------------------------------------------- sweeps


def small_grid(scenario, n_replicates=2):
    """Two labels x replicates; with a ``factory`` every spec gets the factory's agent."""
    return grid(
        [scenario], ["noisy", {"agent": "noisy", "label": "noisy again"}], n_replicates=n_replicates, seed=11
    )


def test_grid_is_every_combination_as_data(scenario):
    specs = grid(
        [scenario, "tiny"],
        ["a", {"agent": "b", "label": "B", "agent_kwargs": {"x": 1}, "deciders": "per_user"}],
        n_replicates=3,
        seed=5,
        env_kwargs={"observation": "box"},
    )
    assert len(specs) == 2 * 2 * 3
    assert {s.replicate for s in specs} == {0, 1, 2} and {s.seed for s in specs} == {5}
    assert {s.display_label for s in specs} == {"a", "B"}
    assert all(dict(s.env_kwargs) == {"observation": "box"} for s in specs)
    assert {s.deciders for s in specs if s.agent == "b"} == {"per_user"}
    with pytest.raises(ValueError, match="agents\\[0\\]"):
        grid([scenario], [{"agent": "a", "lr": 1}])
    with pytest.raises(ValueError, match="n_replicates"):
        grid([scenario], ["a"], n_replicates=0)


def test_sweep_end_to_end_writes_a_complete_cache(scenario, tmp_path):
    specs = small_grid(scenario)
    result = run_sweep(specs, tmp_path, factory=noisy_greedy, progress=False)
    assert result.n_computed == len(specs)
    assert len(result.requests) == len(specs) * N_REQUESTS
    assert tuple(result.runs.columns) == RUN_COLUMNS
    assert result.runs["agent"].tolist() == ["noisy", "noisy", "noisy again", "noisy again"]
    assert list(result.requests["agent"].cat.categories) == ["noisy", "noisy again"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([f"{k}.parquet" for k in result.keys] + [f"{k}.json" for k in result.keys])
    record = json.loads((tmp_path / f"{result.keys[0]}.json").read_text())
    assert RunSpec.from_dict(record["spec"]) == specs[0]
    assert Scenario.from_dict(record["scenario"]) == scenario
    assert len(record["fingerprint"]) == 64 and record["summary"]["n_requests"] == N_REQUESTS
    # the label names a run but does not change its numbers: same agent, seed and replicate
    by_label = result.requests.groupby("agent", observed=True)["latency_ms"]
    np.testing.assert_array_equal(by_label.get_group("noisy"), by_label.get_group("noisy again"))
    again = run_sweep(specs, tmp_path, factory=noisy_greedy, progress=True)
    assert again.n_computed == 0
    pd.testing.assert_frame_equal(again.requests, result.requests)
    pd.testing.assert_frame_equal(again.runs, result.runs)


def test_catalogue_agents_run_without_a_factory(scenario, tmp_path):
    from orchlib.study.metrics import compare_to_baseline

    specs = grid([scenario], ["random", "oracle", "linucb"], n_replicates=2, seed=1)
    assert {dict(s.env_kwargs).get("observation") for s in specs if s.agent == "linucb"} == {"box"}
    result = run_sweep(specs, tmp_path, progress=False)
    runs = result.runs.set_index(["agent", "replicate"])
    assert runs.loc["oracle", "mean_regret_ms"].abs().max() < 1e-9
    assert (runs.loc["random", "latency_ratio_to_oracle"] > 1.5).all()
    assert (result.runs["violation_rate"] == 0).all()
    table = compare_to_baseline(result.runs, baseline="random", rng=0).set_index("agent")
    assert (table["time_reduction"] > 0).all() and bool(table.loc["oracle", "paired"])


def test_sweep_refuses_runs_it_could_not_tell_apart(scenario, tmp_path):
    spec = RunSpec(scenario=scenario, agent="a", seed=0, replicate=0)
    with pytest.raises(ValueError, match="share"):
        run_sweep([spec, spec.replace(seed=1)], tmp_path, factory=noisy_greedy, progress=False)
    with pytest.raises(ValueError, match="at least one"):
        run_sweep([], tmp_path, progress=False)


def test_a_killed_sweep_resumes_with_only_the_missing_runs(scenario, tmp_path):
    specs = small_grid(scenario, n_replicates=3)
    interrupted = CountingFactory(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(specs, tmp_path, factory=interrupted, progress=False)
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 2 * 3 and not [n for n in names if n.endswith(".tmp")]  # 3 complete runs, no debris
    resumed_factory = CountingFactory()
    resumed = run_sweep(specs, tmp_path, factory=resumed_factory, progress=False)
    assert resumed_factory.calls == resumed.n_computed == len(specs) - 3
    fresh = run_sweep(specs, tmp_path / "fresh", factory=noisy_greedy, progress=False)
    assert_same(resumed, fresh)
    # a deleted result (either file) is recomputed, and only it
    (tmp_path / f"{resumed.keys[1]}.parquet").unlink()
    (tmp_path / f"{resumed.keys[4]}.json").unlink()
    counter = CountingFactory()
    assert run_sweep(specs, tmp_path, factory=counter, progress=False).n_computed == counter.calls == 2


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    from orchlib.study import runner

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        runner.atomic_write(tmp_path / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_serial_and_parallel_sweeps_give_identical_results(scenario, tmp_path):
    specs = small_grid(scenario)
    serial = run_sweep(specs, tmp_path / "serial", n_jobs=1, factory=noisy_greedy, progress=False)
    parallel = run_sweep(specs, tmp_path / "parallel", n_jobs=2, factory=noisy_greedy, progress=False)
    assert parallel.n_computed == len(specs)
    assert_same(serial, parallel)
    assert serial.keys == parallel.keys


def test_cache_is_invalidated_when_the_scenario_changes(scenario, tmp_path):
    specs = small_grid(scenario)
    first = run_sweep(specs, tmp_path, factory=noisy_greedy, progress=False)
    changed = [s.replace(scenario=s.scenario.replace(n_requests=N_REQUESTS + 10)) for s in specs]
    second = run_sweep(changed, tmp_path, factory=noisy_greedy, progress=False)
    assert second.n_computed == len(specs)
    assert not set(first.keys) & set(second.keys)
    assert len(second.requests) == len(specs) * (N_REQUESTS + 10)


def test_cache_is_invalidated_when_a_data_file_changes(scenario, tmp_path):
    profile = tmp_path / "end_profile.csv"
    shutil.copy(DATA_DIR / "profiles" / "pixel3_cpu4.csv", profile)
    own = scenario.replace(end=TierSpec(str(profile)))
    specs = [RunSpec(scenario=own, agent="first", seed=0, replicate=r) for r in range(2)]
    before = run_sweep(specs, tmp_path / "out", factory=always_first, progress=False)
    assert run_sweep(specs, tmp_path / "out", factory=always_first, progress=False).n_computed == 0
    # double the end device's compute time of the variant AlwaysFirst uses
    variant = before.requests["variant"].iloc[0]
    lines = profile.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{variant},"):
            name, *numbers, repeats = line.split(",")
            lines[i] = ",".join([name, *(str(2 * float(x)) for x in numbers), repeats])
    profile.write_text("\n".join(lines) + "\n")
    after = run_sweep(specs, tmp_path / "out", factory=always_first, progress=False)
    assert after.n_computed == len(specs)
    assert not set(before.keys) & set(after.keys)
    np.testing.assert_allclose(after.requests["compute_ms"], 2 * before.requests["compute_ms"])


@pytest.mark.slow
def test_a_local_dask_cluster_runs_the_sweep_with_identical_results(scenario, tmp_path):
    import distributed  # a test dependency (pyproject [test])

    specs = small_grid(scenario)
    serial = run_sweep(specs, tmp_path / "serial", n_jobs=1, factory=noisy_greedy, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        joblib.parallel_config(backend="dask"),
    ):
        with distributed.get_task_stream(client) as stream:
            on_dask = run_sweep(specs, tmp_path / "dask", factory=noisy_greedy, progress=False)
        workers = set(client.scheduler_info()["workers"])
    # the runs executed as tasks on the cluster's worker processes, not in this process
    ran = [task for task in stream.data if "_task" in task["key"]]  # keys like batch_of__task_1_calls-...
    assert len(ran) == len(specs) and {task["worker"] for task in ran} <= workers
    assert on_dask.n_computed == len(specs)
    assert_same(serial, on_dask)


# ---------------------------------------------------------------- the batched fast path


def test_batched_sweeps_record_what_the_per_request_path_records(scenario, tmp_path):
    from orchlib.study.runner import batch_agent

    env = OrchestrationEnv(scenario)
    agents = ["edge_fastest", "oracle", "q_learning", "ucb1", "random", "sota_location_only"]
    specs = grid([scenario], agents, n_replicates=3, seed=4)
    assert [batch_agent(spec, env) is not None for spec in specs[::3]] == [True] * 6
    fast = run_sweep(specs, tmp_path / "fast", progress=False)
    slow = run_sweep(specs, tmp_path / "slow", progress=False, batched=False)
    assert fast.keys == slow.keys
    assert list(fast.requests.columns) == list(slow.requests.columns) == list(REQUEST_COLUMNS)
    by_agent = {
        name: (f, s)
        for (name, f), (_, s) in zip(
            fast.requests.groupby("agent", observed=True),
            slow.requests.groupby("agent", observed=True),
            strict=True,
        )
    }
    # a fixed policy (and the oracle) meets the very same requests and takes the very same actions: the same
    # table, bit for bit
    pd.testing.assert_frame_equal(*(t.reset_index(drop=True) for t in by_agent["edge_fastest"]))
    pd.testing.assert_frame_equal(*(t.reset_index(drop=True) for t in by_agent["oracle"]))
    pd.testing.assert_frame_equal(*(t.reset_index(drop=True) for t in by_agent["random"]))
    for name in ("q_learning", "ucb1", "sota_location_only"):
        f, s = (t.reset_index(drop=True) for t in by_agent[name])
        # the same requests (the simulator's stream is the per-request path's); that the learners' whole tables
        # are equal too is tests/test_registry.py's test of the rules written once
        pd.testing.assert_series_equal(f["time_s"], s["time_s"])
        pd.testing.assert_series_equal(f["user"], s["user"])
        assert f["met_requirement"].all()
        assert (f["regret_ms"] >= -1e-9).all()
        np.testing.assert_allclose(f["latency_ms"] - f["oracle_latency_ms"], f["regret_ms"])


def test_a_batched_replicate_does_not_depend_on_its_group(scenario, tmp_path):
    specs = grid([scenario], ["q_learning"], n_replicates=3, seed=2)
    together = run_sweep(specs, tmp_path / "together", progress=False)
    alone = run_sweep(specs[1:2], tmp_path / "alone", progress=False)
    one = together.requests[together.requests.replicate == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, alone.requests.reset_index(drop=True))


@pytest.mark.parametrize("world", ["tiny", "paper"])
def test_runs_of_different_agents_batched_together_record_what_each_records_alone(world):
    # one batch of one world plays several agents, each on its own block of replicates: every run's table is
    # the one it gets alone (learners included: their exploration streams are their own replicates')
    from orchlib.study.runner import _play_batched

    scenario = (tiny() if world == "tiny" else paper()).replace(n_requests=300)
    agents = ["q_learning", "oracle", "edge_fastest", "greedy_profiles", "random", "ucb1"]
    specs = grid([scenario], agents, n_replicates=2, seed=8)
    shuffled = [specs[k] for k in np.random.default_rng(0).permutation(len(specs))]
    together = {key: frame for key, frame, _ in _play_batched(shuffled, None)}
    assert len(together) == len(specs)
    for spec in specs:
        [(key, alone, _)] = _play_batched([spec], None)
        pd.testing.assert_frame_equal(together[key], alone)


def test_batched_tasks_group_runs_by_world_and_keep_every_worker_busy():
    from orchlib.study.runner import MAX_BATCH, _batch_group_key, _batches

    worlds = [tiny().replace(n_requests=50), tiny().replace(n_requests=50, name="tiny_b")]
    specs = grid(worlds, ["q_learning", "oracle", "edge_fastest", "dqn"], n_replicates=3, seed=1)
    missing = [(spec, "fp") for spec in specs]

    def check(tasks):  # every run exactly once; a batch holds one world and at most MAX_BATCH runs
        played = [s for members, _, _ in tasks for s in members]
        assert sorted(s.to_json() for s in played) == sorted(s.to_json() for s in specs)
        assert all(len({_batch_group_key(s) for s in m}) == 1 and len(m) <= MAX_BATCH for m, _, _ in tasks)
        return [(len(m), b) for m, _, b in tasks]

    # DQN (no batched form) one run per task, first; then each world's nine batchable runs in one batch (one
    # worker: two tasks of half the batched requests each)
    assert check(_batches(missing, None, True, n_workers=1)) == [(1, False)] * 6 + [(9, True)] * 2
    assert all(m[0].agent == "dqn" for m, _, b in _batches(missing, None, True) if not b)
    # two workers: four tasks of about a quarter each; eight: sixteen, never empty
    assert check(_batches(missing, None, True, n_workers=2)) == [(1, False)] * 6 + [(4, True), (5, True)] * 2
    parts = [n for n, b in check(_batches(missing, None, True, n_workers=8)) if b]
    assert len(parts) == 16 and set(parts) == {1, 2}
    # a world of many runs is cut at MAX_BATCH even with one worker
    many = grid([worlds[0]], ["edge_fastest"], n_replicates=3 * MAX_BATCH + 1, seed=1)
    sizes = [len(m) for m, _, _ in _batches([(s, "fp") for s in many], None, True, n_workers=1)]
    assert max(sizes) <= MAX_BATCH and sum(sizes) == 3 * MAX_BATCH + 1 and max(sizes) - min(sizes) <= 1
    # a factory or batched=False: one run per task, none batched
    assert all(len(m) == 1 and not b for m, _, b in _batches(missing, None, False, n_workers=2))


@pytest.mark.parametrize("world", ["paper", "ideal"])
def test_batched_sweeps_of_the_profile_agents_record_what_the_per_request_path_records(world, tmp_path):
    # paper: a device fleet (the mask follows the device class the state encodes), JPEG payloads, hidden
    # conditions, the bandwidth estimate in the state and the measurements. Fixed baselines, the oracle and
    # the agents that read the measurements (greedy on the profiles, adaptive greedy, the hybrid; random)
    # batch, and record the per-request table bit for bit.
    from orchlib.study.runner import batch_agent

    grounded = (paper() if world == "paper" else ideal()).replace(n_requests=400)
    env = OrchestrationEnv(grounded)
    agents = [
        "local_fastest",
        "edge_most_accurate",
        "oracle",
        "greedy_profiles",
        "adaptive_greedy",
        "hybrid",
        "random",
        "dqn",
    ]
    specs = grid([grounded], agents, n_replicates=2, seed=3)
    assert [batch_agent(spec, env) is not None for spec in specs[::2]] == [True] * 7 + [False]
    if world == "ideal":
        specs = specs[6:14]  # the measurement readers (the others are covered on tiny above)
    fast = run_sweep(specs[:14], tmp_path / "fast", progress=False)
    slow = run_sweep(specs[:14], tmp_path / "slow", progress=False, batched=False)
    assert fast.keys == slow.keys
    pd.testing.assert_frame_equal(fast.requests.reset_index(drop=True), slow.requests.reset_index(drop=True))
    if world == "paper":  # the fleet matters here: the local baseline's variants differ between devices
        local = fast.requests[fast.requests.agent == "local_fastest"]
        assert local.variant.nunique() > 1 and (local.tier == "end").any()
