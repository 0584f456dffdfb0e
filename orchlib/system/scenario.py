"""Scenario configuration: frozen, typed dataclasses, varied with :func:`dataclasses.replace`.

A :class:`Scenario` says *what system* is simulated: how many users, which device profile each tier runs,
the links between them, how requests arrive and what accuracy they need. It holds names and numbers only;
:func:`orchlib.system.simulator.build_system` reads the files it names. Every value of the ``paper`` preset that the
public paper does not give is a reconstruction, numbered in ``docs/assumptions.md``.

Presets: :func:`paper` (the grounded world), :func:`ideal` (the full-information world, ``paper`` before
issue 12), :func:`tiny` (for tests), :func:`testbed` (the live testbed's size), and the three motivation settings
:func:`motivation_network`, :func:`motivation_users`, :func:`motivation_accuracy`. ``PRESETS`` maps names to
the zero-argument ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

TIERS: tuple[str, ...] = ("end", "edge", "cloud")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite_at_least_one(name: str, value: float) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value) and value >= 1
    _check(ok, f"{name} must be a finite number >= 1, got {value!r}")


def _finite_positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    _check(ok, f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class TierSpec:
    """One tier of the system: which device profile it runs and how many requests it serves at once."""

    #: profile name in ``data/profiles`` (file stem) or a path to a profile CSV written by ``orchlib profile``.
    profile: str
    #: parallel inference workers per server (edge and cloud); the end tier always has one per user device.
    n_workers: int = 1
    #: fixed protocol cost of every request served on this tier, ms (L11): request hand-off, HTTP framing and
    #: response parsing; a delay that occupies neither a link nor a server. 0 unless measured.
    request_overhead_ms: float = 0.0

    def __post_init__(self) -> None:
        _check(
            isinstance(self.profile, str) and self.profile != "",
            f"TierSpec.profile must be a profile name, got {self.profile!r}",
        )
        _check(
            isinstance(self.n_workers, int) and self.n_workers >= 1,
            f"TierSpec.n_workers must be an integer >= 1, got {self.n_workers!r}",
        )
        _finite_positive("TierSpec.request_overhead_ms", self.request_overhead_ms, allow_zero=True)


@dataclass(frozen=True)
class LinkSpec:
    """A network link: steady bandwidth and RTT, or a replayed trace, optionally with scripted changes."""

    #: uplink bandwidth, Mbit/s (ignored for the rate when ``trace`` is set).
    uplink_mbps: float
    #: downlink bandwidth, Mbit/s (ignored for the rate when ``trace`` is set).
    downlink_mbps: float
    #: round-trip propagation time, ms (half on the way up, half on the way down).
    rtt_ms: float
    #: trace file name in ``data/traces`` (or a path); when set, both directions follow its shape over time.
    trace: str | None = None
    #: False: replay the trace's Mbit/s as measured, both directions. True: rescale it so its median equals
    #: ``uplink_mbps`` on the uplink and ``downlink_mbps`` on the downlink (keeps the measured variability,
    #: takes the magnitude from the level).
    trace_rescale: bool = False
    #: start replaying the trace this many seconds into it.
    trace_offset_s: float = 0.0
    #: scripted changes ``((time_s, factor), ...)``: from ``time_s`` on, bandwidth is multiplied by ``factor``.
    changes: tuple[tuple[float, float], ...] = ()
    #: the named level these values came from (documentation only; see ``data/network/levels.csv``).
    level: str | None = None

    def __post_init__(self) -> None:
        _finite_positive("LinkSpec.uplink_mbps", self.uplink_mbps)
        _finite_positive("LinkSpec.downlink_mbps", self.downlink_mbps)
        _finite_positive("LinkSpec.rtt_ms", self.rtt_ms, allow_zero=True)
        _finite_positive("LinkSpec.trace_offset_s", self.trace_offset_s, allow_zero=True)
        object.__setattr__(self, "changes", tuple((float(t), float(f)) for t, f in self.changes))
        for t, f in self.changes:
            _finite_positive("LinkSpec.changes time_s", t, allow_zero=True)
            _finite_positive("LinkSpec.changes factor", f)

    @classmethod
    def from_level(cls, level: str, **overrides: Any) -> LinkSpec:
        """A link with the bandwidths and RTT of a named level of ``data/network/levels.csv``.

        Raises:
            ValueError: unknown level name (the message lists the valid ones).
        """
        from orchlib.system.profiles import load_network_levels

        levels = load_network_levels()
        if level not in levels:
            raise ValueError(f"unknown network level {level!r}; valid levels: {sorted(levels)}")
        row = levels[level]
        values = {
            "uplink_mbps": row.uplink_mbps,
            "downlink_mbps": row.downlink_mbps,
            "rtt_ms": row.rtt_ms,
            "level": level,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Arrivals:
    """How each user issues requests."""

    #: ``"poisson"``: open loop, exponential inter-arrival times; ``"closed_loop"``: a user sends its next
    #: request an exponential think time after the previous response returns.
    process: Literal["poisson", "closed_loop"] = "poisson"
    #: mean requests per second per user (poisson).
    rate_per_s: float = 1.0
    #: mean think time between a response and the next request, ms (closed loop).
    think_time_ms: float = 1000.0

    def __post_init__(self) -> None:
        _check(
            self.process in ("poisson", "closed_loop"),
            f"Arrivals.process must be 'poisson' or 'closed_loop', got {self.process!r}",
        )
        _finite_positive("Arrivals.rate_per_s", self.rate_per_s)
        _finite_positive("Arrivals.think_time_ms", self.think_time_ms, allow_zero=True)


@dataclass(frozen=True)
class AccuracyRequirement:
    """The distribution of per-request accuracy requirements (minimum ImageNet top-1, percent)."""

    #: the requirement classes, top-1 percent, increasing.
    levels_pct: tuple[float, ...] = (0.0,)
    #: probability of each class (sums to 1).
    probabilities: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels_pct", tuple(float(x) for x in self.levels_pct))
        object.__setattr__(self, "probabilities", tuple(float(x) for x in self.probabilities))
        _check(len(self.levels_pct) >= 1, "AccuracyRequirement.levels_pct needs at least one level")
        _check(
            len(self.levels_pct) == len(self.probabilities),
            f"AccuracyRequirement: {len(self.levels_pct)} levels_pct but {len(self.probabilities)} probabilities",
        )
        _check(
            all(0 <= x <= 100 for x in self.levels_pct),
            f"AccuracyRequirement.levels_pct must be in [0, 100], got {self.levels_pct}",
        )
        _check(
            list(self.levels_pct) == sorted(set(self.levels_pct)),
            f"AccuracyRequirement.levels_pct must be strictly increasing, got {self.levels_pct}",
        )
        _check(
            all(p >= 0 for p in self.probabilities),
            f"AccuracyRequirement.probabilities must be >= 0, got {self.probabilities}",
        )
        _check(
            abs(sum(self.probabilities) - 1) < 1e-9,
            f"AccuracyRequirement.probabilities must sum to 1, got {sum(self.probabilities)}",
        )

    @classmethod
    def from_tolerances(
        cls,
        tolerances_pp: tuple[float, ...],
        probabilities: tuple[float, ...],
        variants: str = "mobilenet_v1",
    ) -> AccuracyRequirement:
        """Requirements stated as the top-1 loss an application tolerates below the best variant of a table.

        Example: tolerance 1 pp with a best variant at 70.9 % gives a requirement of 69.9 %.
        """
        from orchlib.system.profiles import load_variants

        _check(all(t >= 0 for t in tolerances_pp), f"tolerances_pp must be >= 0, got {tolerances_pp}")
        best = float(load_variants(variants).column("top1_pct").max())
        pairs = sorted(zip((max(0.0, best - t) for t in tolerances_pp), probabilities, strict=True))
        return cls(levels_pct=tuple(round(x, 6) for x, _ in pairs), probabilities=tuple(p for _, p in pairs))


@dataclass(frozen=True)
class Payload:
    """What a request uploads (assumptions P1-P3)."""

    #: ``"raw"``: the model's 8-bit RGB input tensor (``resolution**2 * 3`` bytes, every request alike);
    #: ``"jpeg"``: a JPEG of a real photograph at the model's resolution, its size drawn per request from the
    #: measured table, and its decoding added to compute on the serving tier.
    kind: Literal["raw", "jpeg"] = "raw"
    #: JPEG quality (a column of the payload table; 75 and 90 are measured).
    quality: int = 75
    #: payload table in ``data/payloads`` (``jpeg`` only).
    table: str = "jpeg_sizes"
    #: decode profile in ``data/profiles`` measured by ``orchlib profile-decode``, added on edge and cloud.
    decode_profile: str = "x86_jpeg_decode"

    def __post_init__(self) -> None:
        _check(self.kind in ("raw", "jpeg"), f"Payload.kind must be 'raw' or 'jpeg', got {self.kind!r}")
        _check(
            isinstance(self.quality, int) and 1 <= self.quality <= 100,
            f"Payload.quality must be an integer in [1, 100], got {self.quality!r}",
        )


@dataclass(frozen=True)
class Fleet:
    """A mix of end-device classes; each user's device is drawn from it with the run's seed (F1)."""

    #: device profile names (``data/profiles``), one per class.
    classes: tuple[str, ...]
    #: probability of each class (sums to 1).
    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "probabilities", tuple(float(x) for x in self.probabilities))
        _check(len(self.classes) >= 1, "Fleet.classes needs at least one device profile name")
        _check(
            all(isinstance(c, str) and c for c in self.classes),
            f"Fleet.classes must be profile names, got {self.classes!r}",
        )
        _check(
            len(set(self.classes)) == len(self.classes), f"Fleet.classes must not repeat, got {self.classes}"
        )
        _check(
            len(self.classes) == len(self.probabilities),
            f"Fleet: {len(self.classes)} classes but {len(self.probabilities)} probabilities",
        )
        _check(
            all(math.isfinite(x) and x >= 0 for x in self.probabilities),
            f"Fleet.probabilities must be finite and >= 0, got {self.probabilities}",
        )
        _check(
            abs(sum(self.probabilities) - 1) < 1e-9,
            f"Fleet.probabilities must sum to 1, got {sum(self.probabilities)}",
        )


@dataclass(frozen=True)
class Thermal:
    """Thermal throttling of end devices (H1): heat rises with busy time and decays when idle."""

    #: compute-time multiplier in the throttled steady state (heat 1).
    max_slowdown: float = 1.9
    #: time constant of heating while the device runs inferences, s.
    heat_time_constant_s: float = 30.0
    #: time constant of cooling while idle, s.
    cool_time_constant_s: float = 60.0

    def __post_init__(self) -> None:
        _finite_at_least_one("Thermal.max_slowdown", self.max_slowdown)
        _finite_positive("Thermal.heat_time_constant_s", self.heat_time_constant_s)
        _finite_positive("Thermal.cool_time_constant_s", self.cool_time_constant_s)


@dataclass(frozen=True)
class BackgroundLoad:
    """Background load on phones (H2): a two-state Markov process per device that slows inference when on."""

    #: compute-time multiplier while a background app is busy.
    slowdown: float = 2.0
    #: mean length of a busy period, s.
    mean_on_s: float = 10.0
    #: mean length of a quiet period, s.
    mean_off_s: float = 40.0
    #: device classes it applies to (profile names); the others never see it.
    applies_to: tuple[str, ...] = ("pixel3_cpu4", "pixel3_gpu", "pixel3_nnapi")

    def __post_init__(self) -> None:
        object.__setattr__(self, "applies_to", tuple(self.applies_to))
        _finite_at_least_one("BackgroundLoad.slowdown", self.slowdown)
        _finite_positive("BackgroundLoad.mean_on_s", self.mean_on_s)
        _finite_positive("BackgroundLoad.mean_off_s", self.mean_off_s)


@dataclass(frozen=True)
class CoTenant:
    """Other tenants' jobs on the edge server (H3): an on/off process that occupies workers while on."""

    #: edge workers a co-tenant job occupies while on (<= the edge's n_workers).
    n_workers_occupied: int = 1
    #: mean length of a co-tenant busy period, s.
    mean_on_s: float = 0.1
    #: mean length of a period without co-tenant work, s.
    mean_off_s: float = 0.15

    def __post_init__(self) -> None:
        _check(
            isinstance(self.n_workers_occupied, int) and self.n_workers_occupied >= 1,
            f"CoTenant.n_workers_occupied must be an integer >= 1, got {self.n_workers_occupied!r}",
        )
        _finite_positive("CoTenant.mean_on_s", self.mean_on_s)
        _finite_positive("CoTenant.mean_off_s", self.mean_off_s)


@dataclass(frozen=True)
class BandwidthEstimate:
    """The orchestrator sees an estimate of the access rate from completed uploads, not the true rate (H4)."""

    #: harmonic mean over this many most recent completed uploads.
    window: int = 5

    def __post_init__(self) -> None:
        _check(
            isinstance(self.window, int) and self.window >= 1,
            f"BandwidthEstimate.window must be an integer >= 1, got {self.window!r}",
        )


@dataclass(frozen=True)
class Scenario:
    """A multi-user end-edge-cloud system and its workload."""

    #: a short label used in results and file names.
    name: str
    #: number of users, each with its own end device, all sharing the access link and the edge server.
    n_users: int
    #: the users' end devices (one per user; ``n_workers`` ignored).
    end: TierSpec
    #: the edge server, reached over the shared access link.
    edge: TierSpec
    #: the cloud server, reached over the access link then the WAN.
    cloud: TierSpec
    #: device <-> edge access link, shared by all users (uploads are sent one at a time, FIFO).
    access: LinkSpec
    #: edge <-> cloud wide-area link (shared FIFO too).
    wan: LinkSpec
    #: request arrival process.
    arrivals: Arrivals = field(default_factory=Arrivals)
    #: per-request accuracy requirement distribution.
    accuracy: AccuracyRequirement = field(default_factory=AccuracyRequirement)
    #: horizon: number of requests in an episode / run.
    n_requests: int = 10_000
    #: model-variant table in ``data/models``.
    variants: str = "mobilenet_v1"
    #: variants offered to the orchestrator (``None``: all rows of the table).
    variant_subset: tuple[str, ...] | None = None
    #: draw compute times from each profile's spread (log-normal); False: always the median.
    compute_jitter: bool = True
    #: an accelerated cloud (A-tier, assumption C1) that replaces ``cloud`` when set (None: ``cloud`` as given).
    cloud_accelerator: TierSpec | None = None
    #: what each request uploads (default: the raw input tensor, as before issue 12).
    payload: Payload = field(default_factory=Payload)
    #: a mix of end-device classes (None: every user has ``end``'s device).
    fleet: Fleet | None = None
    #: thermal throttling of end devices (None: off).
    thermal: Thermal | None = None
    #: background load on phones (None: off).
    background: BackgroundLoad | None = None
    #: co-tenant jobs on the edge (None: off).
    cotenant: CoTenant | None = None
    #: the orchestrator's bandwidth is an estimate from completed uploads (None: it sees the true rate).
    bandwidth_estimate: BandwidthEstimate | None = None

    def __post_init__(self) -> None:
        _check(
            isinstance(self.n_users, int) and self.n_users >= 1,
            f"Scenario.n_users must be an integer >= 1, got {self.n_users!r}",
        )
        _check(
            isinstance(self.n_requests, int) and self.n_requests >= 1,
            f"Scenario.n_requests must be an integer >= 1, got {self.n_requests!r}",
        )
        for name, kind in (
            ("payload", Payload),
            ("cloud_accelerator", TierSpec),
            ("fleet", Fleet),
            ("thermal", Thermal),
            ("background", BackgroundLoad),
            ("cotenant", CoTenant),
            ("bandwidth_estimate", BandwidthEstimate),
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, kind) or (value is None and name != "payload"),
                f"Scenario.{name} must be a {kind.__name__}{'' if name == 'payload' else ' or None'}, got {value!r}",
            )
        if self.cotenant is not None:
            _check(
                self.cotenant.n_workers_occupied <= self.edge.n_workers,
                f"CoTenant.n_workers_occupied ({self.cotenant.n_workers_occupied}) must be <= the edge's "
                f"n_workers ({self.edge.n_workers})",
            )
        if self.variant_subset is not None:
            object.__setattr__(self, "variant_subset", tuple(self.variant_subset))
            _check(
                len(self.variant_subset) >= 1,
                "Scenario.variant_subset must name at least one variant (or be None)",
            )

    @property
    def grounded_features(self) -> tuple[str, ...]:
        """Names of the issue-12 features this scenario switches on (empty: the ``ideal`` world's rules)."""
        on = {
            "accelerated cloud": self.cloud_accelerator is not None,
            "jpeg payloads": self.payload.kind != "raw",
            "device fleet": self.fleet is not None,
            "thermal throttling": self.thermal is not None,
            "background load": self.background is not None,
            "co-tenant load": self.cotenant is not None,
            "bandwidth estimate": self.bandwidth_estimate is not None,
        }
        return tuple(name for name, active in on.items() if active)

    def without_grounding(self) -> Scenario:
        """This scenario with every issue-12 feature switched off (payload raw, one device, nothing hidden)."""
        return dataclasses.replace(
            self,
            cloud_accelerator=None,
            payload=Payload(),
            fleet=None,
            thermal=None,
            background=None,
            cotenant=None,
            bandwidth_estimate=None,
        )

    def replace(self, **changes: Any) -> Scenario:
        """``dataclasses.replace`` (for chaining)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (saved next to every result)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        """Inverse of :meth:`to_dict`; also reads hand-written JSON (lists for tuples, whole numbers for floats).

        Raises:
            ValueError: a missing, unknown or wrong-typed field; the message gives its path (for example
                ``scenario.access.rtt_ms``) and what is valid there.
        """
        return _from_plain(cls, data, "scenario")


def _describe(kind: Any) -> str:
    """A type annotation in words, for error messages."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        inner = _describe(args[0]) if len(args) == 2 and args[1] is Ellipsis else None
        return (
            f"a list of {inner}"
            if inner
            else f"a list of {len(args)} items ({', '.join(map(_describe, args))})"
        )
    if dataclasses.is_dataclass(kind):
        return f"an object with fields {[f.name for f in dataclasses.fields(kind)]}"
    return {
        type(None): "null",
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a text",
    }.get(kind, getattr(kind, "__name__", str(kind)))


def _from_plain(kind: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) checked against annotation ``kind`` and converted (dataclasses built, lists to
    tuples); ValueError naming ``where`` and what is valid on the first mismatch. Annotations it does not know
    pass through unchecked (the dataclasses' own ``__post_init__`` checks still apply)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)

    def wrong() -> ValueError:
        return ValueError(f"{where}: expected {_describe(kind)}, got {value!r}")

    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise wrong()
        hints = typing.get_type_hints(kind)
        fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(
                f"{where}: unknown field(s) {unknown}; valid fields of {kind.__name__}: {list(fields)}"
            )
        required = [
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in value]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}; {kind.__name__} requires {required}")
        converted = {name: _from_plain(hints[name], item, f"{where}.{name}") for name, item in value.items()}
        try:
            return kind(**converted)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise wrong()
        return value
    if origin in (types.UnionType, typing.Union):
        for option in args:
            try:
                return _from_plain(option, value, where)
            except ValueError:
                continue
        raise wrong()
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise wrong()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise wrong()
        return tuple(
            _from_plain(a, item, f"{where}[{i}]") for i, (a, item) in enumerate(zip(args, value, strict=True))
        )
    if kind is type(None):
        if value is not None:
            raise wrong()
        return value
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise wrong()
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        return float(value)
    return value


# ----------------------------------------------------------------------------------------------------------
# Presets. Each number below that the public paper does not give is numbered in docs/assumptions.md (S1...).


def ideal() -> Scenario:
    """The full-information world (the ``paper`` preset before issue 12; assumptions S1-S10).

    Raw-tensor payloads, one device class, a CPU cloud, exact profiles and the true link rate in view:
    nothing is hidden, so fixed rules come close to the clairvoyant oracle. Kept as the contrast to
    :func:`paper`; ``paper().without_grounding()`` equals it except for the name.
    """
    return Scenario(
        name="ideal",
        n_users=8,  # S1
        end=TierSpec("rpi4_cpu4"),  # S2
        edge=TierSpec("x86_2threads", n_workers=1),  # S3
        cloud=TierSpec("x86_2threads", n_workers=8),  # S4
        access=LinkSpec.from_level(
            "wifi", trace="bus.ljansbakken-oslo-report.2010-09-29_1628CEST.log", trace_rescale=True
        ),  # S5
        wan=LinkSpec.from_level("wan_edge_cloud"),  # S6
        arrivals=Arrivals("poisson", rate_per_s=2.0),  # S7
        accuracy=AccuracyRequirement.from_tolerances((1.0, 3.0, 6.0, 10.0), (0.25, 0.25, 0.25, 0.25)),  # S8
        n_requests=20_000,  # S9
        compute_jitter=True,  # S10
    )


def paper() -> Scenario:
    """The grounded reconstruction of the paper's multi-user setting (S1-S10 with G1-G7, H1-H4, P1-P3, F1-F2, C1).

    :func:`ideal`'s system with measured JPEG payloads, a mixed device fleet, an accelerated cloud, and
    hidden conditions that drift (thermal throttling, background load on phones, co-tenant jobs on the
    edge) seen by the orchestrator only through what it can measure (a bandwidth estimate, its own past
    latencies, queue lengths, the device class).
    """
    return ideal().replace(
        name="paper",
        cloud_accelerator=TierSpec("cloud_gpu_int8", n_workers=8),  # C1
        payload=Payload("jpeg", quality=75),  # P1-P3
        fleet=Fleet(  # F1-F2
            classes=("pixel3_cpu4", "pixel3_gpu", "pixel3_nnapi", "rpi4_cpu4", "rpi4_tflite115"),
            probabilities=(0.2, 0.2, 0.2, 0.2, 0.2),
        ),
        thermal=Thermal(),  # H1
        background=BackgroundLoad(),  # H2
        cotenant=CoTenant(),  # H3
        bandwidth_estimate=BandwidthEstimate(window=5),  # H4
    )


def tiny() -> Scenario:
    """A small, fast scenario for tests: 2 users, 4 variants, steady links, two requirement classes."""
    return Scenario(
        name="tiny",
        n_users=2,
        end=TierSpec("pixel3_cpu4"),
        edge=TierSpec("x86_2threads", n_workers=1),
        cloud=TierSpec("x86_2threads", n_workers=4),
        access=LinkSpec.from_level("4g_good"),
        wan=LinkSpec.from_level("wan_edge_cloud"),
        arrivals=Arrivals("poisson", rate_per_s=2.0),
        accuracy=AccuracyRequirement(levels_pct=(0.0, 65.0), probabilities=(0.5, 0.5)),
        n_requests=2_000,
        variant_subset=(
            "mobilenet_v1_1.0_224",
            "mobilenet_v1_1.0_224_quant",
            "mobilenet_v1_0.50_160",
            "mobilenet_v1_0.25_128_quant",
        ),
        compute_jitter=False,
    )


def testbed() -> Scenario:
    """The ``ideal`` world's links and end device (``paper`` before issue 12, whose grounded features the
    live testbed does not reproduce) at a size one 2-core machine can serve for real (assumptions T1-T3).

    Used by the live testbed (``orchlib.testbed``) and its simulator check: 2 users (vary ``n_users``), the
    tiny preset's four variants, edge and cloud each one worker on this project's 1-thread x86 profile, and no
    accuracy requirement so that every (tier, variant) pair is exercised.
    """
    return ideal().replace(
        name="testbed",
        n_users=2,
        edge=TierSpec("x86_1thread", n_workers=1),  # T1
        cloud=TierSpec("x86_1thread", n_workers=1),  # T1
        variant_subset=tiny().variant_subset,  # T2
        accuracy=AccuracyRequirement(),  # T3
    )


#: MobileNetV1 1.0/224 float32, the variant the motivation experiments serve.
MOTIVATION_VARIANT = "mobilenet_v1_1.0_224"


def motivation_network(level: str = "4g_good") -> Scenario:
    """Motivation setting 1: one user, MobileNetV1 1.0/224, steady access link at a named level."""
    base = ideal()
    return base.replace(
        name=f"motivation_network_{level}",
        n_users=1,
        access=LinkSpec.from_level(level),
        variant_subset=(MOTIVATION_VARIANT,),
        accuracy=AccuracyRequirement(),
        compute_jitter=False,
    )


def motivation_users(n_users: int = 1, level: str = "wifi") -> Scenario:
    """Motivation setting 2: ``n_users`` users sharing the access link and edge, MobileNetV1 1.0/224."""
    return motivation_network(level).replace(name=f"motivation_users_{n_users}", n_users=n_users)


def motivation_accuracy(requirement_pct: float = 0.0, level: str = "4g_good") -> Scenario:
    """Motivation setting 3: all MobileNetV1 variants, every request needing ``requirement_pct`` top-1."""
    return motivation_network(level).replace(
        name=f"motivation_accuracy_{requirement_pct:g}",
        variant_subset=None,
        accuracy=AccuracyRequirement(levels_pct=(float(requirement_pct),), probabilities=(1.0,)),
    )


PRESETS: dict[str, Callable[[], Scenario]] = {
    "paper": paper,
    "ideal": ideal,
    "tiny": tiny,
    "testbed": testbed,
    "motivation_network": motivation_network,
    "motivation_users": motivation_users,
    "motivation_accuracy": motivation_accuracy,
}


def preset(name: str) -> Scenario:
    """A preset scenario by name.

    Raises:
        ValueError: unknown name (lists the valid ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown scenario preset {name!r}; valid presets: {sorted(PRESETS)}")
    return PRESETS[name]()
