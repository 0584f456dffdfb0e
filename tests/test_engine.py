"""The one implementation of the system's rules (orchlib.system.engine) seen through its two views.

(a) A replicate's numbers depend only on its generator: ``B`` replicates in one :class:`BatchSimulator` give bit for
    bit the requests, latencies, parts, oracle evaluations and states of ``B`` separate per-request
    :class:`Simulator` objects (the ``B = 1`` view) served with the same actions, with Poisson and closed-loop
    arrivals, scripted bandwidth changes and several workers.
(b) The oracle's evaluation of an action is exactly the response time serving it gives.
(c) The trace lookup's shortcut (a segment hint) returns exactly what ``bisect`` gives; the in-system counts stay
    exact when more requests are in a server than the initial capacity of their list.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import pickle

import numpy as np
import pytest

from orchlib.envs.batch import BatchEnv
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.system import latency
from orchlib.system.batch import BatchSimulator
from orchlib.system.engine import BREAKDOWN_COLUMNS, replicate_generators
from orchlib.system.scenario import Arrivals, ideal, paper, tiny
from orchlib.system.simulator import EDGE, Simulator, build_system

PARTS = BREAKDOWN_COLUMNS


def _busy(scenario):
    """Access and WAN bandwidth scripted to change (non-periodic prefixes), three edge workers, more load."""
    return scenario.replace(
        access=dataclasses.replace(scenario.access, changes=((2.0, 0.2), (9.0, 1.5))),
        wan=dataclasses.replace(scenario.wan, changes=((4.0, 0.001),)),
        edge=dataclasses.replace(scenario.edge, n_workers=3),
        arrivals=Arrivals("poisson", rate_per_s=scenario.arrivals.rate_per_s * 3),
    )


# Both views on the ideal world and on the grounded paper world (payloads, fleet, hidden conditions, the
# bandwidth estimate in the state).
SCENARIOS = {
    "ideal_busy": lambda: _busy(ideal()),
    "paper": paper,
    "paper_busy": lambda: _busy(paper()),
    "tiny_closed_loop": lambda: tiny().replace(arrivals=Arrivals("closed_loop", think_time_ms=20.0)),
}


@pytest.mark.parametrize("which", sorted(SCENARIOS))
def test_replicates_in_one_batch_equal_separate_per_request_simulators(which) -> None:
    system = build_system(SCENARIOS[which]())
    n_replicates, n_requests, seed = 3, 600, 11
    uniforms = np.random.default_rng(5).random((n_requests, n_replicates))
    batch = BatchEnv(system, n_replicates, rng=seed)
    env = OrchestrationEnv(system, oracle=False)
    singles = [Simulator(system, rng) for rng in replicate_generators(seed, n_replicates)]
    for k in range(n_requests):
        requests = batch.next_requests()
        states = batch.observe(requests)
        evaluated = batch.evaluate(requests)
        masks = batch.masks(requests)
        # a random action each request's device and tiers can run (the grounded world has unrunnable ones)
        runnable = masks & np.isfinite(evaluated)
        counts = runnable.sum(axis=1)
        actions = np.array(
            [np.flatnonzero(row)[int(u * n)] for row, u, n in zip(runnable, uniforms[k], counts, strict=True)]
        )
        breakdown = batch.serve(requests, actions)
        for b, sim in enumerate(singles):
            request = sim.next_request()
            assert (request.time_ms, request.user, request.requirement_class) == (
                requests.time_ms[b],
                requests.user[b],
                requests.requirement_class[b],
            )
            np.testing.assert_array_equal(sim.mask(request), masks[b])
            env.sim = sim  # the env's own encoding of the state, from the simulator we drive
            assert env._observe(request)[0] == states[b]
            np.testing.assert_array_equal(sim.evaluate(request), evaluated[b])
            served = sim.serve(request, int(actions[b]))
            assert tuple(served) == tuple(getattr(breakdown, p)[b] for p in PARTS)


def test_a_replicate_does_not_depend_on_the_batch_size() -> None:
    system = build_system(tiny())
    small, large = BatchSimulator(system, 2, rng=3), BatchSimulator(system, 5, rng=3)
    actions = np.random.default_rng(1).integers(system.n_actions, size=(300, 5))
    for step in range(300):
        totals = []
        for sim in (small, large):
            requests = sim.next_requests()
            totals.append(sim.serve(requests, actions[step, : sim.n_replicates]).total_ms)
        np.testing.assert_array_equal(totals[0], totals[1][:2])


@pytest.mark.parametrize("which", ["paper", "paper_busy"])
def test_the_oracle_evaluation_is_exactly_what_serving_gives(which) -> None:
    system = build_system(_busy(paper()) if which == "paper_busy" else paper())
    sim = Simulator(system, rng=4)
    rng = np.random.default_rng(0)
    for _ in range(150):
        request = sim.next_request()
        predicted = sim.evaluate(request)
        # actions this request's device and tiers can run (in the grounded world some cannot: inf)
        runnable = np.flatnonzero(sim.mask(request) & np.isfinite(predicted))
        for action in rng.choice(runnable, size=4):
            twin = copy.deepcopy(sim)
            assert twin.serve(twin._pending, int(action)).total_ms == predicted[action]
        sim.serve(request, int(rng.choice(runnable)))


def test_the_segment_hint_gives_what_bisect_gives() -> None:
    system = build_system(paper())
    rng = np.random.default_rng(6)
    for xp in (system.access_up.tail_times_s, system.access_up.tail_bits, np.array([0.0, 1.0])):
        table = np.vstack([xp] * 5)
        n = xp.size
        span = xp[-1] - xp[0]
        x = np.concatenate(
            (
                rng.uniform(xp[0], xp[-1] + 0.1 * span, 3000),
                xp,
                np.nextafter(xp, -np.inf),
                np.nextafter(xp, np.inf),
            )
        )
        x = x[x >= xp[0]]
        for value in x:
            expected = min(bisect.bisect_right(xp.tolist(), value) - 1, n - 2)
            true_hint = expected
            for hint in (-1, 0, n - 2, true_hint, max(true_hint - 1, 0), min(true_hint + 1, n - 2), n + 3):
                assert latency._segment(table, 0, n, value, hint) == expected


def test_in_system_counts_stay_exact_beyond_the_initial_capacity(toy_scenario) -> None:
    system = build_system(dataclasses.replace(toy_scenario, n_users=1))
    sim = Simulator(system, rng=0)
    done = []
    for k in range(60):  # uploads of 4 ms, a compute of 4 ms on one edge worker: the queue grows
        t = 0.5 * k
        request = sim.make_request(t, user=0)
        snap = sim.snapshot(request)
        assert snap.edge_in_system == sum(d > t for d in done)
        breakdown = sim.serve(request, system.encode_action(EDGE, 1))
        done.append(t + breakdown.total_ms - breakdown.download_ms - system.access_rtt_ms / 2)
    assert sum(d > 30.0 for d in done) > 16  # more than the initial capacity were in the system at once


@pytest.mark.parametrize("which", sorted(SCENARIOS))
def test_drawing_ahead_in_the_serve_call_changes_no_number(which) -> None:
    system = build_system(SCENARIOS[which]())
    plain, ahead = Simulator(system, rng=8), Simulator(system, rng=8, evaluate_ahead=True)
    drawn = Simulator(system, rng=8, draw_ahead=True)  # drawn in the serve call, not evaluated
    uniforms = np.random.default_rng(2).random(1100)  # more than one block of draws
    for u in uniforms:
        requests = [sim.next_request() for sim in (plain, ahead, drawn)]
        assert requests[0] == requests[1] == requests[2]
        assert plain.snapshot(requests[0]) == ahead.snapshot(requests[1]) == drawn.snapshot(requests[2])
        evaluated = plain.evaluate(requests[0])
        np.testing.assert_array_equal(evaluated, ahead.evaluate(requests[1]))
        # an action the request's device and tiers can run (the grounded world has unrunnable ones)
        runnable = np.flatnonzero(np.isfinite(evaluated))
        action = int(runnable[int(u * runnable.size)])
        assert plain.best(requests[0]) == ahead.best(
            requests[1]
        )  # the masked best, also when all are evaluated
        assert plain.best(requests[0]) == drawn.best(requests[2])
        served = [
            sim.serve(request, action) for sim, request in zip((plain, ahead, drawn), requests, strict=True)
        ]
        assert served[0] == served[1] == served[2]
    for sim in (ahead, drawn):
        with pytest.raises(RuntimeError, match="evaluate_ahead=False and draw_ahead=False"):
            sim.make_request(1e9, user=0)


@pytest.mark.parametrize("which", sorted(SCENARIOS))
def test_the_pruned_best_is_argmin_of_the_masked_evaluation(which) -> None:
    # Engine.best skips the actions a lower bound rules out; its answer must be exactly argmin (first on ties)
    # of the full evaluation over the request's valid actions, for every replicate, drawn ahead or on demand
    system = build_system(SCENARIOS[which]())
    n_replicates, n_requests = 3, 700
    batch = BatchSimulator(system, n_replicates, rng=4)
    engine = batch.engine
    ahead = Simulator(system, rng=replicate_generators(4, n_replicates)[0], evaluate_ahead="best")
    actions_rng = np.random.default_rng(6)
    for _ in range(n_requests):
        requests = batch.next_requests()
        request = ahead.next_request()
        masked = np.where(batch.masks(requests), batch.evaluate(requests), np.inf)
        action, ms = engine.best()
        np.testing.assert_array_equal(action, masked.argmin(axis=1))
        np.testing.assert_array_equal(ms, masked.min(axis=1))
        assert ahead.best(request) == (int(action[0]), float(ms[0]))  # the one drawn in the serve call
        # random valid actions, so queues build on every tier
        choice = [actions_rng.choice(np.flatnonzero(np.isfinite(row))) for row in masked]
        batch.serve(requests, np.array(choice))
        ahead.serve(request, int(choice[0]))
    with pytest.raises(RuntimeError, match="best"):
        ahead.best(request)


def test_evaluate_ahead_is_checked() -> None:
    with pytest.raises(ValueError, match="evaluate_ahead must be False, True, 'all' or 'best', got 'some'"):
        Simulator(build_system(tiny()), evaluate_ahead="some")


def test_an_action_its_tier_cannot_run_is_refused_and_runnable_is_what_evaluates_finite() -> None:
    # an unrunnable action would hold its device or server for ever (and once made the on/off gates extend a
    # co-tenant schedule without end): serve() refuses it, before any state changes
    system = build_system(paper())
    sim = Simulator(system, rng=3)
    refused = 0
    for _ in range(300):
        request = sim.next_request()
        evaluated = sim.evaluate(request)
        finite = np.isfinite(evaluated)
        assert not np.isnan(evaluated).any()
        np.testing.assert_array_equal(sim._runnable[sim.user_class[request.user]], finite)
        assert [sim.can_run(request, a) for a in range(finite.size)] == finite.tolist()
        if not finite.all():
            with pytest.raises(ValueError, match=r"cannot run: .* has no profile for that variant"):
                sim.serve(request, int(np.flatnonzero(~finite)[0]))
            refused += 1
        sim.serve(request, int(np.argmin(evaluated)))
    assert refused > 0, "grounded paper has variants a tier or device cannot run"


def test_a_copied_or_pickled_env_steps_on_exactly_as_the_original() -> None:
    # the per-request step's StructRef (a compiled view of the engine's arrays) is not copied: each copy builds
    # its own from its own arrays, so the copies never share or corrupt state
    env = OrchestrationEnv("paper")
    _, info = env.reset(seed=3)
    for _ in range(50):
        _, _, _, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    copies = [env, copy.deepcopy(env), pickle.loads(pickle.dumps(env))]
    assert copies[1].sim._engine.device_free_ms is not env.sim._engine.device_free_ms
    infos = [info] * 3
    for k in range(30):
        steps = [
            c.step(int(np.flatnonzero(i["action_mask"])[k % 2 - 1]))
            for c, i in zip(copies, infos, strict=True)
        ]
        infos = [s[4] for s in steps]
        assert steps[0][0] == steps[1][0] == steps[2][0]
        assert infos[0]["latency_ms"] == infos[1]["latency_ms"] == infos[2]["latency_ms"]
        assert infos[0]["oracle_latency_ms"] == infos[1]["oracle_latency_ms"] == infos[2]["oracle_latency_ms"]


_INTERPRETED_STEPS = """
import json, sys
import numpy as np
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.system.scenario import paper
env = OrchestrationEnv(paper().replace(n_requests=300))
obs, info = env.reset(seed=5)
rows = []
for t in range(300):
    valid = np.flatnonzero(info["action_mask"])
    obs, reward, terminated, truncated, info = env.step(int(valid[(7 * t) % valid.size]))
    rows.append([info["latency_ms"], info["oracle_latency_ms"], info["oracle_action"], obs])
import numba
print(json.dumps({"jit_disabled": bool(numba.config.DISABLE_JIT), "rows": rows}))
"""


def test_the_kernels_interpreted_give_what_they_give_compiled() -> None:
    # NUMBA_DISABLE_JIT runs every kernel as plain Python (to debug one, and in the tests that run a fresh
    # copy of the package): the grounded world's oracle actions and states are the compiled ones, and its
    # latencies too up to the last bit or two (LLVM's code and libm's exp round a few results differently:
    # about 4e-16 relative, measured)
    import json
    import os
    import subprocess
    import sys

    def rows(disable_jit: str) -> np.ndarray:  # the script's steps in a fresh process
        env = {**os.environ, "NUMBA_DISABLE_JIT": disable_jit}
        done = subprocess.run(
            [sys.executable, "-c", _INTERPRETED_STEPS], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout)
        assert out["jit_disabled"] == (disable_jit == "1")
        return np.array(out["rows"])

    interpreted, compiled = rows("1"), rows("0")
    np.testing.assert_array_equal(interpreted[:, 2:], compiled[:, 2:])
    np.testing.assert_allclose(interpreted[:, :2], compiled[:, :2], rtol=1e-13, atol=0)
