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

import itertools
import math
from dataclasses import dataclass

import numba
import numpy as np

BITS_PER_BYTE = 8
#: z-score of the 90th percentile of a standard normal; maps a (p10, p90) spread to a log-normal sigma.
Z90 = 1.2815515655446004


def _cumulative_bits(times_s: np.ndarray, mbps: np.ndarray) -> np.ndarray:
    """Bits a link carries from ``times_s[0]`` to each breakpoint, for rates constant between breakpoints."""
    return np.concatenate(([0.0], np.cumsum(np.diff(times_s) * mbps[:-1] * 1e6)))


# ---------------------------------------------------------------------------------------------------------
# The trace integration, written once: these compiled kernels are what RateFunction's methods, the vector
# forms below and the simulation engine (orchlib.system.engine) all call. A link is its packed ``table``
# (rows PREFIX_T, PREFIX_B, TAIL_T, TAIL_B, TAIL_MBPS; the prefix rows hold ``n_prefix`` entries, the tail rows
# ``n_tail`` breakpoints and ``n_tail - 1`` rates; the rest is padding) and ``constant_mbps`` (0 when the rate
# changes). Breakpoint lookup is ``bisect_right - 1``, clipped to the last segment, as in the original
# scalar code.

#: rows of a packed link table (see :attr:`RateFunction.table`).
PREFIX_T, PREFIX_B, TAIL_T, TAIL_B, TAIL_MBPS = range(5)


@numba.njit(cache=True, inline="always")
def _bisect_right(table: np.ndarray, row: int, n: int, x: float) -> int:
    """``bisect.bisect_right(table[row, :n], x)``: how many of the row's first ``n`` entries are <= ``x``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if x < table[row, mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, inline="always")
def _bisect_left(table: np.ndarray, row: int, n: int, x: float) -> int:
    """``bisect.bisect_left(table[row, :n], x)``: how many of the row's first ``n`` entries are < ``x``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if table[row, mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, inline="always")
def _segment(table: np.ndarray, row: int, n: int, x: float, hint: int) -> int:
    """``min(bisect_right(table[row, :n], x) - 1, n - 2)``: the segment of ``x`` among the row's ``n``
    breakpoints. ``hint`` (or -1) is a guess, checked first: consecutive lookups of a transfer usually fall in
    the same segment, and the check gives exactly the index the search would."""
    if 0 <= hint < n - 1 and table[row, hint] <= x < table[row, hint + 1]:
        return hint
    return min(_bisect_right(table, row, n, x) - 1, n - 2)


@numba.njit(cache=True, inline="always")
def _divmod(x: float, period: float) -> tuple[float, float]:
    """Python's ``divmod(x, period)``; inside the first period it is exactly ``(0.0, x)``, returned without the
    (comparatively slow) floor division and modulo."""
    if 0.0 <= x < period:
        return 0.0, x
    return x // period, x % period


@numba.njit(cache=True, inline="always")
def _cumulative(table: np.ndarray, n_prefix: int, n_tail: int, x: float, x_rows: int, hint: int):
    """The piecewise-linear map between time (s) and cumulative bits, and its segment.

    ``x_rows == PREFIX_T``: ``x`` is a time and the result the bits carried until then (``C(x)``);
    ``x_rows == PREFIX_B``: ``x`` is a bit count and the result the time it is reached (``C^-1(x)``).
    Returns ``(value, segment)``; the segment (of the tail, or ``-2 - i`` for prefix segment ``i``) is a hint
    for the next lookup.
    """
    y_rows = PREFIX_B if x_rows == PREFIX_T else PREFIX_T
    x_tail, y_tail = x_rows + 2, y_rows + 2  # TAIL_T / TAIL_B rows follow PREFIX_T / PREFIX_B
    x_end = table[x_rows, n_prefix - 1]
    if n_prefix > 1 and x <= x_end:
        i = _segment(table, x_rows, n_prefix, x, -2 - hint)
        y0, x0 = table[y_rows, i], table[x_rows, i]
        # on a breakpoint (or a flat run of them, an outage): the earliest time
        if x_rows == PREFIX_B and x0 == x:
            return table[y_rows, _bisect_left(table, x_rows, n_prefix, x)], -2 - i
        return y0 + (table[y_rows, i + 1] - y0) * (x - x0) / (table[x_rows, i + 1] - x0), -2 - i
    # whole periods since the prefix ended, and the position in the current one
    n, r = _divmod(x - x_end, table[x_tail, n_tail - 1])
    if x_rows == PREFIX_B and r == 0 and n > 0 and table[x_tail, n_tail - 2] == table[x_tail, n_tail - 1]:
        # the period ends in an outage: the bits were reached before it
        n, r = n - 1, table[x_tail, n_tail - 1]
    i = _segment(table, x_tail, n_tail, r, hint)
    y0, x0 = table[y_tail, i], table[x_tail, i]
    # on a breakpoint (or a flat run of them, an outage): the earliest time
    if x_rows == PREFIX_B and x0 == r:
        first = _bisect_left(table, x_tail, n_tail, r)
        return table[y_rows, n_prefix - 1] + n * table[y_tail, n_tail - 1] + table[y_tail, first], i
    dy = (table[y_tail, i + 1] - y0) * (r - x0) / (table[x_tail, i + 1] - x0)
    # added in this order (prefix total, whole periods, segment start, part segment) as the original code
    return table[y_rows, n_prefix - 1] + n * table[y_tail, n_tail - 1] + y0 + dy, i


@numba.njit(cache=True, inline="always")
def link_bits_until(table: np.ndarray, n_prefix: int, n_tail: int, t_s: float) -> float:
    """Cumulative bits the link can carry from time 0 to ``t_s`` (s)."""
    return _cumulative(table, n_prefix, n_tail, t_s, PREFIX_T, -1)[0]


@numba.njit(cache=True, inline="always")
def link_time_of_bits(table: np.ndarray, n_prefix: int, n_tail: int, bits: float) -> float:
    """The time (s) at which the cumulative carried bits reach ``bits`` (inverse of :func:`link_bits_until`)."""
    return _cumulative(table, n_prefix, n_tail, bits, PREFIX_B, -1)[0]


@numba.njit(cache=True)
def link_transfer_ms(
    table: np.ndarray, n_prefix: int, n_tail: int, constant_mbps: float, bits: float, start_ms: float
) -> float:
    """Time (ms) to send ``bits`` starting at ``start_ms``: ``C^-1(C(t) + b) - t`` (module docstring)."""
    if constant_mbps > 0:
        return bits / (constant_mbps * 1e3)  # Mbit/s = 1e3 bit/ms
    start_s = start_ms / 1e3
    carried, segment = _cumulative(table, n_prefix, n_tail, start_s, PREFIX_T, -1)
    end_s = _cumulative(table, n_prefix, n_tail, carried + bits, PREFIX_B, segment)[0]
    return (end_s - start_s) * 1e3


@numba.njit(cache=True, inline="always")
def link_rate_mbps(table: np.ndarray, n_prefix: int, n_tail: int, constant_mbps: float, t_s: float) -> float:
    """The link's rate (Mbit/s) at time ``t_s`` (s)."""
    if constant_mbps > 0:
        return constant_mbps
    prefix_end = table[PREFIX_T, n_prefix - 1]
    if t_s < prefix_end:
        i = _bisect_right(table, PREFIX_T, n_prefix, t_s) - 1
        return (
            (table[PREFIX_B, i + 1] - table[PREFIX_B, i])
            / (table[PREFIX_T, i + 1] - table[PREFIX_T, i])
            / 1e6
        )
    r = (t_s - prefix_end) % table[TAIL_T, n_tail - 1]
    return table[TAIL_MBPS, min(_bisect_right(table, TAIL_T, n_tail, r) - 1, n_tail - 2)]


@numba.njit(cache=True)
def _link_map(table, n_prefix, n_tail, constant_mbps, what, x, y):
    """Elementwise over flat arrays: 0 bits_until(x), 1 time_of_bits(x), 2 transfer_ms(x bits, y start), 3 rate."""
    out = np.empty(x.size)
    for k in range(x.size):
        if what == 0:
            out[k] = link_bits_until(table, n_prefix, n_tail, x[k])
        elif what == 1:
            out[k] = link_time_of_bits(table, n_prefix, n_tail, x[k])
        elif what == 2:
            out[k] = link_transfer_ms(table, n_prefix, n_tail, constant_mbps, x[k], y[k])
        else:
            out[k] = link_rate_mbps(table, n_prefix, n_tail, constant_mbps, x[k])
    return out


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
        n_prefix, n_tail = self.prefix_times_s.size, self.tail_times_s.size
        table = np.zeros((5, max(n_prefix, n_tail)))
        table[PREFIX_T, :n_prefix], table[PREFIX_B, :n_prefix] = self.prefix_times_s, self.prefix_bits
        table[TAIL_T, :n_tail], table[TAIL_B, :n_tail] = self.tail_times_s, self.tail_bits
        table[TAIL_MBPS, : n_tail - 1] = self.tail_mbps
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "n_prefix", n_prefix)
        object.__setattr__(self, "n_tail", n_tail)
        object.__setattr__(self, "_constant", float(self.constant_mbps or 0.0))

    @property
    def prefix_end_s(self) -> float:
        return float(self.prefix_times_s[-1])

    @property
    def period_s(self) -> float:
        return float(self.tail_times_s[-1])

    def packed(self) -> tuple[np.ndarray, int, int, float]:
        """``(table, n_prefix, n_tail, constant_mbps or 0)``: the arguments of the ``link_*`` kernels."""
        return self.table, self.n_prefix, self.n_tail, self._constant

    def rate_mbps(self, t_s: float) -> float:
        """The link rate at time ``t_s`` (seconds)."""
        return float(link_rate_mbps(*self.packed(), float(t_s)))

    def bits_until(self, t_s: float) -> float:
        """Cumulative bits the link can carry from time 0 to ``t_s`` (scalar)."""
        return float(link_bits_until(self.table, self.n_prefix, self.n_tail, float(t_s)))

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
        return float(link_time_of_bits(self.table, self.n_prefix, self.n_tail, float(bits)))

    def _map(self, what: int, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        shape = x.shape if y is None else np.broadcast_shapes(x.shape, np.shape(y))
        flat_x = np.ascontiguousarray(np.broadcast_to(x, shape)).ravel()
        flat_y = (
            flat_x
            if y is None
            else np.ascontiguousarray(np.broadcast_to(np.asarray(y, float), shape)).ravel()
        )
        return _link_map(*self.packed(), what, flat_x, flat_y).reshape(shape)


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
    return float(link_transfer_ms(*rate.packed(), float(n_bytes) * BITS_PER_BYTE, float(start_ms)))


def lognormal_sigma(p10_ms: np.ndarray, p90_ms: np.ndarray) -> np.ndarray:
    """Log-normal shape parameter whose 10th and 90th percentiles have the ratio ``p90/p10``.

    A profile's spread becomes the compute-time noise: ``compute = median * exp(sigma * z)``, ``z ~ N(0, 1)``.
    ``p10 == p90`` gives ``sigma = 0`` (deterministic compute time).
    """
    return np.log(np.asarray(p90_ms, dtype=float) / np.asarray(p10_ms, dtype=float)) / (2 * Z90)


def bits_until_array(rate: RateFunction, t_s: np.ndarray) -> np.ndarray:
    """Vector form of :meth:`RateFunction.bits_until`."""
    return rate._map(0, t_s)


def time_of_bits_array(rate: RateFunction, bits: np.ndarray) -> np.ndarray:
    """Vector form of :meth:`RateFunction.time_of_bits`."""
    return rate._map(1, bits)


def transfer_time_ms_array(rate: RateFunction, n_bytes: np.ndarray, start_ms: np.ndarray) -> np.ndarray:
    """Vector form of :func:`transfer_time_ms` (broadcasts ``n_bytes`` against ``start_ms``)."""
    return rate._map(2, np.asarray(n_bytes, dtype=float) * BITS_PER_BYTE, start_ms)


def rate_mbps_array(rate: RateFunction, t_s: np.ndarray) -> np.ndarray:
    """Vector form of :meth:`RateFunction.rate_mbps`."""
    return rate._map(3, t_s)
