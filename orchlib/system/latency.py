"""The latency model's formulas: pure functions of plain numbers and arrays, no state, no I/O.

Units: time in milliseconds (``_ms``) except where a name says seconds (``_s``); bandwidth in Mbit/s
(``_mbps``, 1 Mbit = 10**6 bit); sizes in bytes.

A link's rate over time is a :class:`RateFunction`: piecewise constant, made of a non-periodic *prefix* (for
scripted changes) followed by a periodic *tail* (a replayed trace, or one constant segment for a steady
level). A transfer that starts at ``t`` and carries ``b`` bits ends at ``C^-1(C(t) + b)``, where ``C`` is the
cumulative number of bits the link can carry from time 0; ``C`` is piecewise linear, so both ``C`` and its
inverse are exact linear interpolations between breakpoints.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

import numpy as np

BITS_PER_BYTE = 8
#: z-score of the 90th percentile of a standard normal; maps a (p10, p90) spread to a log-normal sigma.
Z90 = 1.2815515655446004


def _cumulative_bits(times_s: np.ndarray, mbps: np.ndarray) -> np.ndarray:
    """Bits a link carries from ``times_s[0]`` to each breakpoint, for rates constant between breakpoints."""
    return np.concatenate(([0.0], np.cumsum(np.diff(times_s) * mbps[:-1] * 1e6)))


@dataclass(frozen=True, eq=False)
class RateFunction:
    """A link's rate in Mbit/s as a function of time in seconds (see module docstring).

    Build it with :func:`constant_rate` or :func:`trace_rate`; do not fill the arrays by hand.
    """

    #: breakpoints of the non-periodic prefix, starting at 0 s (length >= 1; a single 0 means "no prefix").
    prefix_times_s: np.ndarray
    #: cumulative bits carried at each prefix breakpoint.
    prefix_bits: np.ndarray
    #: breakpoints of one period of the tail, from 0 to the period length in seconds.
    tail_times_s: np.ndarray
    #: rate on each tail segment, Mbit/s (length = len(tail_times_s) - 1).
    tail_mbps: np.ndarray
    #: cumulative bits carried at each tail breakpoint, from the start of a period.
    tail_bits: np.ndarray
    #: the rate when the link is steady (no prefix, one tail segment): enables an exact scalar shortcut.
    constant_mbps: float | None = None

    def __post_init__(self) -> None:
        # Python lists for the scalar path: bisect on a list is several times faster than numpy on one value.
        object.__setattr__(self, "_prefix_t", self.prefix_times_s.tolist())
        object.__setattr__(self, "_prefix_b", self.prefix_bits.tolist())
        object.__setattr__(self, "_tail_t", self.tail_times_s.tolist())
        object.__setattr__(self, "_tail_b", self.tail_bits.tolist())

    @property
    def prefix_end_s(self) -> float:
        return float(self.prefix_times_s[-1])

    @property
    def period_s(self) -> float:
        return float(self.tail_times_s[-1])

    def rate_mbps(self, t_s: float) -> float:
        """The link rate at time ``t_s`` (seconds)."""
        if self.constant_mbps is not None:
            return self.constant_mbps
        if t_s < self.prefix_end_s:
            i = bisect.bisect_right(self._prefix_t, t_s) - 1
            return (
                (self._prefix_b[i + 1] - self._prefix_b[i])
                / (self._prefix_t[i + 1] - self._prefix_t[i])
                / 1e6
            )
        r = (t_s - self.prefix_end_s) % self.period_s
        i = min(bisect.bisect_right(self._tail_t, r) - 1, len(self.tail_mbps) - 1)
        return float(self.tail_mbps[i])

    def bits_until(self, t_s: float) -> float:
        """Cumulative bits the link can carry from time 0 to ``t_s`` (scalar)."""
        pt, pb = self._prefix_t, self._prefix_b
        if len(pt) > 1 and t_s <= pt[-1]:
            i = min(bisect.bisect_right(pt, t_s) - 1, len(pt) - 2)
            return pb[i] + (pb[i + 1] - pb[i]) * (t_s - pt[i]) / (pt[i + 1] - pt[i])
        tt, tb = self._tail_t, self._tail_b
        n, r = divmod(t_s - pt[-1], tt[-1])
        i = min(bisect.bisect_right(tt, r) - 1, len(tt) - 2)
        return pb[-1] + n * tb[-1] + tb[i] + (tb[i + 1] - tb[i]) * (r - tt[i]) / (tt[i + 1] - tt[i])

    @property
    def has_outages(self) -> bool:
        """True if the rate is zero somewhere (an outage: transfers wait until the link comes back)."""
        return bool(np.any(np.diff(self.prefix_bits) == 0) or np.any(self.tail_mbps == 0))

    def time_of_bits(self, bits: float) -> float:
        """The earliest time (s) at which the cumulative carried bits reach ``bits`` (inverse of :meth:`bits_until`).

        Where the rate is zero (an outage) the cumulative bits are flat; the earliest time is taken, so a
        transfer that completes exactly when an outage starts ends then, and one that needs more bits waits
        for the end of the outage.
        """
        pt, pb = self._prefix_t, self._prefix_b
        if bits <= pb[-1] and len(pt) > 1:
            i = min(bisect.bisect_right(pb, bits) - 1, len(pb) - 2)
            if pb[i] == bits:  # on a breakpoint (or a flat run of them): the first time it is reached
                return pt[bisect.bisect_left(pb, bits)]
            return pt[i] + (pt[i + 1] - pt[i]) * (bits - pb[i]) / (pb[i + 1] - pb[i])
        tt, tb = self._tail_t, self._tail_b
        n, rem = divmod(bits - pb[-1], tb[-1])
        if rem == 0 and n > 0 and tb[-2] == tb[-1]:  # the period ends in an outage: reached before it
            n, rem = n - 1, tb[-1]
        i = min(bisect.bisect_right(tb, rem) - 1, len(tb) - 2)
        if tb[i] == rem:
            return pt[-1] + n * tt[-1] + tt[bisect.bisect_left(tb, rem)]
        return pt[-1] + n * tt[-1] + tt[i] + (tt[i + 1] - tt[i]) * (rem - tb[i]) / (tb[i + 1] - tb[i])


def constant_rate(mbps: float) -> RateFunction:
    """A steady link of ``mbps`` Mbit/s (must be finite and > 0)."""
    if not (math.isfinite(mbps) and mbps > 0):
        raise ValueError(f"bandwidth must be a finite number > 0 Mbit/s, got {mbps!r}")
    times = np.array([0.0, 1.0])
    rates = np.array([mbps, mbps])
    return RateFunction(
        prefix_times_s=np.array([0.0]),
        prefix_bits=np.array([0.0]),
        tail_times_s=times,
        tail_mbps=rates[:1],
        tail_bits=_cumulative_bits(times, rates),
        constant_mbps=float(mbps),
    )


def trace_rate(
    times_s: np.ndarray,
    mbps: np.ndarray,
    *,
    offset_s: float = 0.0,
    scale: float = 1.0,
    changes: tuple[tuple[float, float], ...] = (),
) -> RateFunction:
    """A link that replays a throughput trace, looping it, optionally with scripted multiplicative changes.

    Args:
        times_s: strictly increasing sample times (s); sample ``i`` holds from ``times_s[i]`` to the next one.
            The last sample holds for the median sampling interval, then the trace loops.
        mbps: throughput samples, Mbit/s, each finite and >= 0 (0 = an outage), at least one > 0.
        offset_s: start replaying the trace at this point of it (s), so users or seeds can see different parts.
        scale: multiply every sample by this factor (> 0).
        changes: ``(time_s, factor)`` pairs, time increasing: from ``time_s`` on, the trace is multiplied by
            ``factor`` (> 0) (an abrupt bandwidth drop is a factor < 1). The last factor holds forever.

    Raises:
        ValueError: on non-increasing times, non-positive or non-finite rates, factors or scale.
    """
    times_s = np.asarray(times_s, dtype=float)
    mbps = np.asarray(mbps, dtype=float) * scale
    if times_s.ndim != 1 or times_s.shape != mbps.shape or times_s.size < 1:
        raise ValueError("trace times and rates must be 1-D arrays of the same non-zero length")
    if np.any(np.diff(times_s) <= 0):
        raise ValueError("trace times must be strictly increasing")
    if not (np.all(np.isfinite(mbps)) and np.all(mbps >= 0)) or not scale > 0:
        raise ValueError("trace rates (times scale) must be finite and >= 0 Mbit/s, and scale > 0")
    if not np.any(mbps > 0):
        raise ValueError("every trace rate is 0 Mbit/s: a link needs at least one sample > 0")
    last_interval = float(np.median(np.diff(times_s))) if times_s.size > 1 else 1.0
    period_times = np.append(times_s - times_s[0], times_s[-1] - times_s[0] + last_interval)
    period = float(period_times[-1])
    offset = float(offset_s) % period
    # Rotate one period so that time 0 of the link is `offset` into the trace.
    starts = period_times[:-1]
    order_times = np.concatenate(
        (starts[starts >= offset] - offset, starts[starts < offset] + period - offset)
    )
    order_rates = np.concatenate((mbps[starts >= offset], mbps[starts < offset]))
    if order_times[0] > 0:  # the offset falls inside a sample: that sample holds until the next breakpoint
        i = int(np.searchsorted(starts, offset, side="right") - 1)
        order_times = np.concatenate(([0.0], order_times))
        order_rates = np.concatenate(([mbps[i]], order_rates))
        if order_times[-1] >= period:
            order_times, order_rates = order_times[:-1], order_rates[:-1]
    tail_times = np.append(order_times, period)
    tail_rates = order_rates

    change_times = [float(t) for t, _ in changes]
    factors = [float(f) for _, f in changes]
    if any(not (math.isfinite(f) and f > 0) for f in factors):
        raise ValueError(f"bandwidth change factors must be finite and > 0, got {factors}")
    if any(b <= a for a, b in itertools.pairwise(change_times)) or any(t < 0 for t in change_times):
        raise ValueError(f"bandwidth change times must be >= 0 and strictly increasing, got {change_times}")
    if not changes:
        return RateFunction(
            prefix_times_s=np.array([0.0]),
            prefix_bits=np.array([0.0]),
            tail_times_s=tail_times,
            tail_mbps=tail_rates,
            tail_bits=_cumulative_bits(tail_times, np.append(tail_rates, tail_rates[-1])),
        )
    # Unroll the periodic trace over whole periods up to the last change, applying the factors; after that
    # the trace loops again, multiplied by the last factor. The tail restarts at a period boundary.
    n_periods = int(change_times[-1] // period) + 1
    unrolled_t = np.concatenate([tail_times[:-1] + k * period for k in range(n_periods)])
    unrolled_r = np.tile(tail_rates, n_periods)
    cuts = np.union1d(unrolled_t, change_times)
    cuts = cuts[cuts < n_periods * period]
    seg = np.searchsorted(unrolled_t, cuts, side="right") - 1
    factor_at = np.ones_like(cuts)
    for t, f in changes:
        factor_at[cuts >= t] = f
    prefix_rates = unrolled_r[seg] * factor_at
    prefix_times = np.append(cuts, n_periods * period)
    return RateFunction(
        prefix_times_s=prefix_times,
        prefix_bits=_cumulative_bits(prefix_times, np.append(prefix_rates, prefix_rates[-1])),
        tail_times_s=tail_times,
        tail_mbps=tail_rates * factors[-1],
        tail_bits=_cumulative_bits(tail_times, np.append(tail_rates, tail_rates[-1]) * factors[-1]),
    )


def transfer_time_ms(rate: RateFunction, n_bytes: float, start_ms: float) -> float:
    """Time to send ``n_bytes`` over a link whose rate follows ``rate``, starting at ``start_ms``.

    Exact for piecewise-constant rates: the transfer speeds up or slows down as the rate changes under it.
    """
    bits = n_bytes * BITS_PER_BYTE
    if rate.constant_mbps is not None:
        return bits / (rate.constant_mbps * 1e3)  # Mbit/s = 1e3 bit/ms
    start_s = start_ms / 1e3
    return (rate.time_of_bits(rate.bits_until(start_s) + bits) - start_s) * 1e3


def lognormal_sigma(p10_ms: np.ndarray, p90_ms: np.ndarray) -> np.ndarray:
    """Log-normal shape parameter whose 10th and 90th percentiles have the ratio ``p90/p10``.

    A profile's spread becomes the compute-time noise: ``compute = median * exp(sigma * z)``, ``z ~ N(0, 1)``.
    ``p10 == p90`` gives ``sigma = 0`` (deterministic compute time).
    """
    return np.log(np.asarray(p90_ms, dtype=float) / np.asarray(p10_ms, dtype=float)) / (2 * Z90)


def compute_time_ms(median_ms: np.ndarray, sigma: np.ndarray, z: float | np.ndarray) -> np.ndarray:
    """Compute time for noise draw(s) ``z``: ``median * exp(sigma * z)`` (equals the median when z = 0)."""
    return median_ms * np.exp(sigma * z)


def bits_until_array(rate: RateFunction, t_s: np.ndarray) -> np.ndarray:
    """Vector form of :meth:`RateFunction.bits_until`."""
    t_s = np.asarray(t_s, dtype=float)
    if rate.constant_mbps is not None:
        return t_s * rate.constant_mbps * 1e6
    end = rate.prefix_end_s
    in_prefix = np.interp(np.minimum(t_s, end), rate.prefix_times_s, rate.prefix_bits)
    n, r = np.divmod(np.maximum(t_s - end, 0.0), rate.period_s)
    tail = n * rate.tail_bits[-1] + np.interp(r, rate.tail_times_s, rate.tail_bits)
    return in_prefix + tail


def time_of_bits_array(rate: RateFunction, bits: np.ndarray) -> np.ndarray:
    """Vector form of :meth:`RateFunction.time_of_bits`."""
    bits = np.asarray(bits, dtype=float)
    if rate.constant_mbps is not None:
        return bits / (rate.constant_mbps * 1e6)
    if rate.has_outages:  # np.interp is ambiguous on flat runs; the scalar rule takes the earliest time
        return np.array([rate.time_of_bits(float(b)) for b in bits.ravel()]).reshape(bits.shape)
    prefix_total = rate.prefix_bits[-1]
    in_prefix = (
        np.interp(np.minimum(bits, prefix_total), rate.prefix_bits, rate.prefix_times_s)
        if prefix_total > 0
        else 0.0
    )
    n, rem = np.divmod(np.maximum(bits - prefix_total, 0.0), rate.tail_bits[-1])
    tail = n * rate.period_s + np.interp(rem, rate.tail_bits, rate.tail_times_s)
    return in_prefix + np.where(bits > prefix_total, tail, 0.0)


def transfer_time_ms_array(rate: RateFunction, n_bytes: np.ndarray, start_ms: np.ndarray) -> np.ndarray:
    """Vector form of :func:`transfer_time_ms` (broadcasts ``n_bytes`` against ``start_ms``)."""
    bits = np.asarray(n_bytes, dtype=float) * BITS_PER_BYTE
    if rate.constant_mbps is not None:
        return np.broadcast_to(
            bits / (rate.constant_mbps * 1e3), np.broadcast_shapes(bits.shape, np.shape(start_ms))
        ).copy()
    start_s = np.asarray(start_ms, dtype=float) / 1e3
    return (time_of_bits_array(rate, bits_until_array(rate, start_s) + bits) - start_s) * 1e3


def rate_mbps_array(rate: RateFunction, t_s: np.ndarray) -> np.ndarray:
    """Vector form of :meth:`RateFunction.rate_mbps`."""
    t_s = np.asarray(t_s, dtype=float)
    if rate.constant_mbps is not None:
        return np.full(t_s.shape, rate.constant_mbps)
    if rate.prefix_end_s > 0:
        return np.array([rate.rate_mbps(float(t)) for t in t_s.ravel()]).reshape(t_s.shape)
    r = np.mod(t_s, rate.period_s)
    i = np.minimum(np.searchsorted(rate.tail_times_s, r, side="right") - 1, rate.tail_mbps.size - 1)
    return rate.tail_mbps[i]


def result_time_ms(
    rate: RateFunction, n_bytes: float | np.ndarray, start_ms: float | np.ndarray
) -> float | np.ndarray:
    """Time to return a result of ``n_bytes`` at the rate the link has when it starts.

    Results are a few kB, sent in well under one trace sample, so the rate is taken as constant during the
    transfer (unlike uploads, which are integrated exactly by :func:`transfer_time_ms`). During an outage
    (rate 0) the result is integrated exactly: it waits until the link comes back.
    """
    bits = (
        np.asarray(n_bytes, dtype=float) * BITS_PER_BYTE
        if isinstance(n_bytes, np.ndarray)
        else n_bytes * BITS_PER_BYTE
    )
    if isinstance(start_ms, np.ndarray):
        rates = rate_mbps_array(rate, start_ms / 1e3)
        if np.all(rates > 0):
            return bits / (rates * 1e3)
        # during an outage the result waits for the link to come back: integrate exactly there
        exact = transfer_time_ms_array(rate, np.broadcast_to(bits / BITS_PER_BYTE, start_ms.shape), start_ms)
        with np.errstate(divide="ignore"):
            return np.where(rates > 0, bits / (rates * 1e3), exact)
    current = rate.rate_mbps(start_ms / 1e3)
    if current > 0:
        return bits / (current * 1e3)
    return transfer_time_ms(rate, float(bits) / BITS_PER_BYTE, start_ms)
