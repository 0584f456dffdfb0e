"""The ``B``-replicate view of the env's discrete observation and masks, over the system's batched view.

:class:`BatchEnv` is :class:`orchlib.system.batch.BatchSimulator` (``B`` replicates of one system served in
lockstep) with the discrete state of :class:`~orchlib.envs.orchestration.OrchestrationEnv` on top: it encodes
the raw measurements the simulator gives (bandwidth estimate, edge load, uplink backlog, device-slowdown
estimate, device class, requirement class) with :meth:`~orchlib.envs.orchestration.DiscreteState.index` of
:func:`~orchlib.envs.orchestration.discrete_state`, the one definition the per-request env and the testbed
use, and gives every state's mask (``state_masks``), what the batched agents
(:mod:`orchlib.agents.batched`) are built on. :func:`discrete_state_shape` and :func:`discrete_state_masks` give
the same for a system without building a simulator. It is not a Gymnasium env: the batched loop that plays agents
on it is :func:`orchlib.study.batch.play_batch`. The loop is the env's ``accuracy_mode="mask"`` (reward without
penalty), ``oracle`` as asked.

The grounded state's bandwidth estimate (H4) and device-load level (H5) read the simulator's logs of the
orchestrator's own measurements (:mod:`orchlib.system.measurements`, the logs the per-request simulator keeps too);
the user history is kept only where the state reads it (a world with hidden device load): in ``ideal`` the
device-load component has one level.
"""

from __future__ import annotations

import numpy as np

from orchlib.envs.orchestration import (
    DEFAULT_BANDWIDTH_EDGES_MBPS,
    DEFAULT_DEVICE_LOAD_EDGES,
    DEFAULT_EDGE_LOAD_EDGES,
    discrete_state,
)
from orchlib.system.batch import BatchRequests, BatchSimulator
from orchlib.system.simulator import System

__all__ = ["BatchEnv", "discrete_state_masks", "discrete_state_shape"]


def discrete_state_shape(
    system: System,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> tuple[int, ...]:
    """Sizes of the discrete state's components, as :attr:`OrchestrationEnv.state_shape`
    (:func:`orchlib.envs.orchestration.discrete_state`, the one definition)."""
    return discrete_state(system, bandwidth_edges_mbps, edge_load_edges).shape


def discrete_state_masks(
    system: System,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> np.ndarray:
    """The action mask of each discrete state, shape (n_states, n_actions), as ``OrchestrationEnv.state_mask``
    (:meth:`orchlib.envs.orchestration.DiscreteState.masks`: a function of the state)."""
    return discrete_state(system, bandwidth_edges_mbps, edge_load_edges).masks(system)


class BatchEnv(BatchSimulator):
    """``B`` replicates of one system (:class:`~orchlib.system.batch.BatchSimulator`) observed through the env's
    discrete state.

    Use: ``req = sim.next_requests()``; ``sim.observe(req)`` (and optionally ``sim.measurements(req)``,
    ``sim.evaluate(req)``); then exactly one ``sim.serve(req, actions)`` before the next ``next_requests()``.

    Args:
        system: from :func:`~orchlib.system.simulator.build_system`.
        n_replicates: ``B``, an integer >= 1.
        rng: seed, ``SeedSequence`` or generator; replicate ``b`` draws from
            ``replicate_generators(rng, B)[b]``.
        bandwidth_edges_mbps, edge_load_edges, device_load_edges: level edges of the discrete state
            (default: the environment's defaults); strictly increasing and positive.
        keep_history: keep each user's served requests (the H5 record behind ``device_slowdown_estimate``).
            None (default): only where the discrete state reads it, a world with hidden device load; elsewhere
            (``ideal``) its device-load level has one value, and skipping the record leaves every state,
            measurement and latency unchanged (``tests/test_batch.py``).

    Raises:
        ValueError: ``n_replicates`` < 1, bad level edges or a bad ``keep_history``.
    """

    def __init__(
        self,
        system: System,
        n_replicates: int,
        rng: np.random.Generator | np.random.SeedSequence | int | None = None,
        *,
        bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
        edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
        device_load_edges: tuple[float, ...] = DEFAULT_DEVICE_LOAD_EDGES,
        keep_history: bool | None = None,
    ) -> None:
        for name, edges in (
            ("bandwidth_edges_mbps", bandwidth_edges_mbps),
            ("edge_load_edges", edge_load_edges),
        ):
            if len(edges) == 0:
                raise ValueError(f"{name} must be strictly increasing positive numbers, got {edges!r}")
        #: the discrete state's definition, the env's (:func:`orchlib.envs.orchestration.discrete_state`).
        self.state = discrete_state(
            system, tuple(bandwidth_edges_mbps), tuple(edge_load_edges), tuple(device_load_edges)
        )
        self.bandwidth_edges_mbps = np.array(self.state.bandwidth_edges_mbps, dtype=float)
        self.edge_load_edges = np.array(self.state.edge_load_edges, dtype=np.int64)
        self.state_shape = self.state.shape
        self.n_states = self.state.n_states
        #: the action mask of each discrete state, shape (n_states, n_actions): what batched agents are built on
        #: (the state encodes the device class and the requirement class, so it agrees with ``kind_masks``).
        self.state_masks = self.state.masks(system)
        # Which of the state's components vary in this world: the device-load level (shape[3]) reads the history,
        # the device class (shape[4]) a gather; a single-level component is 0 (DiscreteState.index).
        self._reads_device_load = self.state.shape[3] > 1
        self._reads_device_class = self.state.shape[4] > 1
        if keep_history is not None and not isinstance(keep_history, bool):
            raise ValueError(f"keep_history must be True, False or None, got {keep_history!r}")
        super().__init__(
            system,
            n_replicates,
            rng,
            keep_history=self._reads_device_load if keep_history is None else keep_history,
        )

    def observe(self, requests: BatchRequests) -> np.ndarray:
        """Discrete state of each replicate at its request, as ``OrchestrationEnv._observe``; shape (B,).

        :meth:`orchlib.envs.orchestration.DiscreteState.index` of the replicate's measurements.
        """
        self._check_current(requests, "observe")
        measured = self.measurements(requests)
        # Components with a single level are 0 whatever is passed: skip reading them (the history may not be kept).
        return self.state.index(
            measured[:, 0],
            measured[:, 4],
            measured[:, 2],
            self.device_slowdown_estimate(requests) if self._reads_device_load else 1.0,
            self.device_class(requests) if self._reads_device_class else 0,
            requests.requirement_class,
        )
