"""The one batched loop: batched agents played on ``B`` replicates in lockstep, the batched form of the Gymnasium
loop ``act -> env.step -> learn``.

:func:`play_batch` steps ``act -> serve -> observe -> learn`` for a batch whose replicates are split into
contiguous blocks, each played by one batched agent (:mod:`orchlib.agents.batched`, each the ``batched`` form of
its entry in the registry :data:`orchlib.agents.catalogue.AGENTS`), on the env's ``B``-replicate view
(:class:`orchlib.envs.batch.BatchEnv`, over the system's :class:`orchlib.system.batch.BatchSimulator`), and hands
every step to a recorder. It is the loop of the runner's fast path (``orchlib.study.runner``, which records the
per-request table) and of :func:`run_batch` (one agent, its latencies and actions or each replicate's mean), which
the benchmarks and the tests use.

Implementation details and assumptions:

1. **Same rules as the per-request agents.** Each batched agent calls the per-request class's pure functions
   (``qlearning.QHyperparameters``/``exploration_probability``, ``baselines.profile_latency_ms_batch``,
   the ``agents.hybrid`` residual functions, ``random_valid_action``, ``masked_argmax``). Given the
   per-request agent's generators, random, greedy, adaptive greedy and the hybrid choose exactly what it
   chooses. Q-learning's rules are written once (:mod:`orchlib.agents.qlearning`): the per-request learner is the
   one-replicate view of :class:`~orchlib.agents.qlearning.BatchQLearning` and draws what replicate ``b`` draws,
   so given its generator it chooses the same actions bit for bit (issue 23). UCB1 likewise
   (:func:`orchlib.agents.bandits.ucb_choice`). A replicate never depends on the batch size. Their per-step rules
   run as compiled loops over replicates (numba), which read each replicate's rows in place.
2. **How a block acts.** The oracle's block (:class:`~orchlib.agents.batched.BatchOracle`) takes each request's
   clairvoyant best valid action (``BatchSimulator.best``); an agent with ``kind_masks`` (random, greedy on the
   profiles, adaptive greedy, the hybrid) takes ``act(states, kinds, measurements)`` and
   ``learn(states, actions, rewards, next_states, next_kinds, latency_ms)``; every other one ``act(states)`` and
   ``learn(states, actions, rewards, next_states)``. The reward is the env's in ``accuracy_mode="mask"``:
   ``-response_time_s * reward_scale``.
3. **Not provided**: the ``box`` observation (use the per-request path for it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchlib.agents.base import check_real
from orchlib.agents.batched import BatchAgent, BatchOracle
from orchlib.envs.batch import BatchEnv
from orchlib.envs.orchestration import DEFAULT_BANDWIDTH_EDGES_MBPS, DEFAULT_EDGE_LOAD_EDGES
from orchlib.system.batch import BatchBreakdown, BatchRequests
from orchlib.system.simulator import System

#: ``recorder(step, requests, states, actions, breakdown, rewards, best_ms)``: what :func:`play_batch` hands over
#: after serving step ``step``'s requests (``best_ms``: each request's clairvoyant best response time, or None when
#: not computed). The arrays are the loop's own: copy what is kept.
Recorder = Callable[
    [int, BatchRequests, np.ndarray, np.ndarray, BatchBreakdown, np.ndarray, np.ndarray | None], None
]

#: how a block acts: the oracle's best, by the discrete state, by the request's kind and measurements.
_ACTS_ORACLE, _ACTS_BY_STATE, _ACTS_BY_KIND = 0, 1, 2


def _check_sizes(n_requests: int, reward_scale: float) -> None:
    """Refuse ``n_requests`` < 1 or a ``reward_scale`` <= 0, naming them."""
    if isinstance(n_requests, bool) or not isinstance(n_requests, int | np.integer) or n_requests < 1:
        raise ValueError(f"n_requests must be an integer >= 1, got {n_requests!r}")
    check_real("reward_scale", reward_scale, 0.0, low_open=True)


def _how_it_acts(agent: Any, sim: BatchEnv) -> int:
    """How ``agent`` acts (module docstring, item 2), after checking that it was built for ``sim``'s masks."""
    if isinstance(agent, BatchOracle):
        return _ACTS_ORACLE
    if agent.state_masks.shape != sim.state_masks.shape or not np.array_equal(
        agent.state_masks, sim.state_masks
    ):
        raise ValueError(
            f"agent.state_masks (shape {agent.state_masks.shape}) must be the simulator's state_masks "
            f"(shape {sim.state_masks.shape}): build the agent with discrete_state_masks(system, ...)"
        )
    kind_masks = getattr(agent, "kind_masks", None)
    if kind_masks is None:
        return _ACTS_BY_STATE
    if not np.array_equal(kind_masks, sim.kind_masks):
        raise ValueError(
            f"agent.kind_masks (shape {np.shape(kind_masks)}) must be the simulator's kind_masks (shape "
            f"{sim.kind_masks.shape}): build the agent with BatchSimulator(system, ...).kind_masks"
        )
    return _ACTS_BY_KIND


def play_batch(
    sim: BatchEnv,
    blocks: Sequence[tuple[slice, Any]],
    n_requests: int,
    recorder: Recorder,
    *,
    reward_scale: float = 1.0,
    best: bool = False,
) -> None:
    """Play ``n_requests`` requests in every replicate of ``sim``: each step ``a = act(s)``; serve;
    ``s' = observe(next request)``; ``learn(s, a, r, s')`` with ``r = -response_time_s * reward_scale``.

    Args:
        sim: a fresh (or just reset) :class:`~orchlib.envs.batch.BatchEnv`, no request drawn yet.
        blocks: ``(replicates, agent)`` pairs: contiguous slices that cover ``0 .. B - 1`` in order, each played
            by one batched agent built on ``sim.state_masks`` (and, if it reads kinds, ``sim.kind_masks``) and
            reset for its number of replicates.
        n_requests: requests per replicate, >= 1.
        recorder: called once per step with what it served (:data:`Recorder`).
        reward_scale: as ``OrchestrationEnv(reward_scale=...)``, > 0.
        best: compute each request's clairvoyant best response time for the recorder (the oracle's blocks get
            it anyway).

    Raises:
        ValueError: bad sizes, blocks that do not cover the batch, or an agent built for other masks.
    """
    _check_sizes(n_requests, reward_scale)
    b = sim.n_replicates
    start = 0
    for block, _ in blocks:
        if not isinstance(block, slice) or block.start != start or not start < block.stop <= b or block.step:
            raise ValueError(f"blocks must be contiguous slices covering the {b} replicates in order")
        start = block.stop
    if start != b:
        raise ValueError(f"blocks must be contiguous slices covering the {b} replicates in order")
    plays = [(block, agent, _how_it_acts(agent, sim)) for block, agent in blocks]
    reads_kind = any(how == _ACTS_BY_KIND for _, _, how in plays)
    needs_best = best or any(how == _ACTS_ORACLE for _, _, how in plays)
    scale = float(reward_scale)
    requests = sim.next_requests()
    state = sim.observe(requests)
    kinds = sim.kinds(requests) if reads_kind else None
    action = np.empty(b, dtype=np.int64)
    best_ms = None
    for step in range(n_requests):
        if needs_best:  # the best valid action of each request's own mask, and its response time
            best_action, best_ms = sim.best(requests)
        measured = sim.measurements(requests) if reads_kind else None
        for block, agent, how in plays:
            if how == _ACTS_ORACLE:
                action[block] = best_action[block]
            elif how == _ACTS_BY_KIND:
                action[block] = agent.act(state[block], kinds[block], measured[block])
            else:
                action[block] = agent.act(state[block])
        breakdown = sim.serve(requests, action)
        total_ms = breakdown.total_ms
        reward = -total_ms / 1e3 * scale
        recorder(step, requests, state, action, breakdown, reward, best_ms)
        requests = sim.next_requests()
        next_state = sim.observe(requests)
        if reads_kind:
            kinds = sim.kinds(requests)
        for block, agent, how in plays:
            if how == _ACTS_BY_KIND:
                agent.learn(
                    state[block],
                    action[block],
                    reward[block],
                    next_state[block],
                    kinds[block],
                    total_ms[block],
                )
            elif how == _ACTS_BY_STATE:
                agent.learn(state[block], action[block], reward[block], next_state[block])
        state = next_state


@dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` returns."""

    #: response time of request ``t`` of replicate ``b``, ms, shape (B, n_requests); None unless recorded.
    latency_ms: np.ndarray | None
    #: the action taken, shape (B, n_requests); None unless recorded.
    action: np.ndarray | None
    #: mean response time of each replicate over all its requests, ms, shape (B,).
    mean_latency_ms: np.ndarray


def run_batch(
    system: System,
    agent: BatchAgent,
    n_requests: int,
    n_replicates: int,
    rng: np.random.Generator | int | None = None,
    *,
    reward_scale: float = 1.0,
    record: bool = True,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> BatchResult:
    """Play ``agent`` for ``n_requests`` requests in ``n_replicates`` replicates of ``system``: :func:`play_batch`
    with one block.

    The simulator and the agent get independent generators spawned from ``rng``. Example::

        system = build_system(paper())
        agent = BatchQLearning(discrete_state_masks(system), **PAPER_DEFAULTS)
        result = run_batch(system, agent, n_requests=20_000, n_replicates=1_000, rng=0, record=False)
        result.mean_latency_ms  # one number per replicate

    Args:
        system: from :func:`~orchlib.system.simulator.build_system` (Poisson or closed-loop arrivals; the grounded
            world too).
        agent: a batched agent built on ``discrete_state_masks(system, bandwidth_edges_mbps, edge_load_edges)``;
            with a device fleet, one that takes the request kinds (``kind_masks``).
        n_requests: requests per replicate, >= 1.
        n_replicates: ``B`` >= 1.
        rng: seed or generator.
        reward_scale: as ``OrchestrationEnv(reward_scale=...)``, > 0.
        record: keep every latency and action (memory grows with ``B * n_requests``); False keeps only
            each replicate's running mean, so memory stays bounded on long runs.
        bandwidth_edges_mbps, edge_load_edges: the discrete state's level edges.

    Raises:
        ValueError: bad sizes, or an agent built for another state space or other masks.
    """
    _check_sizes(n_requests, reward_scale)
    sim_rng, agent_rng = np.random.default_rng(rng).spawn(2)
    sim = BatchEnv(
        system,
        n_replicates,
        sim_rng,
        bandwidth_edges_mbps=bandwidth_edges_mbps,
        edge_load_edges=edge_load_edges,
    )
    _how_it_acts(agent, sim)  # refuse an agent built for other masks before resetting it
    b = sim.n_replicates
    agent.reset(b, agent_rng)
    latencies = np.empty((n_requests, b)) if record else None
    actions = np.empty((n_requests, b), dtype=np.min_scalar_type(system.n_actions - 1)) if record else None
    total = np.zeros(b)

    def keep(step: int, requests, states, action, breakdown, rewards, best_ms) -> None:
        latency_ms = breakdown.total_ms
        total[:] += latency_ms
        if record:
            latencies[step] = latency_ms
            actions[step] = action

    play_batch(sim, [(slice(0, b), agent)], n_requests, keep, reward_scale=reward_scale)
    return BatchResult(
        latency_ms=latencies.T if record else None,
        action=actions.T if record else None,
        mean_latency_ms=total / n_requests,
    )
