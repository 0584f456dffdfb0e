"""The Gymnasium environment: API conformance, determinism, registration, state encoding, masks, the oracle's
answer, the accuracy penalty and argument checking (all on the ``tiny`` scenario)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from orchlib.envs.orchestration import ENV_ID, PRIVATE_INFO_KEYS, OrchestrationEnv
from orchlib.system.profiles import load_variants
from orchlib.system.scenario import Arrivals, Scenario, paper, tiny
from orchlib.system.simulator import Simulator

Policy = Callable[[dict[str, Any], np.random.Generator], int]


def random_valid(info: dict[str, Any], rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(info["action_mask"])))


def random_any(info: dict[str, Any], rng: np.random.Generator) -> int:
    return int(rng.integers(info["action_mask"].size))


def fixed(action: int) -> Policy:
    return lambda info, rng: action


def rollout(
    env: gym.Env, seed: int, n_steps: int, policy: Policy = random_valid
) -> tuple[list[Any], list[float], list[dict[str, Any]]]:
    """Observations (reset's first), rewards and infos (reset's first) of one seeded run."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for _ in range(n_steps):
        obs, reward, _, _, info = env.step(policy(info, rng))
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
    return observations, rewards, infos


def same_info(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- API conformance and determinism


@pytest.mark.parametrize("observation", ["discrete", "box"])
def test_gymnasium_env_checker_passes(observation: str) -> None:
    # Made through the registry so that the checker can also rebuild the env from its spec.
    check_env(gym.make(ENV_ID, scenario="tiny", observation=observation).unwrapped)


@pytest.mark.parametrize("observation", ["discrete", "box"])
def test_same_seed_same_rollout_different_seed_different_rollout(observation: str) -> None:
    first = rollout(OrchestrationEnv("tiny", observation=observation), 7, 300)
    again = rollout(OrchestrationEnv("tiny", observation=observation), 7, 300)
    other = rollout(OrchestrationEnv("tiny", observation=observation), 8, 300)
    assert all(np.array_equal(x, y) for x, y in zip(first[0], again[0], strict=True))
    assert first[1] == again[1]
    assert all(same_info(x, y) for x, y in zip(first[2], again[2], strict=True))
    assert first[1] != other[1]
    assert [i["time_ms"] for i in first[2]] != [i["time_ms"] for i in other[2]]


def test_reset_with_the_same_seed_restarts_the_same_run() -> None:
    env = OrchestrationEnv("tiny")
    first = rollout(env, 3, 100)
    rollout(env, 4, 50)
    assert rollout(env, 3, 100)[1] == first[1]


def test_gym_make_truncates_at_the_registered_length() -> None:
    env = gym.make(ENV_ID, scenario="tiny", max_episode_steps=50)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(1, 51):
        _, _, terminated, truncated, info = env.step(random_valid(info, rng))
        assert not terminated
        assert truncated == (step == 50)
    assert isinstance(env.unwrapped, OrchestrationEnv)
    assert env.unwrapped.scenario.name == "tiny"


def test_direct_instance_truncates_after_max_steps() -> None:
    env = OrchestrationEnv("tiny", max_steps=20)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(20)]
    assert flags == [False] * 19 + [True]
    assert OrchestrationEnv("tiny").max_steps == tiny().n_requests


# ---------------------------------------------------------------- discrete state encoding


def test_encode_decode_round_trip_over_every_state() -> None:
    env = OrchestrationEnv("tiny")
    assert env.n_states == int(np.prod(env.state_shape))
    for s in range(env.n_states):
        assert env.encode(*env.decode(s)) == s
    for components in itertools.product(*(range(n) for n in env.state_shape)):
        assert env.decode(env.encode(*components)) == components
    for bad in (-1, env.n_states):
        with pytest.raises(ValueError, match="state must be in"):
            env.decode(bad)


def test_observation_encodes_the_measurements_in_info() -> None:
    """The discrete observation is encode(bandwidth level, edge-load level, uplink busy, device-load level, device
    class, requirement class) of the measurements the info reports for the same request, with the documented
    level edges; tiny has one device class and no hidden device load, so those components have one level."""
    env = OrchestrationEnv("tiny", bandwidth_edges_mbps=(5.0, 15.0), edge_load_edges=(1, 2))
    assert env.state_shape == (3, 3, 2, 1, 1, 2)
    observations, _, infos = rollout(env, 1, 500)
    seen = set()
    for obs, info in zip(observations, infos, strict=True):
        components = (
            bisect.bisect_right(env.bandwidth_edges_mbps, info["access_mbps"]),
            bisect.bisect_right(env.edge_load_edges, info["edge_in_system"]),
            int(info["access_backlog_ms"] > 0),
            0,
            0,
            info["requirement_class"],
        )
        assert obs == env.encode(*components)
        seen.add(components)
    assert len({c[1] for c in seen}) > 1 and len({c[2] for c in seen}) == 2  # the test saw the state change


def grounded_small() -> Scenario:
    """The grounded world (fleet, hidden device load, bandwidth estimate) at a test size."""
    return paper().replace(name="paper_small", n_requests=600)


def test_grounded_state_carries_device_class_and_device_load() -> None:
    """In the grounded world the state adds the device class (5) and a device-load level read from
    ``device_slowdown_estimate`` (edge 1.5), and the action mask is a function of the state again."""
    env = OrchestrationEnv(grounded_small(), oracle=False)
    n_classes = len(env.system.device_classes)
    assert env.state_shape == (5, 3, 2, 2, n_classes, 4)
    observations, _, infos = rollout(env, 2, 600)
    seen = set()
    for obs, info in zip(observations, infos, strict=True):
        components = (
            bisect.bisect_right(env.bandwidth_edges_mbps, info["access_mbps"]),
            bisect.bisect_right(env.edge_load_edges, info["edge_in_system"]),
            int(info["access_backlog_ms"] > 0),
            int(info["device_slowdown_estimate"] >= 1.5),
            info["device_class"],
            info["requirement_class"],
        )
        assert obs == env.encode(*components)
        # the mask every request gets is the mask of its state (per-device masks included)
        np.testing.assert_array_equal(env.state_mask(obs), info["action_mask"])
        seen.add(components)
    assert len({c[4] for c in seen}) >= 3  # the seed's 8 users draw their classes: several are in play
    assert {c[3] for c in seen} == {0, 1}  # loaded devices were seen, so the level is not constant
    # devices whose masks differ (GPU delegate: float only; NNAPI: int8 only) give states whose masks differ
    masks = {tuple(env.state_mask(env.encode(0, 0, 0, 0, c, 0))) for c in range(n_classes)}
    assert len(masks) >= 3


def test_ideal_state_keeps_its_size_and_indices() -> None:
    """In ``ideal`` the added components have one level, so the table keeps its 120 states and every
    observation keeps the index of the earlier 4-component state (the ideal results cannot move)."""
    env = OrchestrationEnv("ideal", oracle=False)
    assert env.state_shape == (5, 3, 2, 1, 1, 4) and env.n_states == 120
    observations, _, infos = rollout(env, 3, 300)
    for obs, info in zip(observations, infos, strict=True):
        b = bisect.bisect_right((2.5, 5.0, 15.0, 30.0), info["access_mbps"])
        load = bisect.bisect_right((1, 2), info["edge_in_system"])
        assert (
            obs == ((b * 3 + load) * 2 + int(info["access_backlog_ms"] > 0)) * 4 + info["requirement_class"]
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [("bandwidth_edges_mbps", (5.0, 2.0)), ("edge_load_edges", (0,)), ("device_load_edges", (1.5, 1.5))],
)
def test_bad_level_edges_are_named(field: str, value: tuple) -> None:
    with pytest.raises(ValueError, match=field):
        OrchestrationEnv("tiny", **{field: value})


# ---------------------------------------------------------------- masks


def test_masks_match_the_variant_table_for_every_requirement_class() -> None:
    env = OrchestrationEnv("tiny")
    system = env.system
    table = load_variants(system.scenario.variants).frame
    top1 = table.loc[list(system.variant_names), "top1_pct"].to_numpy(float)
    levels = system.scenario.accuracy.levels_pct
    for k, level in enumerate(levels):
        expected = np.tile(top1 >= level, 3)
        np.testing.assert_array_equal(system.masks[k], expected)
        for s in range(env.n_states):
            if env.decode(s)[-1] == k:
                np.testing.assert_array_equal(env.state_mask(s), expected)
    # tiny's two classes differ (otherwise this test would not test much)
    assert not np.array_equal(system.masks[0], system.masks[1])
    _, _, infos = rollout(env, 2, 300)
    classes = set()
    for info in infos:
        k = info["requirement_class"]
        classes.add(k)
        np.testing.assert_array_equal(info["action_mask"], np.tile(top1 >= levels[k], 3))
        assert info["requirement_pct"] == levels[k]
    assert classes == set(range(len(levels)))


# ---------------------------------------------------------------- the clairvoyant oracle


@pytest.mark.parametrize("policy_name", ["random_valid", "end_first", "edge_first", "cloud_last"])
def test_oracle_is_never_slower_and_is_the_min_over_valid_actions(policy_name: str) -> None:
    """On the same request stream, the clairvoyant per-request optimum is never slower than the action taken,
    and equals the minimum over valid actions of ``Simulator.evaluate`` on a twin simulator replaying the run."""
    env = OrchestrationEnv("tiny")
    n_variants = env.system.n_variants
    policies: dict[str, Policy] = {
        "random_valid": random_valid,
        "end_first": fixed(0),  # most accurate variant on the device: valid for every class
        "edge_first": fixed(n_variants),
        "cloud_last": lambda info, rng: int(np.flatnonzero(info["action_mask"])[-1]),
    }
    policy = policies[policy_name]
    seed = 21
    _, info = env.reset(seed=seed)
    # The env draws all its randomness from np_random, seeded like default_rng(seed), so a twin simulator
    # seeded the same way sees the same requests (checked below) and serves the same actions.
    twin = Simulator(env.system, rng=seed)
    rng = np.random.default_rng(seed)
    regrets = []
    for _ in range(400):
        request = twin.next_request()
        assert (request.user, request.time_ms, request.requirement_class) == (
            info["user"],
            info["time_ms"],
            info["requirement_class"],
        )
        expected = float(np.min(twin.evaluate(request)[info["action_mask"]]))
        a = policy(info, rng)
        _, _, _, _, info = env.step(a)
        twin.serve(request, a)
        assert info["oracle_latency_ms"] == pytest.approx(expected, rel=1e-12, abs=1e-9)
        assert info["oracle_latency_ms"] <= info["latency_ms"] + 1e-9
        assert info["regret_ms"] == pytest.approx(info["latency_ms"] - info["oracle_latency_ms"])
        regrets.append(info["regret_ms"])
    assert max(regrets) > 0  # these policies are not the oracle, so the comparison was not trivial


def test_oracle_off_reports_no_private_keys() -> None:
    env = OrchestrationEnv("tiny", oracle=False)
    _, _, infos = rollout(env, 0, 20)
    assert all(PRIVATE_INFO_KEYS.isdisjoint(info) for info in infos)
    with_oracle = rollout(OrchestrationEnv("tiny"), 0, 20)[2]
    assert all(info.keys() >= PRIVATE_INFO_KEYS for info in with_oracle[1:])


# ---------------------------------------------------------------- reward and the accuracy penalty


@pytest.mark.parametrize("accuracy_mode", ["mask", "penalty"])
def test_penalty_is_subtracted_exactly_when_the_requirement_is_violated(accuracy_mode: str) -> None:
    penalty, scale = 0.75, 2.0
    env = OrchestrationEnv("tiny", accuracy_mode=accuracy_mode, accuracy_penalty=penalty, reward_scale=scale)
    _, info = env.reset(seed=4)
    rng = np.random.default_rng(4)
    violations = 0
    for _ in range(400):
        mask = info["action_mask"]
        a = random_any(info, rng)
        _, reward, _, _, info = env.step(a)
        assert info["met_requirement"] == bool(mask[a])
        required = env.system.requirement_pct[info["served_requirement_class"]]
        assert info["met_requirement"] == (info["accuracy_pct"] >= required)
        base = -info["latency_ms"] / 1e3 * scale
        cost = penalty if (accuracy_mode == "penalty" and not info["met_requirement"]) else 0.0
        assert reward == pytest.approx(base - cost, rel=1e-12, abs=1e-12)
        violations += not info["met_requirement"]
    assert violations > 0


# ---------------------------------------------------------------- actions that cannot run (E8)


def _engine_state(env: OrchestrationEnv) -> list[np.ndarray]:
    engine = env.sim._engine
    names = ("device_free_ms", "access_free_ms", "wan_free_ms", "edge_workers_ms", "cloud_workers_ms")
    return [getattr(engine, name).copy() for name in (*names, "edge_done_ms", "cloud_done_ms", "heat")]


def _unrunnable(env: OrchestrationEnv, info: dict[str, Any]) -> list[int]:
    sim = env.sim
    request = env._request
    return [a for a in range(env.action_space.n) if not sim.can_run(request, a)]


@pytest.mark.parametrize("accuracy_mode", ["mask", "penalty"])
def test_an_action_that_cannot_run_fails_the_request_the_same_way_in_both_modes(accuracy_mode: str) -> None:
    # paper's fleet and int8 cloud accelerator cannot run some variants: such a request fails, costs the stated
    # reward, occupies nothing and is reported; the masks never list such actions
    env = OrchestrationEnv("paper", accuracy_mode=accuracy_mode, reward_scale=2.0, failure_latency_s=7.0)
    _, info = env.reset(seed=5)
    rng = np.random.default_rng(5)
    n_failed = 0
    for _ in range(300):
        unrunnable = _unrunnable(env, info)
        assert not info["action_mask"][unrunnable].any()
        if unrunnable and rng.random() < 0.5:
            a = int(rng.choice(unrunnable))
            before, user = _engine_state(env), info["user"]
            _, reward, terminated, truncated, info = env.step(a)
            assert info["failed"] and not terminated and not truncated
            assert reward == -7.0 * 2.0
            assert "cannot run" in info["error"] and str(a) in info["error"]
            assert info["served_user"] == user and not info["met_requirement"]
            assert np.isnan([info["latency_ms"], info["compute_ms"], info["regret_ms"]]).all()
            for x, y in zip(before, _engine_state(env), strict=True):
                np.testing.assert_array_equal(x, y)  # nothing occupied, nothing heated
            n_failed += 1
        else:
            _, _, _, _, info = env.step(random_valid(info, rng))
            assert not info["failed"] and "error" not in info
    assert n_failed > 20
    assert env.sim.n_failed == n_failed and env.sim.n_served == 300 - n_failed


def test_failed_requests_give_mask_and_penalty_mode_the_same_run() -> None:
    runs = [
        rollout(OrchestrationEnv("paper", accuracy_mode=mode, oracle=False), 3, 200, random_any)
        for mode in ("mask", "penalty")
    ]
    (_, rewards_mask, infos_mask), (_, rewards_penalty, infos_penalty) = runs
    failed = [i.get("failed", False) for i in infos_mask]
    assert any(failed)
    for mask_info, penalty_info, r_mask, r_penalty in zip(
        infos_mask[1:], infos_penalty[1:], rewards_mask, rewards_penalty, strict=True
    ):
        assert same_info(mask_info, penalty_info) or np.isnan(mask_info["latency_ms"])
        if mask_info["failed"] or mask_info["met_requirement"]:
            assert r_mask == r_penalty
        else:
            assert r_penalty == r_mask - 1.0


def test_a_failed_request_in_a_closed_loop_lets_its_user_send_again() -> None:
    scenario = paper().replace(arrivals=Arrivals(process="closed_loop", think_time_ms=50.0))
    env = OrchestrationEnv(scenario, oracle=False)
    _, info = env.reset(seed=1)
    engine = env.sim._engine
    for _ in range(400):
        unrunnable = _unrunnable(env, info)
        if unrunnable:
            t, user = info["time_ms"], info["user"]
            _, _, _, _, info = env.step(unrunnable[0])
            assert info["failed"]
            # its next request is scheduled, a think time after the failed one (or it is the one now pending)
            later = info["time_ms"] if info["user"] == user else engine.next_arrival_ms[0, user]
            assert t <= later < np.inf
            break
        _, _, _, _, info = env.step(random_valid(info, np.random.default_rng(0)))
    else:
        pytest.fail("no request with an unrunnable action in 400")
    users = {env.step(random_valid(info, np.random.default_rng(0)))[4]["served_user"] for _ in range(400)}
    assert users == set(range(scenario.n_users))


@pytest.mark.parametrize(("value"), [0.0, -1.0, float("inf"), float("nan")])
def test_failure_latency_is_checked(value: float) -> None:
    with pytest.raises(ValueError, match="failure_latency_s"):
        OrchestrationEnv("tiny", failure_latency_s=value)


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"observation": "image"}, "observation"),
        ({"accuracy_mode": "ignore"}, "accuracy_mode"),
        ({"accuracy_penalty": 0.0}, "accuracy_penalty"),
        ({"reward_scale": -1.0}, "reward_scale"),
        ({"bandwidth_edges_mbps": (15.0, 5.0)}, "bandwidth_edges_mbps"),
        ({"edge_load_edges": (0, 1)}, "edge_load_edges"),
        ({"scenario": "no_such_preset"}, "unknown scenario preset"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict[str, Any], match: str) -> None:
    arguments = {"scenario": "tiny", **kwargs}
    with pytest.raises(ValueError, match=match):
        OrchestrationEnv(**arguments)


def test_bad_calls_are_refused() -> None:
    env = OrchestrationEnv("tiny")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    with pytest.raises(RuntimeError, match="reset"):
        env.oracle_action()
    env.reset(seed=0)
    for bad in (-1, env.action_space.n):
        with pytest.raises(ValueError, match="action must be in"):
            env.step(bad)
