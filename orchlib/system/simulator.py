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

``total_ms`` is the sum of the six parts, and equals completion time minus request time.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from orchlib.system import dynamics, latency, payloads
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
from orchlib.system.scenario import TIERS, LinkSpec, Scenario

END, EDGE, CLOUD = 0, 1, 2
#: requests drawn per block of random numbers (the stream is the same whatever the block size).
_BLOCK = 1024


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
    """Where a request's response time went, ms. ``total_ms`` is the sum of the six parts."""

    network_wait_ms: float
    upload_ms: float
    propagation_ms: float
    queue_ms: float
    compute_ms: float
    download_ms: float
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
    """The changing state of the system, advanced one request at a time.

    Use: ``req = sim.next_request()``; optionally ``sim.snapshot(req)`` and ``sim.evaluate(req)``;
    then exactly one ``sim.serve(req, action)`` before the next ``next_request()``.

    Args:
        system: from :func:`build_system`.
        rng: seed or generator for arrivals, requirements and compute noise.
    """

    def __init__(self, system: System, rng: np.random.Generator | int | None = None) -> None:
        self.system = system
        s = system.scenario
        self._poisson = s.arrivals.process == "poisson"
        self._mean_gap_ms = 1e3 / s.arrivals.rate_per_s if self._poisson else s.arrivals.think_time_ms
        self._half_access_rtt = system.access_rtt_ms / 2
        self._half_wan_rtt = system.wan_rtt_ms / 2
        self._result_bytes = system.result_bytes
        # unique payload sizes, so an evaluation computes one transfer per size rather than per variant
        self._payloads, self._payload_index = np.unique(system.input_bytes, return_inverse=True)
        self._payload_list = self._payloads.tolist()
        self._wan_upload_ms = latency.transfer_time_ms_array(
            system.wan_up, system.input_bytes, np.zeros(system.n_variants)
        )
        self._cdf = system.requirement_cdf.tolist()
        self._median = system.median_ms.tolist()
        self._sigma = system.sigma.tolist()
        self._grounded = bool(s.grounded_features)
        self._jpeg = s.payload.kind == "jpeg"
        # per unique payload (one per resolution), the log-normal sigma of its size
        self._payload_sigma = np.zeros_like(self._payloads)
        self._payload_sigma[self._payload_index] = system.payload_sigma
        self.reset(rng)

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Empty system at time 0; each user's first request is scheduled."""
        self.rng = np.random.default_rng(rng)
        n_users = self.system.scenario.n_users
        self._exp_pos = self._draw_pos = _BLOCK
        self._exp: list[float] = []
        self._uni: list[float] = []
        self._norm: list[list[float]] = []
        self.n_served = 0
        self.device_free_ms = [0.0] * n_users
        self.access_free_ms = 0.0
        self.wan_free_ms = 0.0
        self.edge_workers_ms = [0.0] * self.system.scenario.edge.n_workers
        self.cloud_workers_ms = [0.0] * self.system.scenario.cloud.n_workers
        self._edge_done: list[float] = []  # min-heap of completion times of requests assigned to the edge
        self._cloud_done: list[float] = []
        self._arrivals: list[tuple[float, int]] = []  # min-heap of (next request time, user)
        for user in range(n_users):
            heapq.heappush(self._arrivals, (self._gap_ms(), user))
        self._pending: Request | None = None
        self._last_time_ms = 0.0
        s = self.system.scenario
        #: each user's device class; without a fleet every user has class 0 and no random number is drawn.
        self.user_class = [0] * n_users
        self._heat = [0.0] * n_users  # thermal state of each device when its last inference ended (H1)
        self._background: list[dynamics.OnOffSchedule | None] = [None] * n_users
        self._cotenant: dynamics.OnOffSchedule | None = None
        self._payload_z: list[float] = []
        self._payload_pos = _BLOCK
        self._upload_done_ms: list[float] = []  # completion times of access uploads (FIFO, so increasing)
        self._upload_mbps: list[float] = []  # their observed throughputs
        self._history: list[list[tuple[float, float, float]]] = [[] for _ in range(n_users)]
        if self._grounded:
            # The world's own streams are spawned, so the arrival and noise stream stays that of the ideal
            # world, and each hidden process has its own generator (evaluation order cannot change it).
            try:
                spawned = self.rng.spawn(3 + n_users)
            except TypeError:  # a generator without a seed sequence
                spawned = [np.random.default_rng(x) for x in self.rng.integers(2**63, size=3 + n_users)]
            fleet_rng, self._payload_rng, cotenant_rng, *user_rngs = spawned
            if s.fleet is not None:
                self.user_class = fleet_rng.choice(
                    len(s.fleet.classes), size=n_users, p=self.system.device_probabilities
                ).tolist()
            if s.background is not None:
                for user in range(n_users):
                    if self.system.device_classes[self.user_class[user]] in s.background.applies_to:
                        self._background[user] = dynamics.OnOffSchedule(
                            user_rngs[user], s.background.mean_off_s * 1e3, s.background.mean_on_s * 1e3
                        )
            if s.cotenant is not None:
                self._cotenant = dynamics.OnOffSchedule(
                    cotenant_rng, s.cotenant.mean_off_s * 1e3, s.cotenant.mean_on_s * 1e3
                )

    # -- randomness, drawn in blocks for speed (two buffers, refilled from the one generator in a fixed order)
    def _gap_ms(self) -> float:
        """An exponential inter-arrival (poisson) or think time (closed loop), ms."""
        if self._exp_pos >= _BLOCK:
            self._exp = self.rng.standard_exponential(_BLOCK).tolist()
            self._exp_pos = 0
        self._exp_pos += 1
        return self._exp[self._exp_pos - 1] * self._mean_gap_ms

    def _request_draws(self) -> tuple[float, list[float]]:
        """A uniform (requirement class) and three standard normals (compute noise per tier)."""
        if self._draw_pos >= _BLOCK:
            self._uni = self.rng.random(_BLOCK).tolist()
            self._norm = self.rng.standard_normal((_BLOCK, 3)).tolist()
            self._draw_pos = 0
        self._draw_pos += 1
        return self._uni[self._draw_pos - 1], self._norm[self._draw_pos - 1]

    def next_request(self) -> Request:
        """Advance to the next request (in time order over all users) and return it."""
        if self._pending is not None:
            raise RuntimeError("serve() the current request before asking for the next one")
        time_ms, user = heapq.heappop(self._arrivals)
        if self._poisson:
            heapq.heappush(self._arrivals, (time_ms + self._gap_ms(), user))
        u, z = self._request_draws()
        k, cdf = 0, self._cdf
        while k < len(cdf) - 1 and u >= cdf[k]:
            k += 1
        request = Request(
            self.n_served,
            user,
            time_ms,
            k,
            float(self.system.requirement_pct[k]),
            (z[0], z[1], z[2]),
            self._next_payload_z() if self._jpeg else 0.0,
        )
        self._pending = request
        return request

    def _next_payload_z(self) -> float:
        if self._payload_pos >= _BLOCK:
            self._payload_z = self._payload_rng.standard_normal(_BLOCK).tolist()
            self._payload_pos = 0
        self._payload_pos += 1
        return self._payload_z[self._payload_pos - 1]

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
        if time_ms < self._last_time_ms:
            raise ValueError(f"time_ms must not go back in time: {time_ms} < {self._last_time_ms}")
        if not 0 <= user < self.system.scenario.n_users:
            raise ValueError(f"user must be in [0, {self.system.scenario.n_users}), got {user}")
        if not 0 <= requirement_class < len(self._cdf):
            raise ValueError(f"requirement_class must be in [0, {len(self._cdf)}), got {requirement_class}")
        request = Request(
            self.n_served,
            user,
            float(time_ms),
            requirement_class,
            float(self.system.requirement_pct[requirement_class]),
            z,
            float(payload_z),
        )
        self._pending = request
        self._last_time_ms = float(time_ms)
        return request

    def mask(self, request: Request) -> np.ndarray:
        """Actions valid for this request (bool, length n_actions): the variant meets its accuracy requirement
        and the tier can run it; on the end tier that depends on the user's device class."""
        if self.system.scenario.fleet is None:
            return self.system.masks[request.requirement_class]
        return self.system.device_masks[self.user_class[request.user], request.requirement_class]

    def snapshot(self, request: Request) -> Snapshot:
        """Measurements available to an orchestrator at the request's arrival."""
        t = request.time_ms
        for heap in (self._edge_done, self._cloud_done):
            while heap and heap[0] <= t:
                heapq.heappop(heap)
        user = request.user
        finished = [entry for entry in self._history[user][-16:] if entry[0] <= t]
        recent = [entry[1] for entry in finished[-5:]]
        slowdowns = [entry[2] for entry in finished if entry[2] > 0]
        return Snapshot(
            access_mbps=self.access_estimate_mbps(t),
            wan_mbps=self.system.wan_up.rate_mbps(t / 1e3),
            access_backlog_ms=max(0.0, self.access_free_ms - t),
            device_backlog_ms=max(0.0, self.device_free_ms[user] - t),
            edge_in_system=len(self._edge_done),
            cloud_in_system=len(self._cloud_done),
            device_class=self.user_class[user],
            user_recent_latency_ms=sum(recent) / len(recent) if recent else 0.0,
            device_slowdown_estimate=slowdowns[-1] if slowdowns else 1.0,
        )

    def access_estimate_mbps(self, t_ms: float) -> float:
        """The access-link rate the orchestrator sees at ``t_ms`` (the true rate without H4)."""
        spec = self.system.scenario.bandwidth_estimate
        if spec is None:
            return self.system.access_up.rate_mbps(t_ms / 1e3)
        j = bisect.bisect_right(self._upload_done_ms, t_ms)
        if j == 0:
            return float(self.system.scenario.access.uplink_mbps)
        return float(dynamics.harmonic_mean_mbps(np.array(self._upload_mbps[max(0, j - spec.window) : j])))

    def hidden_state(self, request: Request) -> dict[str, float]:
        """The conditions a real orchestrator cannot observe, at the request's arrival (for the oracle and tests).

        Keys: ``true_access_mbps``, ``device_heat`` (0..1), ``background_on``, ``cotenant_on``.
        """
        t = request.time_ms
        start = max(t, self.device_free_ms[request.user])
        schedule = self._background[request.user]
        return {
            "true_access_mbps": self.system.access_up.rate_mbps(t / 1e3),
            "device_heat": float(self._heat_at(request.user, start)),
            "background_on": bool(schedule is not None and dynamics.is_on(schedule.covering(start), start)),
            "cotenant_on": bool(self._cotenant is not None and dynamics.is_on(self._cotenant.covering(t), t)),
        }

    # -- hidden conditions (H1-H3), the same rules for evaluate() and serve() ------------------------------
    def _heat_at(self, user: int, start_ms: float) -> float:
        thermal = self.system.scenario.thermal
        if thermal is None:
            return 0.0
        idle = start_ms - self.device_free_ms[user]
        return float(dynamics.cooled_heat(self._heat[user], idle, thermal.cool_time_constant_s * 1e3))

    def _device_factor(self, user: int, start_ms: float) -> float:
        """Compute-time multiplier on the user's device for an inference starting at ``start_ms`` (H1, H2)."""
        s = self.system.scenario
        factor = 1.0
        if s.thermal is not None:
            factor *= float(dynamics.thermal_slowdown(self._heat_at(user, start_ms), s.thermal.max_slowdown))
        schedule = self._background[user]
        if schedule is not None and dynamics.is_on(schedule.covering(start_ms), start_ms):
            factor *= s.background.slowdown
        return factor

    def _edge_starts(self, arrive_ms: np.ndarray | float, workers: list[float]) -> np.ndarray:
        """Earliest start on each edge worker for arrivals ``arrive_ms`` (workers occupied by co-tenants wait, H3)."""
        occupied = self.system.scenario.cotenant.n_workers_occupied
        starts = []
        for w, free in enumerate(workers):
            start = np.maximum(arrive_ms, free)
            if w < occupied:
                start = dynamics.end_of_on_period(self._cotenant.covering(float(np.max(start))), start)
            starts.append(start)
        return np.asarray(starts, dtype=float)

    def _payload_sizes(self, request: Request) -> np.ndarray:
        """Bytes of each unique payload (one per resolution) for this request."""
        if not self._jpeg:
            return self._payloads
        return payloads.payload_bytes(self._payloads, self._payload_sigma, request.payload_z)

    def compute_ms(self, request: Request) -> np.ndarray:
        """This request's compute time for every (tier, variant), shape (3, n_variants)."""
        z = np.asarray(request.z)[:, None]
        return latency.compute_time_ms(self.system.median_ms, self.system.sigma, z)

    def evaluate(self, request: Request) -> np.ndarray:
        """Response time (ms) every action would give this request in the current state, without serving it.

        Shape (n_actions,), action = tier * n_variants + variant. This is the clairvoyant oracle's view; it
        follows exactly the rules of :meth:`serve` (a test checks that they agree). Actions a tier or device
        cannot run give ``inf``.
        """
        with np.errstate(invalid="ignore"):  # inf compute times of variants a tier cannot run
            return self._evaluate(request)

    def _evaluate(self, request: Request) -> np.ndarray:
        sys = self.system
        t = request.time_ms
        compute = self.compute_ms(request)
        if self._grounded:
            user = request.user
            c = self.user_class[user]
            start_end = max(t, self.device_free_ms[user])
            compute[END] = latency.compute_time_ms(
                sys.device_median_ms[c], sys.device_sigma[c], request.z[END]
            ) * self._device_factor(user, start_end)
        end = max(0.0, self.device_free_ms[request.user] - t) + compute[END]
        link_start = max(t, self.access_free_ms)
        sizes = self._payload_sizes(request).tolist() if self._jpeg else self._payload_list
        upload = np.array([latency.transfer_time_ms(sys.access_up, b, link_start) for b in sizes])
        at_edge = link_start + upload[self._payload_index] + self._half_access_rtt
        if self._cotenant is not None:
            edge_start = self._edge_starts(at_edge, self.edge_workers_ms).min(axis=0)
        else:
            edge_start = np.maximum(at_edge, min(self.edge_workers_ms))
        done_edge = edge_start + compute[EDGE]
        edge = (
            done_edge
            + latency.result_time_ms(sys.access_down, self._result_bytes, done_edge)
            + self._half_access_rtt
            - t
        )
        wan_start = np.maximum(at_edge, self.wan_free_ms)
        if self._jpeg:
            wan_upload = latency.transfer_time_ms_array(
                sys.wan_up, np.asarray(sizes)[self._payload_index], wan_start
            )
        elif sys.wan_up.constant_mbps is not None:
            wan_upload = self._wan_upload_ms
        else:
            wan_upload = latency.transfer_time_ms_array(sys.wan_up, sys.input_bytes, wan_start)
        at_cloud = wan_start + wan_upload + self._half_wan_rtt
        done_cloud = np.maximum(at_cloud, min(self.cloud_workers_ms)) + compute[CLOUD]
        at_edge_back = (
            done_cloud
            + latency.result_time_ms(sys.wan_down, self._result_bytes, done_cloud)
            + self._half_wan_rtt
        )
        cloud = (
            at_edge_back
            + latency.result_time_ms(sys.access_down, self._result_bytes, at_edge_back)
            + self._half_access_rtt
            - t
        )
        return np.concatenate((end, edge, cloud))

    def serve(self, request: Request, action: int) -> Breakdown:
        """Serve the current request with ``action`` (tier x variant), update the state, return its breakdown.

        Raises:
            RuntimeError: ``request`` is not the current one.
            ValueError: ``action`` out of range (the accuracy mask is the caller's to enforce).
        """
        if request is not self._pending:
            raise RuntimeError("serve() must be given the request returned by the last next_request()")
        sys = self.system
        if not 0 <= action < sys.n_actions:
            raise ValueError(f"action must be in [0, {sys.n_actions}), got {action}")
        tier, v = divmod(int(action), sys.n_variants)
        t = request.time_ms
        z = request.z[tier]
        user = request.user
        slowdown_seen = 0.0  # observed / profiled on-device compute time (0: not an on-device request)
        if tier == END and self._grounded:
            c = self.user_class[user]
            start = max(t, self.device_free_ms[user])
            base = float(sys.device_median_ms[c, v] * np.exp(sys.device_sigma[c, v] * z))
            heat = self._heat_at(user, start)
            compute = base * self._device_factor(user, start)
            if sys.scenario.thermal is not None:
                self._heat[user] = float(
                    dynamics.heated(heat, compute, sys.scenario.thermal.heat_time_constant_s * 1e3)
                )
            slowdown_seen = compute / float(sys.device_median_ms[c, v])
        else:
            compute = (
                float(sys.median_ms[tier, v] * np.exp(sys.sigma[tier, v] * z))
                if z
                else float(sys.median_ms[tier, v])
            )
        if tier == END:
            start = max(t, self.device_free_ms[user])
            done = start + compute
            self.device_free_ms[user] = done
            parts = (0.0, 0.0, 0.0, start - t, compute, 0.0)
            if slowdown_seen == 0.0:
                slowdown_seen = compute / float(sys.median_ms[END, v])
        else:
            if self._jpeg:
                payload = float(self._payload_sizes(request)[self._payload_index[v]])
            else:
                payload = float(sys.input_bytes[v])
            result = float(sys.result_bytes[v])
            link_start = max(t, self.access_free_ms)
            upload = latency.transfer_time_ms(sys.access_up, payload, link_start)
            self.access_free_ms = link_start + upload
            if upload > 0:
                self._upload_done_ms.append(link_start + upload)
                self._upload_mbps.append(payload * latency.BITS_PER_BYTE / (upload * 1e3))
            at_edge = link_start + upload + self._half_access_rtt
            wait, propagation = link_start - t, 2 * self._half_access_rtt
            if tier == EDGE:
                arrive, workers, done_heap = at_edge, self.edge_workers_ms, self._edge_done
            else:
                wan_start = max(at_edge, self.wan_free_ms)
                wan_upload = latency.transfer_time_ms(sys.wan_up, payload, wan_start)
                self.wan_free_ms = wan_start + wan_upload
                wait += wan_start - at_edge
                upload += wan_upload
                propagation += 2 * self._half_wan_rtt
                arrive, workers, done_heap = (
                    wan_start + wan_upload + self._half_wan_rtt,
                    self.cloud_workers_ms,
                    self._cloud_done,
                )
            if tier == EDGE and self._cotenant is not None:
                starts = self._edge_starts(arrive, workers)
                w = int(np.argmin(starts))
                start = float(starts[w])
            else:
                w = workers.index(min(workers))
                start = max(arrive, workers[w])
            done = start + compute
            workers[w] = done
            heapq.heappush(done_heap, done)
            if tier == EDGE:
                download = latency.transfer_time_ms(sys.access_down, result, done)
            else:
                wan_back = latency.transfer_time_ms(sys.wan_down, result, done)
                download = wan_back + latency.transfer_time_ms(
                    sys.access_down, result, done + wan_back + self._half_wan_rtt
                )
            parts = (wait, upload, propagation, start - arrive, compute, download)
        total = sum(parts)
        self._history[user].append((t + total, total, slowdown_seen))
        self.n_served += 1
        self._pending = None
        if not self._poisson:
            heapq.heappush(self._arrivals, (t + total + self._gap_ms(), request.user))
        return Breakdown(*parts, total)


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
