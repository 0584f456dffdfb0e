"""Exact small cases of the latency model, computed by hand, and properties that must always hold."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchlib.system import latency
from orchlib.system.simulator import CLOUD, EDGE, END, Simulator, build_system, simulate

BIG, SMALL = 0, 1


def action(system, tier: int, variant: int) -> int:
    return system.encode_action(tier, variant)


def test_one_request_on_each_tier_matches_hand_computation(toy_scenario) -> None:
    system = build_system(toy_scenario)
    # big: 1000 B up = 8000 bit at 1 Mbit/s = 8 ms; result 100 B down = 0.8 ms; access RTT 10 ms.
    # WAN 8 Mbit/s: 1 ms up, 0.1 ms down, RTT 20 ms. Compute: end 50, edge 20, cloud 2 ms.
    expected = {
        END: (0.0, 0.0, 0.0, 0.0, 50.0, 0.0, 0.0, 50.0),
        EDGE: (0.0, 8.0, 10.0, 0.0, 20.0, 0.8, 0.0, 38.8),
        CLOUD: (0.0, 9.0, 30.0, 0.0, 2.0, 0.9, 0.0, 41.9),
    }
    for tier, parts in expected.items():
        sim = Simulator(system, rng=0)
        request = sim.make_request(100.0, user=0)
        predicted = sim.evaluate(request)[action(system, tier, BIG)]
        breakdown = sim.serve(request, action(system, tier, BIG))
        assert breakdown == pytest.approx(parts)
        assert predicted == pytest.approx(parts[-1])


def test_two_requests_queue_on_one_edge_worker(toy_scenario) -> None:
    system = build_system(toy_scenario)
    sim = Simulator(system, rng=0)
    first = sim.serve(sim.make_request(0.0, user=0), action(system, EDGE, BIG))
    # first: upload 0-8, arrives 13, runs 13-33, result back at 33 + 0.8 + 5.
    assert first.total_ms == pytest.approx(38.8)
    second = sim.serve(sim.make_request(1.0, user=1), action(system, EDGE, BIG))
    # second: waits for the uplink until 8 (7 ms), uploads 8-16, arrives 21, waits for the worker until 33.
    assert second == pytest.approx((7.0, 8.0, 10.0, 12.0, 20.0, 0.8, 0.0, 57.8))


def test_request_overhead_delays_the_request_and_occupies_nothing(toy_scenario) -> None:
    # L11: a tier's fixed protocol cost adds to each of its requests' response time as its own part, and moves
    # no free time: the second request waits for the uplink and the worker exactly as without it.
    scenario = toy_scenario.replace(
        end=dataclasses.replace(toy_scenario.end, request_overhead_ms=1.5),
        edge=dataclasses.replace(toy_scenario.edge, request_overhead_ms=4.0),
        cloud=dataclasses.replace(toy_scenario.cloud, request_overhead_ms=7.0),
    )
    system = build_system(scenario)
    sim = Simulator(system, rng=0)
    request = sim.make_request(0.0, user=0)
    predicted = sim.evaluate(request)
    first = sim.serve(request, action(system, EDGE, BIG))
    assert first == pytest.approx((0.0, 8.0, 10.0, 0.0, 20.0, 0.8, 4.0, 42.8))
    # the oracle's evaluation includes each tier's cost (end 50 + 1.5, edge 38.8 + 4, cloud 41.9 + 7)
    assert predicted[[action(system, t, BIG) for t in (END, EDGE, CLOUD)]] == pytest.approx(
        [51.5, 42.8, 48.9]
    )
    second = sim.serve(sim.make_request(1.0, user=1), action(system, EDGE, BIG))
    assert second == pytest.approx((7.0, 8.0, 10.0, 12.0, 20.0, 0.8, 4.0, 61.8))
    # the orchestrator's profile-based estimate sees it too (greedy planners)
    from orchlib.agents.baselines import profile_latency_ms

    plain = profile_latency_ms(build_system(toy_scenario), 1.0, 8.0)
    with_cost = profile_latency_ms(system, 1.0, 8.0)
    n = system.n_variants
    np.testing.assert_allclose(with_cost - plain, np.repeat([1.5, 4.0, 7.0], n))


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "3"])
def test_request_overhead_must_be_finite_and_not_negative(toy_scenario, value) -> None:
    with pytest.raises(ValueError, match=r"TierSpec\.request_overhead_ms must be a finite number >= 0"):
        dataclasses.replace(toy_scenario.edge, request_overhead_ms=value)


def test_an_upload_shares_the_link_with_another(toy_scenario) -> None:
    system = build_system(toy_scenario)
    sim = Simulator(system, rng=0)
    sim.serve(sim.make_request(0.0, user=0), action(system, CLOUD, SMALL))  # 500 B: link busy 0-4 ms
    second = sim.serve(sim.make_request(2.0, user=1), action(system, EDGE, SMALL))
    assert second.network_wait_ms == pytest.approx(2.0)
    assert second.upload_ms == pytest.approx(4.0)


def test_end_device_runs_one_inference_at_a_time_per_user(toy_scenario) -> None:
    system = build_system(toy_scenario)
    sim = Simulator(system, rng=0)
    sim.serve(sim.make_request(0.0, user=0), action(system, END, BIG))
    same_user = sim.serve(sim.make_request(10.0, user=0), action(system, END, SMALL))
    assert same_user.queue_ms == pytest.approx(40.0)
    other_user = sim.serve(sim.make_request(20.0, user=1), action(system, END, SMALL))
    assert other_user.queue_ms == 0.0


def test_evaluate_predicts_serve_for_every_action_along_a_random_run(toy_scenario) -> None:
    scenario = dataclasses.replace(toy_scenario, compute_jitter=True, n_users=3)
    for path in ("end", "edge", "cloud"):
        assert getattr(scenario, path)  # the toy profiles have zero spread; jitter then changes nothing
    system = build_system(scenario)
    rng = np.random.default_rng(1)
    sim = Simulator(system, rng=2)
    for _ in range(300):
        request = sim.next_request()
        predicted = sim.evaluate(request)
        a = int(rng.integers(system.n_actions))
        assert sim.serve(request, a).total_ms == pytest.approx(predicted[a], rel=1e-9, abs=1e-9)


def test_same_seed_same_requests_and_latencies(toy_scenario) -> None:
    system = build_system(toy_scenario)
    policy = [i % system.n_actions for i in range(toy_scenario.n_requests)]
    assert simulate(system, policy, rng=5) == simulate(system, policy, rng=5)
    assert simulate(system, policy, rng=5) != simulate(system, policy, rng=6)


def test_closed_loop_user_waits_for_its_response(toy_scenario) -> None:
    from orchlib.system.scenario import Arrivals

    system = build_system(
        dataclasses.replace(toy_scenario, n_users=1, arrivals=Arrivals("closed_loop", think_time_ms=100.0))
    )
    sim = Simulator(system, rng=0)
    previous_done = 0.0
    for _ in range(50):
        request = sim.next_request()
        assert request.time_ms >= previous_done
        previous_done = request.time_ms + sim.serve(request, action(system, END, BIG)).total_ms


@settings(max_examples=60, deadline=None)
@given(
    n_bytes=st.floats(1, 1e7),
    start_ms=st.floats(0, 1e6),
    low=st.floats(0.05, 100),
    factor=st.floats(1.0, 10.0),
    offset=st.floats(0, 50),
)
def test_more_bandwidth_never_increases_transfer_time(n_bytes, start_ms, low, factor, offset) -> None:
    times = np.array([0.0, 1.0, 2.5, 4.0])
    rates = np.array([low, 2 * low, 0.5 * low, low])
    slow = latency.trace_rate(times, rates, offset_s=offset)
    fast = latency.trace_rate(times, rates * factor, offset_s=offset)
    assert latency.transfer_time_ms(fast, n_bytes, start_ms) <= latency.transfer_time_ms(
        slow, n_bytes, start_ms
    ) * (1 + 1e-9)
    assert latency.transfer_time_ms(
        latency.constant_rate(low * factor), n_bytes, 0
    ) <= latency.transfer_time_ms(latency.constant_rate(low), n_bytes, 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_users=st.integers(1, 5), tier=st.sampled_from([EDGE, CLOUD]))
def test_an_added_user_never_lowers_the_queue_wait_of_the_others(toy_scenario, seed, n_users, tier) -> None:
    system = build_system(dataclasses.replace(toy_scenario, n_users=n_users + 1))
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 500, size=(n_users + 1) * 8))
    users = rng.integers(0, n_users + 1, size=times.size)
    variants = rng.integers(0, 2, size=times.size)

    def waits(include_new_user: bool) -> list[float]:
        sim = Simulator(system, rng=0)
        out = []
        for t, u, v in zip(times, users, variants, strict=True):
            if u == n_users and not include_new_user:
                continue
            b = sim.serve(sim.make_request(float(t), int(u)), action(system, tier, int(v)))
            if u != n_users:
                out.append(b.queue_ms + b.network_wait_ms)
        return out

    without, with_new = np.array(waits(False)), np.array(waits(True))
    assert np.all(with_new >= without - 1e-9)
    assert with_new.mean() >= without.mean() - 1e-9


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_breakdown_sums_to_total_and_total_is_at_least_compute(toy_scenario, seed) -> None:
    system = build_system(dataclasses.replace(toy_scenario, n_users=4, n_requests=100))
    rng = np.random.default_rng(seed)
    for _request, b in simulate(system, rng.integers(0, system.n_actions, size=100).tolist(), rng=seed):
        assert b.total_ms == pytest.approx(sum(b[:6]))
        assert b.total_ms >= b.compute_ms
        assert min(b) >= 0


def test_scripted_bandwidth_drop_slows_uploads_after_it(toy_scenario) -> None:
    link = dataclasses.replace(toy_scenario.access, changes=((1.0, 0.25),))
    system = build_system(dataclasses.replace(toy_scenario, access=link))
    sim = Simulator(system, rng=0)
    before = sim.serve(sim.make_request(0.0, user=0), action(system, EDGE, BIG))
    after = sim.serve(sim.make_request(2000.0, user=0), action(system, EDGE, BIG))
    assert before.upload_ms == pytest.approx(8.0)
    assert after.upload_ms == pytest.approx(32.0)


def test_transfer_across_a_rate_change_is_integrated_exactly() -> None:
    rate = latency.trace_rate(np.array([0.0, 1.0]), np.array([1.0, 3.0]))  # 1 Mbit/s for 1 s, then 3 Mbit/s
    # start at 0.5 s with 2 Mbit: 0.5 Mbit in the first 0.5 s, then 1.5 Mbit at 3 Mbit/s = 0.5 s.
    assert latency.transfer_time_ms(rate, 2e6 / 8, 500.0) == pytest.approx(1000.0)
    vector = latency.transfer_time_ms_array(rate, np.array([2e6 / 8]), np.array([500.0]))
    assert vector[0] == pytest.approx(1000.0)


def test_rescaled_trace_keeps_its_shape_at_the_level_magnitude(toy_scenario, tmp_path) -> None:
    trace = tmp_path / "trace.log"
    trace.write_text("0.0 1.0\n1.0 2.0\n2.0 4.0\n")
    raw = dataclasses.replace(toy_scenario.access, uplink_mbps=10.0, downlink_mbps=20.0, trace=str(trace))
    system_raw = build_system(dataclasses.replace(toy_scenario, access=raw))
    system_scaled = build_system(
        dataclasses.replace(toy_scenario, access=dataclasses.replace(raw, trace_rescale=True))
    )
    assert np.median(system_raw.access_up.tail_mbps) == pytest.approx(2.0)
    assert np.median(system_scaled.access_up.tail_mbps) == pytest.approx(10.0)  # median 2 -> the level's 10
    assert np.median(system_scaled.access_down.tail_mbps) == pytest.approx(20.0)
    assert system_scaled.access_up.tail_mbps.tolist() == pytest.approx([5.0, 10.0, 20.0])


def test_a_partial_profile_works_with_a_matching_variant_subset(toy_scenario, toy_files, tmp_path) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("# name: partial\nmodel,median_ms,p10_ms,p90_ms,n_repeats\nsmall,3,3,3,1\n")
    scenario = dataclasses.replace(
        toy_scenario, end=dataclasses.replace(toy_scenario.end, profile=str(partial))
    )
    from orchlib.system.scenario import AccuracyRequirement

    only_small = dataclasses.replace(scenario, variant_subset=("small",), accuracy=AccuracyRequirement())
    system = build_system(only_small)
    assert system.median_ms[END].tolist() == [3.0]
    from orchlib.system.profiles import DataError

    with pytest.raises(DataError, match=r"no row for variant\(s\) \['big'\]"):
        build_system(scenario)


def test_bandwidth_estimate_kept_per_upload_count_equals_the_estimator_at_any_time() -> None:
    """The estimate is cached per number of completed uploads; asked at times in any order (also earlier
    ones, after later ones), it must equal the harmonic mean of the last ``window`` uploads done by then."""
    from orchlib.system import dynamics
    from orchlib.system.scenario import paper

    scenario = paper().replace(n_requests=600)
    window = scenario.bandwidth_estimate.window
    sim = Simulator(build_system(scenario), rng=3)
    rng = np.random.default_rng(0)
    shown = []
    for _ in range(scenario.n_requests):
        request = sim.next_request()
        shown.append((request.time_ms, sim.snapshot(request).access_mbps))
        valid = np.flatnonzero(sim.mask(request))
        # mostly off the device, so that uploads complete and the estimate changes often
        offloaded = valid[valid >= sim.system.n_variants]
        sim.serve(request, int(rng.choice(offloaded if offloaded.size and rng.random() < 0.8 else valid)))
    log = sim.uploads  # one replicate of orchlib.system.measurements.UploadLog; nothing dropped in this run
    assert log.dropped[0] == 0
    done, mbps = log.done_ms[0, : log.n[0]], log.mbps[0, : log.n[0]]
    assert done.size > 100 and np.all(np.diff(done) >= 0)

    def direct(t_ms: float) -> float:
        j = int(np.searchsorted(done, t_ms, side="right"))
        if j == 0:
            return float(scenario.access.uplink_mbps)
        return float(dynamics.harmonic_mean_mbps(mbps[max(0, j - window) : j]))

    changes = sum(a[1] != b[1] for a, b in itertools.pairwise(shown))
    assert changes > 50  # the estimate moved during the run, so the cache was refreshed many times
    for t_ms, seen in shown:  # what the snapshot showed at each arrival
        assert seen == direct(t_ms)
    for t_ms in rng.permutation([t for t, _ in shown])[:200]:  # asked afterwards, in random order
        assert sim.access_estimate_mbps(float(t_ms)) == direct(float(t_ms))


def test_the_measurement_logs_stay_bounded_and_give_the_same_estimates(monkeypatch):
    # long runs must not keep a record per request: the upload log is trimmed and the per-user history holds
    # what the snapshot reads; a simulator that trims every few uploads shows the same snapshots as one that
    # never trims in this run
    from orchlib.system import measurements
    from orchlib.system.scenario import paper

    scenario = paper().replace(n_requests=800)
    system = build_system(scenario)
    full = Simulator(system, rng=4)
    monkeypatch.setattr(measurements, "UPLOADS_KEPT", 8)
    trimmed = Simulator(system, rng=4)
    rng = np.random.default_rng(1)
    for _ in range(scenario.n_requests):
        requests = [sim.next_request() for sim in (full, trimmed)]
        assert full.snapshot(requests[0]) == trimmed.snapshot(requests[1])
        valid = np.flatnonzero(full.mask(requests[0]))
        offloaded = valid[valid >= system.n_variants]
        action = int(rng.choice(offloaded if offloaded.size and rng.random() < 0.8 else valid))
        assert full.serve(requests[0], action) == trimmed.serve(requests[1], action)
        assert trimmed.uploads.n[0] <= 16
        assert full.history.done_ms.shape == (1, scenario.n_users, measurements.HISTORY_DEPTH)
    assert trimmed.uploads.dropped[0] > 0 and full.uploads.n[0] > 100
    with pytest.raises(ValueError, match="before the uploads this simulator still keeps"):
        trimmed.access_estimate_mbps(0.0)
