"""The simulator core: a multi-user end-edge-cloud system served request by request, in time order.

:func:`build_system` turns a :class:`~orchlib.system.scenario.Scenario` into a :class:`System` (arrays read from
the data files: profiles, variants, links). :class:`Simulator` holds the changing state (device, link and
server occupancy, the next arrival of every user) and serves one request at a time.

The model (each rule is numbered in ``docs/assumptions.md``, section "Latency model"):

* **end**: a user's device runs one inference at a time; a request waits for the device's previous ones.
* **edge**: the input (``input_bytes`` of the chosen variant) is sent over the *shared* access uplink. The
  uplink sends one upload at a time, first come first served (a request waits while earlier uploads finish:
  ``network_wait_ms``); transmission follows the link's rate over time exactly (``upload_ms``). Half the
  access RTT later it reaches the edge server, whose ``n_workers`` workers serve requests in decision order
  (FIFO); a request waits for the earliest free worker (``queue_ms``), runs (``compute_ms``), and its result
  (``result_bytes``) comes back over the downlink (``download_ms``, not shared: results are a few kB, sent
  at the rate the link has when the result is ready) plus half the RTT.
* **cloud**: as edge, then the edge forwards the input over the shared WAN uplink (FIFO, waits added to
  ``network_wait_ms``, transmission to ``upload_ms``); the cloud server has its own workers; the result
  returns over the WAN and the access downlink. Propagation is the access RTT plus the WAN RTT.
* **every tier**: the tier's fixed per-request protocol cost (``TierSpec.request_overhead_ms``,
  ``overhead_ms``; 0 unless measured, L11) is added once, after the result is back; it occupies neither a link
  nor a server, so it delays only the request itself.

``total_ms`` is the sum of the seven parts, and equals completion time minus request time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from orchlib.system import dynamics, latency, measurements, payloads
from orchlib.system.engine import (
    CLOUD,
    EDGE,
    END,
    EVALUATE_ALL,
    EVALUATE_BEST,
    EVALUATE_NONE,
    ROW_BEST,
    ROW_REQUEST,
    ROW_SERVED,
    ROW_SNAPSHOT,
    TOTAL_COLUMN,
    Engine,
    engine_compute_ms,
    replicate_generators,
)
from orchlib.system.profiles import (
    DataError,
    load_decode_profile,
    load_network_levels,
    load_payload_table,
    load_profile,
    load_trace,
    load_variants,
    resolve,
)
from orchlib.system.scenario import TIERS, LinkSpec, Scenario, paper


@dataclass(frozen=True, eq=False)
class System:
    """Everything fixed about a scenario, as arrays (variant order = ``variant_names``)."""

    scenario: Scenario
    variant_names: tuple[str, ...]
    #: ImageNet top-1 accuracy of each variant, percent (primary table, see data/README.md).
    top1_pct: np.ndarray
    #: bytes sent per request for each variant (its input tensor).
    input_bytes: np.ndarray
    #: bytes returned per request.
    result_bytes: np.ndarray
    #: median compute time, ms, shape (3 tiers, n_variants).
    median_ms: np.ndarray
    #: log-normal sigma of compute time, shape (3, n_variants); zero without jitter.
    sigma: np.ndarray
    access_up: latency.RateFunction
    access_down: latency.RateFunction
    wan_up: latency.RateFunction
    wan_down: latency.RateFunction
    access_rtt_ms: float
    wan_rtt_ms: float
    #: fixed per-request protocol cost of each tier (end, edge, cloud), ms (L11).
    overhead_ms: tuple[float, float, float]
    #: requirement classes (top-1 percent) and their cumulative probabilities.
    requirement_pct: np.ndarray
    requirement_cdf: np.ndarray
    #: action mask per requirement class, shape (n_classes, 3 * n_variants); action = tier * n_variants + variant.
    #: It combines the requirement with what each tier can run (for the end tier: ``scenario.end``'s device).
    masks: np.ndarray
    #: the data files this system was built from (their contents fingerprint cached results).
    data_files: tuple[Path, ...]
    #: end-device classes (profile names): the fleet's, or ``(scenario.end.profile,)`` without a fleet.
    device_classes: tuple[str, ...] = ()
    #: probability of each device class.
    device_probabilities: np.ndarray = None  # type: ignore[assignment]
    #: median compute time of each device class, ms, shape (n_device_classes, n_variants); inf = cannot run.
    device_median_ms: np.ndarray = None  # type: ignore[assignment]
    #: log-normal sigma per device class and variant (0 without jitter or where it cannot run).
    device_sigma: np.ndarray = None  # type: ignore[assignment]
    #: action mask per device class and requirement class, shape (n_device_classes, n_classes, n_actions).
    device_masks: np.ndarray = None  # type: ignore[assignment]
    #: log-normal sigma of each variant's payload bytes (0 for raw tensors: every request alike).
    payload_sigma: np.ndarray = None  # type: ignore[assignment]
    #: decoding cost on edge and cloud, ms per variant (already included in ``median_ms``; 0 for raw).
    decode_ms: np.ndarray = None  # type: ignore[assignment]

    @property
    def n_variants(self) -> int:
        return len(self.variant_names)

    @property
    def n_actions(self) -> int:
        return len(TIERS) * self.n_variants

    def decode_action(self, action: int) -> tuple[int, int]:
        """(tier index, variant index) of a flat action."""
        return divmod(int(action), self.n_variants)

    def encode_action(self, tier: int, variant: int) -> int:
        return int(tier) * self.n_variants + int(variant)

    def fingerprint(self) -> str:
        """SHA-256 of the scenario and of every data file it reads."""
        digest = hashlib.sha256(self.scenario.to_json().encode())
        for path in self.data_files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()


def _link_rates(spec: LinkSpec, what: str) -> tuple[latency.RateFunction, latency.RateFunction, list[Path]]:
    if spec.trace is None:
        if spec.changes:
            up = latency.trace_rate(np.array([0.0]), np.array([spec.uplink_mbps]), changes=spec.changes)
            down = latency.trace_rate(np.array([0.0]), np.array([spec.downlink_mbps]), changes=spec.changes)
            return up, down, []
        return latency.constant_rate(spec.uplink_mbps), latency.constant_rate(spec.downlink_mbps), []
    trace = load_trace(spec.trace)
    median = float(np.median(trace.mbps))
    up_scale, down_scale = (
        (spec.uplink_mbps / median, spec.downlink_mbps / median) if spec.trace_rescale else (1.0, 1.0)
    )
    try:
        up, down = (
            latency.trace_rate(
                trace.times_s, trace.mbps, offset_s=spec.trace_offset_s, scale=scale, changes=spec.changes
            )
            for scale in (up_scale, down_scale)
        )
    except ValueError as exc:
        raise DataError(f"{what}: trace {trace.path}: {exc}") from None
    return up, down, [trace.path]


def build_system(scenario: Scenario) -> System:
    """Read the files a scenario names and assemble its arrays.

    Raises:
        DataError: a file is missing or malformed, a profile lacks a variant, or an accuracy requirement
            cannot be met by any offered variant.
        ValueError: an unknown variant name in ``scenario.variant_subset``.
    """
    table = load_variants(scenario.variants)
    names = table.names
    if scenario.variant_subset is not None:
        unknown = [n for n in scenario.variant_subset if n not in names]
        if unknown:
            raise ValueError(
                f"Scenario.variant_subset: unknown variant(s) {unknown}; valid names: {list(names)}"
            )
        names = tuple(scenario.variant_subset)
    frame = table.frame.loc[list(names)]
    files = [table.path]
    medians, sigmas, runnable = [], [], []
    tier_specs = {
        "end": scenario.end,
        "edge": scenario.edge,
        "cloud": scenario.cloud_accelerator or scenario.cloud,
    }

    def profile_arrays(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Validate names against the whole table, but require rows only for the offered variants, so a
        # profile of a few variants (e.g. a quick profiler run) works with a matching variant_subset; a
        # profile that declares '# variants:' may omit the variants its device cannot run (masked out).
        profile = load_profile(name)
        unknown = sorted(set(profile.frame["model"]) - set(table.names))
        if unknown:
            raise DataError(
                f"{profile.path}: unknown variant name(s) {unknown}; valid names are those of {table.path}"
            )
        median, p10, p90, can_run = profile.available(names)
        sigma = np.zeros_like(median)
        if scenario.compute_jitter:
            sigma[can_run] = latency.lognormal_sigma(p10[can_run], p90[can_run])
        files.append(profile.path)
        return median, sigma, can_run

    for tier in TIERS:
        median, sigma, can_run = profile_arrays(tier_specs[tier].profile)
        medians.append(median)
        sigmas.append(sigma)
        runnable.append(can_run)
    access_up, access_down, trace_files = _link_rates(scenario.access, "Scenario.access")
    wan_up, wan_down, wan_files = _link_rates(scenario.wan, "Scenario.wan")
    if scenario.access.level or scenario.wan.level:
        files.append(resolve("levels", "network"))
        load_network_levels()  # validated here too, so a broken file fails at build time
    top1 = frame["top1_pct"].to_numpy(float)
    levels = np.array(scenario.accuracy.levels_pct)
    variant_ok = top1[None, :] >= levels[:, None]
    unmet = levels[~variant_ok.any(axis=1)]
    if unmet.size:
        raise DataError(
            f"Scenario.accuracy.levels_pct: requirement(s) {unmet.tolist()} % top-1 cannot be met by any offered "
            f"variant (best is {top1.max()} %); lower them or offer more variants"
        )
    input_bytes = frame["input_bytes"].to_numpy(float)
    payload_sigma = np.zeros(len(names))
    decode_ms = np.zeros(len(names))
    if scenario.payload.kind == "jpeg":
        input_bytes, payload_sigma, decode_ms, payload_files = _jpeg_payloads(scenario, frame)
        files.extend(payload_files)
        for tier in (EDGE, CLOUD):
            medians[tier] = medians[tier] + decode_ms
    classes = scenario.fleet.classes if scenario.fleet is not None else (scenario.end.profile,)
    probabilities = scenario.fleet.probabilities if scenario.fleet is not None else (1.0,)
    if scenario.fleet is None:
        device = [(medians[END], sigmas[END], runnable[END])]
    else:
        device = [profile_arrays(name) for name in classes]
    masks = np.concatenate([variant_ok & runnable[tier] for tier in range(len(TIERS))], axis=1)
    device_masks = np.repeat(masks[None], len(classes), axis=0)
    for c, (_, _, can_run) in enumerate(device):
        device_masks[c, :, : len(names)] = variant_ok & can_run
    for c, k in zip(*np.nonzero(~device_masks.any(axis=2)), strict=True):
        raise DataError(
            f"Scenario: device class {classes[c]!r} with requirement {levels[k]} % top-1 has no runnable variant "
            "on any tier; offer more variants or lower the requirement"
        )
    return System(
        scenario=scenario,
        variant_names=names,
        top1_pct=top1,
        input_bytes=input_bytes,
        result_bytes=frame["result_bytes"].to_numpy(float),
        median_ms=np.vstack(medians),
        sigma=np.vstack(sigmas),
        access_up=access_up,
        access_down=access_down,
        wan_up=wan_up,
        wan_down=wan_down,
        access_rtt_ms=scenario.access.rtt_ms,
        wan_rtt_ms=scenario.wan.rtt_ms,
        overhead_ms=tuple(tier_specs[tier].request_overhead_ms for tier in TIERS),
        requirement_pct=levels,
        requirement_cdf=np.cumsum(scenario.accuracy.probabilities),
        masks=masks,
        data_files=tuple(dict.fromkeys(files + trace_files + wan_files)),
        device_classes=tuple(classes),
        device_probabilities=np.array(probabilities),
        device_median_ms=np.vstack([d[0] for d in device]),
        device_sigma=np.vstack([d[1] for d in device]),
        device_masks=device_masks,
        payload_sigma=payload_sigma,
        decode_ms=decode_ms,
    )


def _jpeg_payloads(
    scenario: Scenario, frame: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Path]]:
    """Median bytes, log-normal sigma and decode ms of each variant's JPEG payload (P1-P3)."""
    payload = scenario.payload
    table = load_payload_table(payload.table)
    decode = load_decode_profile(payload.decode_profile)
    resolutions = frame["resolution"].to_numpy(int)
    out = []
    for what, source, columns in (
        ("payload table", table, ("median_bytes", "p10_bytes", "p90_bytes")),
        ("decode profile", decode, ("median_ms", "p10_ms", "p90_ms")),
    ):
        rows = source[source["quality"] == payload.quality].set_index("resolution")
        missing = sorted(set(resolutions.tolist()) - set(rows.index.tolist()))
        if missing:
            name = payload.table if what == "payload table" else payload.decode_profile
            raise DataError(
                f"Scenario.payload: {what} {name!r} has no row for quality {payload.quality} at resolution(s) "
                f"{missing}; available (resolution, quality): "
                f"{sorted(zip(source['resolution'].tolist(), source['quality'].tolist(), strict=True))}"
            )
        out.append(rows.loc[resolutions, list(columns)].to_numpy(float))
    sizes, decode_ms = out
    files = [resolve(payload.table, "payloads"), resolve(payload.decode_profile, "profiles")]
    return sizes[:, 0], payloads.jpeg_sigma(sizes[:, 1], sizes[:, 2]), decode_ms[:, 0], files


class Request(NamedTuple):
    """One inference request."""

    index: int
    user: int
    time_ms: float
    requirement_class: int
    requirement_pct: float
    #: standard-normal compute-noise draw per tier (end, edge, cloud): compute = median * exp(sigma * z).
    z: tuple[float, float, float]
    #: standard-normal draw of the payload size (JPEG payloads only): bytes = median * exp(sigma * payload_z).
    payload_z: float = 0.0


class Breakdown(NamedTuple):
    """Where a request's response time went, ms. ``total_ms`` is the sum of the seven parts."""

    network_wait_ms: float
    upload_ms: float
    propagation_ms: float
    queue_ms: float
    compute_ms: float
    download_ms: float
    #: the tier's fixed per-request protocol cost (L11).
    overhead_ms: float
    total_ms: float


class Snapshot(NamedTuple):
    """What the orchestrator can measure when a request arrives (see ``docs/assumptions.md``, L8 and H4)."""

    #: access-link rate, Mbit/s: the true current rate, or with ``Scenario.bandwidth_estimate`` the harmonic
    #: mean of the throughputs of the last completed uploads (the scenario's nominal uplink before any).
    access_mbps: float
    #: current WAN rate, Mbit/s.
    wan_mbps: float
    #: ms until the shared access uplink has sent the uploads already queued on it.
    access_backlog_ms: float
    #: ms until the requesting user's device has finished its queued inferences.
    device_backlog_ms: float
    #: requests assigned to the edge server and not yet finished.
    edge_in_system: int
    #: requests assigned to the cloud server and not yet finished.
    cloud_in_system: int
    #: the requesting user's device class (index into ``System.device_classes``); public (F1).
    device_class: int = 0
    #: mean response time of the user's last (up to 5) requests that had finished by now, ms (0: none yet).
    user_recent_latency_ms: float = 0.0
    #: the user's last finished on-device compute time divided by its profile median (1: none yet); a
    #: device-load tracker that sees thermal throttling and background load only through their effect.
    device_slowdown_estimate: float = 1.0


class Simulator:
    """The changing state of the system, advanced one request at a time: the one-replicate view of
    :class:`~orchlib.system.engine.Engine` (whose compiled kernels hold the rules).

    Use: ``req = sim.next_request()``; optionally ``sim.snapshot(req)`` and ``sim.evaluate(req)``;
    then exactly one ``sim.serve(req, action)`` (or ``sim.refuse(req)``, a failed request) before the next
    ``next_request()``.

    Args:
        system: from :func:`build_system`.
        rng: seed or generator for arrivals, requirements and compute noise (the engine's replicate generator;
            replicate ``i`` of a batch seeded with ``seed`` is ``Simulator(system,
            engine.replicate_generators(seed, n)[i])``).
        evaluate_ahead: draw the next request, its snapshot and its evaluation in the same compiled call as
            :meth:`serve` (same numbers, less overhead when every request is evaluated, as the env's oracle
            does): ``True`` or ``"all"`` evaluates every action (:meth:`evaluate`), ``"best"`` finds the best
            valid action only (:meth:`best`); scripted :meth:`make_request` is then refused.
        draw_ahead: draw the next request and its snapshot in the same compiled call as :meth:`serve` even
            without an evaluation (implied by ``evaluate_ahead``; the Gymnasium env's path); scripted
            :meth:`make_request` is then refused.
    """

    def __init__(
        self,
        system: System,
        rng: np.random.Generator | int | None = None,
        *,
        evaluate_ahead: bool | Literal["all", "best"] = False,
        draw_ahead: bool = False,
    ) -> None:
        self.system = system
        modes = {False: EVALUATE_NONE, True: EVALUATE_ALL, "all": EVALUATE_ALL, "best": EVALUATE_BEST}
        if not any(evaluate_ahead is k or (isinstance(k, str) and evaluate_ahead == k) for k in modes):
            raise ValueError(f"evaluate_ahead must be False, True, 'all' or 'best', got {evaluate_ahead!r}")
        #: evaluate when the request is drawn (one compiled call instead of two; for the oracle).
        self.evaluate_ahead = evaluate_ahead
        self._ahead = modes[evaluate_ahead]
        #: draw the next request in the serve call (one compiled call per request instead of two).
        self.draw_ahead = bool(draw_ahead) or self._ahead != EVALUATE_NONE
        self._requirement_pct = system.requirement_pct.tolist()
        self._n_classes = len(self._requirement_pct)
        self._n_actions = system.n_actions
        self._n_variants = system.n_variants
        self._estimated = system.scenario.bandwidth_estimate is not None  # H4: the rate is estimated
        self._action = np.zeros(1, dtype=np.int64)
        self.rng = np.random.default_rng(rng)
        self._engine = Engine(system, 1, [self.rng])  # schedules the first requests: no second reset here
        self._clear()

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Empty system at time 0; each user's first request is scheduled."""
        self.rng = np.random.default_rng(rng)
        self._engine.reset([self.rng])
        self._clear()

    def _clear(self) -> None:
        # with draw_ahead (or evaluate_ahead): the engine's step row after the last serve (the next request, its snapshot
        # and best action), as a list; None when the next request is not drawn yet
        self._row: list[float] | None = None
        self.n_served = 0
        #: requests failed by :meth:`refuse` (not served).
        self.n_failed = 0
        self._pending: Request | None = None
        self._last_time_ms = 0.0
        n_users = self.system.scenario.n_users
        #: each user's device class (the engine draws it; all 0 without a fleet).
        self.user_class = self._engine.user_class[0].tolist()
        system = self.system
        # what each device class's requests can run at all, shape (n_device_classes, n_actions): serving anything
        # else would hold its device or server for ever (an infinite compute time), so serve() refuses it
        self._runnable = np.concatenate(
            (
                np.isfinite(system.device_median_ms),
                np.broadcast_to(
                    np.isfinite(system.median_ms[1:]).ravel(),
                    (len(system.device_median_ms), 2 * self._n_variants),
                ),
            ),
            axis=1,
        )
        # the orchestrator's own measurements (H4, H5), the logs of orchlib.system.measurements as one replicate:
        # each user's last served requests, and (with a bandwidth estimate) the completed access uploads
        #: each user's recent served requests (H5): the snapshot's recent response time and device-load estimate.
        self.history = measurements.UserHistory(1, n_users)
        spec = self.system.scenario.bandwidth_estimate
        #: the completed access uploads (H4), with ``Scenario.bandwidth_estimate``; None without.
        self.uploads = (
            measurements.UploadLog(1, spec.window, self.system.scenario.access.uplink_mbps)
            if spec is not None
            else None
        )

    @property
    def _cotenant(self) -> dynamics.OnOffSchedule | None:
        """The edge's co-tenant schedule (H3; privileged, for the oracle and tests)."""
        return self._engine.cotenant[0]

    def next_request(self) -> Request:
        """Advance to the next request (in time order over all users) and return it."""
        if self._pending is not None:
            raise RuntimeError("serve() the current request before asking for the next one")
        engine = self._engine
        row = self._row
        if row is not None:  # serve() drew it already (evaluate_ahead): read from the step's row
            k = int(row[ROW_REQUEST + 2])
            request = Request(
                self.n_served + self.n_failed,
                int(row[ROW_REQUEST + 1]),
                row[ROW_REQUEST],
                k,
                self._requirement_pct[k],
                (row[ROW_REQUEST + 3], row[ROW_REQUEST + 4], row[ROW_REQUEST + 5]),
                row[ROW_REQUEST + 6],
            )
            self._pending = request
            return request
        engine.next_requests(self._ahead)
        k = int(engine.request_class[0])
        z = engine.request_z[0].tolist()
        request = Request(
            self.n_served + self.n_failed,
            int(engine.request_user[0]),
            float(engine.request_time_ms[0]),
            k,
            self._requirement_pct[k],
            (z[0], z[1], z[2]),
            float(engine.payload_z[0]) if engine.jpeg else 0.0,
        )
        self._pending = request
        return request

    def make_request(
        self,
        time_ms: float,
        user: int,
        requirement_class: int = 0,
        z: tuple[float, float, float] = (0.0, 0.0, 0.0),
        payload_z: float = 0.0,
    ) -> Request:
        """Make a scripted request the current one, bypassing the arrival process (for exact cases and what-ifs).

        Raises:
            ValueError: a time earlier than the last request's, an unknown user or requirement class.
        """
        if self._pending is not None:
            raise RuntimeError("serve() the current request before making another")
        if self.draw_ahead:
            raise RuntimeError(
                "make_request() needs a Simulator with evaluate_ahead=False and draw_ahead=False (with either, "
                "serve() draws the next request at once)"
            )
        if time_ms < self._last_time_ms:
            raise ValueError(f"time_ms must not go back in time: {time_ms} < {self._last_time_ms}")
        if not 0 <= user < self.system.scenario.n_users:
            raise ValueError(f"user must be in [0, {self.system.scenario.n_users}), got {user}")
        if not 0 <= requirement_class < self._n_classes:
            raise ValueError(f"requirement_class must be in [0, {self._n_classes}), got {requirement_class}")
        self._engine.set_requests(time_ms, user, requirement_class, z, payload_z)
        request = Request(
            self.n_served + self.n_failed,
            user,
            float(time_ms),
            requirement_class,
            self._requirement_pct[requirement_class],
            tuple(float(x) for x in z),
            float(payload_z),
        )
        self._pending = request
        self._last_time_ms = float(time_ms)
        return request

    def _check_current(self, request: Request, what: str) -> None:
        if request is not self._pending:
            raise RuntimeError(f"{what}() must be given the request returned by the last next_request()")

    def mask(self, request: Request) -> np.ndarray:
        """Actions valid for this request (bool, length n_actions): the variant meets its accuracy requirement
        and the tier can run it; on the end tier that depends on the user's device class."""
        if self.system.scenario.fleet is None:
            return self.system.masks[request.requirement_class]
        return self.system.device_masks[self.user_class[request.user], request.requirement_class]

    def snapshot(self, request: Request) -> Snapshot:
        """Measurements available to an orchestrator at the (current) request's arrival (L8, H4, H5)."""
        if request is not self._pending:
            self._check_current(request, "snapshot")
        row = self._row
        row = self._engine.snapshot()[0].tolist() if row is None else row[ROW_SNAPSHOT : ROW_SNAPSHOT + 6]
        t, user = request.time_ms, request.user
        access_mbps = self.uploads.estimate_one(0, t) if self._estimated else row[0]
        slowdown, recent_ms = self.history.read_one(0, user, t)
        # positional (in Snapshot's field order): keywords cost more, and this runs on every request
        return Snapshot(
            access_mbps,
            row[1],
            row[2],
            row[3],
            int(row[4]),
            int(row[5]),
            self.user_class[user],
            recent_ms,
            slowdown,
        )

    def access_estimate_mbps(self, t_ms: float) -> float:
        """The access-link rate the orchestrator sees at ``t_ms`` (the true rate without H4)."""
        if self.uploads is None:
            return self.system.access_up.rate_mbps(t_ms / 1e3)
        return self.uploads.estimate_one(0, t_ms)

    def hidden_state(self, request: Request) -> dict[str, float]:
        """The conditions a real orchestrator cannot observe, at the request's arrival (for the oracle and tests).

        Keys: ``true_access_mbps``, ``device_heat`` (0..1), ``background_on``, ``cotenant_on``.
        """
        engine, t, user = self._engine, request.time_ms, request.user
        device_free = float(engine.device_free_ms[0, user])
        start = max(t, device_free)
        thermal = self.system.scenario.thermal
        heat = (
            float(
                dynamics.cooled_heat(
                    engine.heat[0, user], start - device_free, thermal.cool_time_constant_s * 1e3
                )
            )
            if thermal is not None
            else 0.0
        )
        background, cotenant = engine.background[0][user], engine.cotenant[0]
        return {
            "true_access_mbps": self.system.access_up.rate_mbps(t / 1e3),
            "device_heat": heat,
            "background_on": bool(
                background is not None and dynamics.is_on(background.covering(start), start)
            ),
            "cotenant_on": bool(cotenant is not None and dynamics.is_on(cotenant.covering(t), t)),
        }

    def _record(
        self, request: Request, action: int, parts: list[float], served: list[float], payload_bits: float
    ) -> None:
        """The orchestrator's measurements of a served request: the upload's throughput (H4), the response
        time and the on-device slowdown (H5), from what the engine recorded when it served it (``served``)."""
        link_start, upload, slowdown = served
        # off the device: an access upload finished (logged where the estimate reads it)
        if self.uploads is not None and action >= self._n_variants and upload > 0:
            self.uploads.record_one(0, link_start + upload, payload_bits / (upload * 1e3))
        total = parts[TOTAL_COLUMN]
        self.history.record_one(0, request.user, request.time_ms + total, slowdown, total)

    def compute_ms(self, request: Request) -> np.ndarray:
        """This request's compute time for every (tier, variant), shape (3, n_variants)."""
        return engine_compute_ms(self._engine, request.user, np.asarray(request.z, dtype=float))

    def evaluate(self, request: Request) -> np.ndarray:
        """Response time (ms) every action would give the current request, without serving it.

        Shape (n_actions,), action = tier * n_variants + variant. This is the clairvoyant oracle's view: the
        engine's rules for every action in one compiled call (the same kernel :meth:`serve` uses). Actions a
        tier or device cannot run give ``inf``.
        """
        self._check_current(request, "evaluate")
        return self._engine.evaluate()[0].copy()

    def best(self, request: Request) -> tuple[int, float]:
        """The clairvoyant best action among the current request's valid ones (:meth:`mask`) and its response
        time (ms): ``argmin`` of :meth:`evaluate` over them (the first on ties), computed without evaluating the
        actions a lower bound rules out (``Engine.best``)."""
        if request is not self._pending:
            self._check_current(request, "best")
        row = self._row
        if row is not None and self._ahead == EVALUATE_BEST:  # found in the serve call that drew the request
            return int(row[ROW_BEST]), row[ROW_BEST + 1]
        action, ms = self._engine.best()
        return int(action[0]), float(ms[0])

    def can_run(self, request: Request, action: int) -> bool:
        """Whether the request's tier (on the end tier: its user's device class) can run ``action`` at all,
        whatever the accuracy requirement: the actions :meth:`serve` accepts (the others :meth:`refuse` fails)."""
        return bool(self._runnable[self.user_class[request.user], action])

    def refusal_reason(self, request: Request, action: int) -> str:
        """Why ``action`` cannot run for ``request`` (for the failed request's ``info``; "" if it can)."""
        if self.can_run(request, action):
            return ""
        tier, variant = divmod(int(action), self._n_variants)
        where = (
            f"user {request.user}'s device ({self.system.device_classes[self.user_class[request.user]]})"
            if tier == END
            else f"the {TIERS[tier]} server"
        )
        return (
            f"action {action} ({TIERS[tier]}, {self.system.variant_names[variant]}) cannot run: {where} has no "
            "profile for that variant"
        )

    def refuse(self, request: Request) -> None:
        """Fail the current request instead of serving it (an action it cannot run, E8): nothing is occupied or
        measured, and the request counts in :attr:`n_failed`, not :attr:`n_served`. In a closed loop the user's
        next request comes a think time after this one's arrival (:meth:`Engine.refuse`).

        Raises:
            RuntimeError: ``request`` is not the current one.
        """
        if request is not self._pending:
            self._check_current(request, "refuse")
        self._engine.refuse()
        self._row = None  # the next request is drawn by next_request(), not by a serve call
        self.n_failed += 1
        self._pending = None

    def serve(self, request: Request, action: int) -> Breakdown:
        """Serve the current request with ``action`` (tier x variant), update the state, return its breakdown.

        Raises:
            RuntimeError: ``request`` is not the current one.
            ValueError: ``action`` out of range, or one the request's tier or device cannot run (the accuracy
                mask is the caller's to enforce; :meth:`refuse` fails a request instead).
        """
        if request is not self._pending:
            self._check_current(request, "serve")
        n_actions = self._n_actions
        if not 0 <= action < n_actions:
            raise ValueError(f"action must be in [0, {n_actions}), got {action}")
        if not self._runnable[self.user_class[request.user], action]:
            raise ValueError(
                f"{self.refusal_reason(request, action)} for this request; the runnable actions are those whose "
                "evaluate() is finite (refuse() fails a request instead)"
            )
        self._action[0] = action
        # the payload this request sends (the engine's request arrays hold the next request after the call)
        n_variants = self._n_variants
        on_device = action < n_variants
        payload_bits = 0.0 if on_device else float(self._engine.request_payload_bits[0, action % n_variants])
        engine = self._engine
        if not self.draw_ahead:
            parts = engine.serve(self._action)[0].tolist()
            served = engine.served[0].tolist()
        else:  # the next request is drawn (and evaluated) in the same call; everything in one row
            engine.serve(self._action, then_next=True, evaluate=self._ahead)
            self._row = row = engine.step_row[0].tolist()
            parts, served = row[:ROW_SERVED], row[ROW_SERVED : ROW_SERVED + 3]
        self._record(request, action, parts, served, payload_bits)
        self.n_served += 1
        self._pending = None
        return Breakdown(*parts)


def simulate(
    system: System, policy: Iterable[int] | None = None, rng: np.random.Generator | int | None = None
) -> list[tuple[Request, Breakdown]]:
    """Serve ``system.scenario.n_requests`` requests with a fixed sequence of actions (for tests and tables).

    Args:
        policy: one action per request, or None for the clairvoyant per-request optimum.
    """
    sim = Simulator(system, rng)
    actions = iter(policy) if policy is not None else None
    out = []
    for _ in range(system.scenario.n_requests):
        request = sim.next_request()
        if actions is None:
            totals = np.where(sim.mask(request), sim.evaluate(request), np.inf)
            action = int(np.argmin(totals))
        else:
            action = next(actions)
        out.append((request, sim.serve(request, action)))
    return out


def compile_engine() -> float:
    """Compile (or load from numba's cache) every kernel of the engine, for every entry point: the per-request
    step, the batched serve and draw, the snapshot, the evaluation of every action and the pruned best; and the
    measurement logs' (:func:`orchlib.system.measurements.compile_measurements`).

    The kernels' argument types are the same for every scenario (the engine normalises them), so one small world
    compiles what every world uses. Returns the seconds it took (about a second when everything was cached).
    """
    start = time.perf_counter()
    system = build_system(paper().replace(n_users=2, n_requests=4))
    engine = Engine(system, 2, replicate_generators(0, 2))
    for evaluate in (EVALUATE_NONE, EVALUATE_ALL, EVALUATE_BEST):
        engine.next_requests(evaluate)
        engine.snapshot()
        engine.evaluate()
        engine.serve(engine.best()[0].copy())
        engine.next_requests(evaluate)
        engine.serve(engine.best()[0].copy(), then_next=True, evaluate=evaluate)
    measurements.compile_measurements()
    return time.perf_counter() - start
