"""Hidden conditions that drift: pure, array-valued rules (no state, no I/O), numbered in docs/assumptions.md.

These are what a real orchestrator cannot observe directly (assumptions H1-H4): thermal throttling of end
devices, background load on phones, co-tenant jobs on the edge server, and the bandwidth *estimate* an
orchestrator has instead of the true rate. The simulator (:mod:`orchlib.system.simulator`) holds the state
and calls these functions; every function accepts scalars or arrays (of replicates, users or variants) and
broadcasts, so a vectorised engine can call the same rules.

Units: times in ms, rates in Mbit/s, heat in [0, 1] (0 = cold, 1 = the throttled steady state).
"""

from __future__ import annotations

import numba
import numpy as np


def _ufunc(signature: str):
    """A compiled ufunc of one signature (``numba.vectorize``); interpreted under ``NUMBA_DISABLE_JIT``, where
    numba cannot build one, NumPy's ``vectorize`` of the same function."""

    def wrap(function):
        if numba.config.DISABLE_JIT:
            return np.vectorize(function, otypes=[np.float64])
        return numba.vectorize([signature], cache=True)(function)

    return wrap


@_ufunc("float64(float64, float64, float64)")
def cooled_heat(heat, idle_ms, cool_tau_ms):
    """Heat after ``idle_ms`` of idleness: first-order decay ``heat * exp(-idle / tau_cool)`` (H1).

    A compiled ufunc: it broadcasts over arrays and the engine's kernels call it on scalars (one rule).
    """
    return heat * np.exp(-max(idle_ms, 0.0) / cool_tau_ms)


@_ufunc("float64(float64, float64, float64)")
def heated(heat, busy_ms, heat_tau_ms):
    """Heat after ``busy_ms`` of inference: first-order rise towards 1, ``1 - (1 - heat) exp(-busy / tau)`` (H1)."""
    return 1.0 - (1.0 - heat) * np.exp(-max(busy_ms, 0.0) / heat_tau_ms)


@_ufunc("float64(float64, float64)")
def thermal_slowdown(heat, max_slowdown):
    """Compute-time multiplier at a heat level: ``1 + (max_slowdown - 1) * heat`` (1 when cold) (H1)."""
    return 1.0 + (max_slowdown - 1.0) * heat


def on_off_switch_times_ms(
    rng: np.random.Generator, mean_off_ms: float, mean_on_ms: float, n_cycles: int, start_ms: float = 0.0
) -> np.ndarray:
    """Switching times of an alternating off/on process with exponential sojourns, starting *off* at ``start_ms``.

    Returns ``2 * n_cycles`` increasing times ``[on_0, off_0, on_1, off_1, ...]``: the process is on in
    ``[times[2k], times[2k+1])``. Off and on durations are drawn as pairs, so the stream of one process
    does not depend on how far it has been extended (H2, H3).
    """
    durations = rng.standard_exponential((n_cycles, 2)) * np.array([mean_off_ms, mean_on_ms])
    return start_ms + np.cumsum(durations.ravel())


@numba.njit(cache=True, inline="always")
def switches_until(switch_times_ms, n, t_ms):
    """How many of an on/off process's first ``n`` switch times are ``<= t_ms`` (binary search); the process is
    on at ``t_ms`` iff the count is odd (H2, H3). The one implementation of the on/off gate: the engine's
    kernels call it on scalars, :func:`is_on` and :func:`end_of_on_period` on arrays."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if t_ms < switch_times_ms[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, inline="always")
def on_period_end(switch_times_ms, n, t_ms):
    """``t_ms`` if the process is off then, else the end of the on period that holds ``t_ms`` (H3).

    Past the last known switch the end is not known yet: ``t_ms`` is returned, and the engine's caller extends
    the schedule and computes again (for an infinite ``t_ms`` the answer stays infinite)."""
    i = switches_until(switch_times_ms, n, t_ms)
    return switch_times_ms[i] if i % 2 == 1 and i < n else t_ms


@numba.njit(cache=True)
def _gate(switch_times_ms, t_ms, ends):
    """Per time: whether the process is on (``ends`` False) or :func:`on_period_end` (``ends`` True)."""
    n = switch_times_ms.size
    out = np.empty(t_ms.size)
    for i in range(t_ms.size):
        if ends:
            out[i] = on_period_end(switch_times_ms, n, t_ms[i])
        else:
            out[i] = switches_until(switch_times_ms, n, t_ms[i]) % 2
    return out


def is_on(switch_times_ms: np.ndarray, t_ms: np.ndarray | float) -> np.ndarray:
    """Whether an on/off process (switch times from :func:`on_off_switch_times_ms`) is on at ``t_ms``."""
    t = np.asarray(t_ms, dtype=float)
    return _gate(np.asarray(switch_times_ms, dtype=float), t.ravel(), False).reshape(t.shape) == 1


def end_of_on_period(switch_times_ms: np.ndarray, t_ms: np.ndarray | float) -> np.ndarray:
    """``t_ms`` if the process is off then, else the end of the on period that holds ``t_ms`` (H3)."""
    t = np.asarray(t_ms, dtype=float)
    return _gate(np.asarray(switch_times_ms, dtype=float), t.ravel(), True).reshape(t.shape)


def harmonic_mean_mbps(throughputs_mbps: np.ndarray, axis: int = -1) -> np.ndarray:
    """Harmonic mean of observed transfer throughputs, the estimator of rate-adaptation work (H4)."""
    x = np.asarray(throughputs_mbps, dtype=float)
    return x.shape[axis] / np.sum(1.0 / x, axis=axis)


class OnOffSchedule:
    """One on/off process, extended on demand from its own generator (so evaluation order cannot change it)."""

    def __init__(
        self, rng: np.random.Generator, mean_off_ms: float, mean_on_ms: float, block: int = 64
    ) -> None:
        self._rng = rng
        self._mean = (mean_off_ms, mean_on_ms)
        self._block = block
        self.switch_times_ms = on_off_switch_times_ms(rng, *self._mean, block)

    def covering(self, t_ms: float) -> np.ndarray:
        """The switch times, extended until they reach past ``t_ms``."""
        while self.switch_times_ms[-1] <= t_ms:
            more = on_off_switch_times_ms(
                self._rng, *self._mean, self._block, start_ms=float(self.switch_times_ms[-1])
            )
            self.switch_times_ms = np.concatenate((self.switch_times_ms, more))
        return self.switch_times_ms
