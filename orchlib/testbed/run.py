"""The live testbed: real servers and devices behind shaped links, one orchestrator deciding every request.

:class:`Testbed` starts and stops the parts (network, edge and cloud server processes, one device process per
user) and sends commands to the devices. :func:`run_testbed` plays a run: the request stream the simulator
would draw for the scenario and seed (same arrival times, users and accuracy requirements), each request
decided by a catalogue agent through the :class:`~orchlib.agents.base.Agent` interface and served for real.
It returns, and writes atomically, the simulator runner's tidy request table (the columns of
:data:`orchlib.study.runner.REQUEST_COLUMNS`, then :data:`EXTRA_COLUMNS`), so every metric and plot works on it.

What the orchestrator sees (it never reads the true link rate or server state):

* **access bandwidth**: an exponentially weighted average (weight :data:`ESTIMATE_WEIGHT`) of
  ``upload bytes x 8 / upload time`` over completed transfers, upload time being from the device's send to
  the server's "body received" time; before the first transfer, the link's nominal rate at time 0.
* **uplink backlog**: when the uplink will be free, by the orchestrator's own FIFO bookkeeping of what it sent,
  each upload taking ``bytes / estimated bandwidth``.
* **edge and cloud load**: the larger of the queue length the server reported with its latest response and the
  number of requests the orchestrator has sent to it and not yet seen answered.
* **device backlog**: when the user's device will be free, from that device's own recent local latencies of
  each variant (weighted average, first value: the emulated profile's median).
* **WAN rate**: the WAN's nominal (provisioned) rate; the testbed does not measure it separately.

Each request's reward is minus its measured response time in seconds (times the env's ``reward_scale``), given
to ``agent.learn`` when the answer arrives, with the observation at that moment as ``next_obs``. A **failed**
request (server killed, connection refused, timeout) gets the reward of a request that took
``request_timeout_s``: as bad as the slowest answer the testbed waits for, so a learner moves away from a dead
tier; its row keeps the reason in ``error`` and NaN response-time parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import io
import itertools
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from orchlib.agents.base import Agent
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.profiling.profiler import MIN_REPEATS
from orchlib.study.runner import REQUEST_COLUMNS, atomic_write
from orchlib.system.engine import RESPONSE_PARTS
from orchlib.system.scenario import TIERS, Scenario
from orchlib.system.simulator import END, Request, Simulator, Snapshot, System, build_system
from orchlib.testbed import links, wire
from orchlib.testbed.device import DeviceConfig, calibrate
from orchlib.testbed.server import ServerConfig

#: columns after :data:`REQUEST_COLUMNS`: ``status`` ("ok" or "failed"), ``error`` (reason, "" when ok),
#: ``queue_length_reported`` (the server's reported queue, -1 for the end tier or a failure), ``real_compute_ms``
#: (end tier: the unstretched local inference time), ``mode`` ("netns" or "loopback").
EXTRA_COLUMNS: tuple[str, ...] = ("status", "error", "queue_length_reported", "real_compute_ms", "mode")

#: weight of the newest sample in the orchestrator's moving averages (bandwidth, device latencies).
ESTIMATE_WEIGHT = 0.3

#: sequential probes per tier in the per-request protocol-cost measurement (:meth:`Testbed.measure_overhead`).
OVERHEAD_PROBES = 15

#: variants offered in quick and test runs: two small ones (fast model building, little CPU on 2 cores).
QUICK_VARIANTS: tuple[str, ...] = ("mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.50_160")


class TestbedError(RuntimeError):
    """The testbed could not start or run (the message names the part and the reason)."""


@dataclass(frozen=True)
class TestbedConfig:
    """One testbed run."""

    #: the system and its workload (arrivals must be Poisson; the variant subset is what the servers load).
    scenario: Scenario
    #: catalogue agent name (``orchlib.agents.catalogue.AGENT_NAMES``; privileged agents are refused).
    agent: str = "random"
    #: keyword arguments for ``make_agent``.
    agent_kwargs: tuple[tuple[str, Any], ...] = ()
    #: length of the request stream, s (also bounded by ``scenario.n_requests``).
    duration_s: float = 30.0
    #: ``"auto"`` (namespaces when possible, else loopback), ``"netns"`` or ``"loopback"``.
    mode: Literal["auto", "netns", "loopback"] = "auto"
    #: seed of the request stream, the agent, weights and inputs (the stream equals the simulator runner's
    #: replicate 0 of this seed).
    seed: int = 0
    #: payload kind (:data:`orchlib.testbed.wire.PAYLOAD_KINDS`).
    payload: str = "raw"
    #: torch threads per server process.
    server_threads: int = 1
    #: bound on every request, s; a request without an answer by then fails.
    request_timeout_s: float = 10.0
    #: bound on the wait for start-up (servers and devices ready), s.
    startup_timeout_s: float = 180.0
    #: kill the edge server this many seconds into the run (the fault case), or None.
    kill_edge_at_s: float | None = None
    #: TCP ports of the edge and the cloud server.
    ports: tuple[int, int] = (18080, 18081)
    #: timed runs per variant in the device calibration.
    calibration_repeats: int = 15
    #: idle time before each timed calibration pass, ms; None: as served
    #: (:data:`orchlib.profiling.profiler.AS_SERVED_GAP_MS`), the way devices then run their sporadic requests (T12).
    calibration_gap_ms: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, Scenario):
            raise TypeError(f"TestbedConfig.scenario must be a Scenario, got {type(self.scenario).__name__}")
        if self.scenario.arrivals.process != "poisson":
            raise ValueError(
                "TestbedConfig.scenario.arrivals.process must be 'poisson' (the testbed replays the simulator's "
                f"request stream, fixed in advance), got {self.scenario.arrivals.process!r}"
            )
        if not (isinstance(self.duration_s, int | float) and 0 < self.duration_s <= 3600):
            raise ValueError(f"TestbedConfig.duration_s must be in (0, 3600] s, got {self.duration_s!r}")
        if self.mode not in ("auto", "netns", "loopback"):
            raise ValueError(f"TestbedConfig.mode must be 'auto', 'netns' or 'loopback', got {self.mode!r}")
        if self.payload not in wire.PAYLOAD_KINDS:
            raise ValueError(
                f"TestbedConfig.payload must be one of {wire.PAYLOAD_KINDS}, got {self.payload!r}"
            )
        for name in ("request_timeout_s", "startup_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 3600):
                raise ValueError(f"TestbedConfig.{name} must be in (0, 3600] s, got {value!r}")
        if not (isinstance(self.server_threads, int) and 1 <= self.server_threads <= (os.cpu_count() or 1)):
            raise ValueError(
                f"TestbedConfig.server_threads must be an integer in [1, {os.cpu_count()}], got {self.server_threads!r}"
            )
        repeats = self.calibration_repeats
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < MIN_REPEATS:
            raise ValueError(
                f"TestbedConfig.calibration_repeats must be an integer >= {MIN_REPEATS}, got {repeats!r}"
            )
        gap = self.calibration_gap_ms
        if gap is not None and not (
            isinstance(gap, int | float) and math.isfinite(gap) and 0 <= gap <= 10_000
        ):
            raise ValueError(
                f"TestbedConfig.calibration_gap_ms must be None or in [0, 10000] ms, got {gap!r}"
            )
        if self.kill_edge_at_s is not None and not 0 <= self.kill_edge_at_s < self.duration_s:
            raise ValueError(
                f"TestbedConfig.kill_edge_at_s must be in [0, duration_s={self.duration_s}), got {self.kill_edge_at_s!r}"
            )
        ports = tuple(self.ports)
        if len(ports) != 2 or len(set(ports)) != 2 or not all(1024 <= p <= 65535 for p in ports):
            raise ValueError(
                f"TestbedConfig.ports must be two different ports in [1024, 65535], got {self.ports!r}"
            )
        object.__setattr__(self, "ports", ports)
        object.__setattr__(self, "agent_kwargs", tuple(dict(self.agent_kwargs).items()))


def resolve_mode(mode: str) -> links.Mode:
    """The network mode to run: ``auto`` picks namespaces when this process may create them.

    Raises:
        TestbedError: ``netns`` asked for without ``CAP_NET_ADMIN`` (root with ``ip`` and ``tc``).
    """
    available = links.netns_available()
    if mode == "netns" and not available:
        raise TestbedError("mode 'netns' needs root (CAP_NET_ADMIN) and the `ip` and `tc` commands")
    if mode == "auto":
        return "netns" if available else "loopback"
    return mode  # type: ignore[return-value]


def request_stream(system: System, seed: int, duration_s: float) -> list[Request]:
    """The requests the simulator runner draws for ``seed`` (replicate 0), up to ``duration_s`` and ``n_requests``.

    With Poisson arrivals the stream does not depend on the actions, so serving every request with action 0
    only advances the simulator.
    """
    sim = Simulator(system, rng=stream_rng(seed))
    out = []
    for _ in range(system.scenario.n_requests):
        request = sim.next_request()
        if request.time_ms >= duration_s * 1e3:
            break
        out.append(request)
        sim.serve(request, 0)
    return out


def stream_rng(seed: int) -> np.random.Generator:
    """The environment generator of the runner's replicate 0 (``OrchestrationEnv.reset`` seeds it this way)."""
    env_seq, _ = np.random.SeedSequence(seed, spawn_key=(0,)).spawn(2)
    from gymnasium.utils import seeding

    generator, _ = seeding.np_random(int(env_seq.generate_state(1, np.uint64)[0]))
    return generator


def _agent_rng(seed: int) -> np.random.Generator:
    _, agent_seq = np.random.SeedSequence(seed, spawn_key=(0,)).spawn(2)
    return np.random.default_rng(agent_seq)


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the testbed process dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class Testbed:
    """The running parts of a testbed: network, servers, devices; start with :meth:`start`, stop with :meth:`close`.

    Args:
        system: the scenario's system (links, variants, device profile).
        mode: ``"netns"`` or ``"loopback"``.
        stretch: calibration factor per variant for the devices.
        payload, server_threads, request_timeout_s, ports, seed: see :class:`TestbedConfig`.
        log_dir: folder for the processes' stderr logs (a temporary one if None).
    """

    def __init__(
        self,
        system: System,
        mode: links.Mode,
        stretch: dict[str, float],
        *,
        payload: str = "raw",
        server_threads: int = 1,
        request_timeout_s: float = 10.0,
        startup_timeout_s: float = 180.0,
        ports: tuple[int, int] = (18080, 18081),
        seed: int = 0,
        log_dir: Path | None = None,
    ) -> None:
        self.system = system
        self.mode = mode
        self.stretch = stretch
        self.payload = payload
        self.server_threads = server_threads
        self.request_timeout_s = request_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.seed = seed
        self.network = links.Network(mode, ports=ports)
        self._temp = tempfile.TemporaryDirectory(prefix="orchlib-testbed-") if log_dir is None else None
        self.log_dir = Path(self._temp.name) if self._temp is not None else Path(log_dir)
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._logs: dict[str, Any] = {}
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self._readers: list[asyncio.Task] = []
        self.trace_start_s = 0.0

    # -- start -------------------------------------------------------------------------------------------------
    async def _spawn(self, name: str, role: str, module: str, config_json: str) -> asyncio.subprocess.Process:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs[name] = log
        process = await asyncio.create_subprocess_exec(
            *self.network.prefix(role),
            sys.executable,
            "-m",
            module,
            config_json,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            preexec_fn=_die_with_parent,
            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
        )
        self.processes[name] = process
        return process

    async def _wait_ready(self, name: str, process: asyncio.subprocess.Process, deadline: float) -> None:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise TestbedError(
                f"{name} did not start within {self.startup_timeout_s} s; {self._tail(name)}"
            ) from None
        if not line:
            await process.wait()
            raise TestbedError(
                f"{name} exited with code {process.returncode} at start-up; {self._tail(name)}"
            )

    def _tail(self, name: str) -> str:
        self._logs[name].flush()
        text = (self.log_dir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return "its log ends: " + (" | ".join(text[-3:]) if text else "(empty)")

    async def start(self) -> None:
        """Create the network, start both servers, then one device per user; return when all are ready.

        Raises:
            TestbedError: a part did not start (the message quotes its log), e.g. a port taken.
            links.NetworkError: a namespace name taken or a network command failed.
        """
        s = self.system.scenario
        variants = self.system.variant_names
        if self.mode == "loopback":
            for port in self.network.ports:
                _check_port(links.LOOPBACK_ADDRESS, port)
        await asyncio.get_running_loop().run_in_executor(
            None,
            self.network.create,
            self.system.access_up,
            self.system.access_down,
            self.system.wan_up,
            self.system.wan_down,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        shaping = s.to_dict() if self.mode == "loopback" else None
        servers = {}
        for tier, workers, rtt in (
            ("edge", s.edge.n_workers, s.access.rtt_ms),
            ("cloud", s.cloud.n_workers, s.access.rtt_ms + s.wan.rtt_ms),
        ):
            config = ServerConfig(
                tier=tier,
                host=self.network.hosts[tier],
                port=self.network.ports[TIERS.index(tier) - 1],
                variants=variants,
                n_workers=workers,
                threads=self.server_threads,
                propagation_ms=rtt,
                shaping_scenario=shaping,
                seed=self.seed,
            )
            servers[tier] = await self._spawn(tier, tier, "orchlib.testbed.server", config.to_json())
        # Devices start alongside the servers (they connect only when the first request comes).
        devices = []
        for user in range(s.n_users):
            config = DeviceConfig(
                user=user,
                variants=variants,
                stretch=self.stretch,
                urls=self.network.urls,
                payload=self.payload,
                timeout_s=self.request_timeout_s,
                seed=self.seed + 1 + user,
            )
            devices.append(
                await self._spawn(f"device{user}", "user", "orchlib.testbed.device", config.to_json())
            )
        for tier, process in servers.items():
            await self._wait_ready(f"{tier} server", process, deadline)
        for user, process in enumerate(devices):
            await self._wait_ready(f"device {user}", process, deadline)
            self._readers.append(asyncio.create_task(self._read(process)))

    async def set_trace_start(self, start_s: float) -> None:
        """Tell the loopback servers when the traces start (namespace mode: the rate controller uses it)."""
        self.trace_start_s = start_s
        if self.mode != "loopback":
            return
        import httpx

        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
            for url in self.network.urls.values():
                (await client.post(f"{url}/trace-start", params={"t": repr(start_s)})).raise_for_status()

    # -- commands ------------------------------------------------------------------------------------------
    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            reply = json.loads(line)
            future = self._pending.pop(reply.get("id"), None)
            if future is not None and not future.done():
                future.set_result(reply)
        # the device is gone: its unanswered commands fail now rather than at their timeout
        for key, future in list(self._pending.items()):
            if getattr(future, "device", None) is process and not future.done():
                future.set_result({"id": key, "ok": False, "error": "device process exited"})

    def send(self, user: int, command: dict[str, Any]) -> asyncio.Future:
        """Send ``command`` to user ``user``'s device; the future resolves to its answer (bounded in time)."""
        process = self.processes[f"device{user}"]
        key = next(self._ids)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        future.device = process  # type: ignore[attr-defined]
        self._pending[key] = future
        assert process.stdin is not None
        process.stdin.write((json.dumps({**command, "id": key}) + "\n").encode())
        return future

    async def ask(self, user: int, command: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send a command and wait for its answer (at most ``timeout_s``, default the request timeout + 5 s)."""
        future = self.send(user, command)
        try:
            return await asyncio.wait_for(future, timeout_s or self.request_timeout_s + 5.0)
        except TimeoutError:
            return {"ok": False, "error": "no answer from the device"}

    async def measure_overhead(self, n: int = OVERHEAD_PROBES) -> dict[str, dict[str, float]]:
        """Measure each tier's fixed per-request protocol cost through the path real requests take (L11).

        Per tier, ``n`` sequential ``probe`` commands to user 0's device (:mod:`orchlib.testbed.device`): the
        orchestrator's hand-off to the device, then on ``end`` a no-op through the device's worker, on
        ``edge``/``cloud`` the server's empty-payload request (connection, HTTP framing, the server's handler
        and worker hand-off, the answer and its parsing). Each probe's time runs from the command's send to the
        device's "done" time, as a real request's response time does. ``overhead_ms`` = the median of these
        minus the path's propagation delay (the simulator has that already, L4). Also the median bare HTTP round
        trip (``GET /ping``) of edge and cloud, reported for comparison, not used.

        Returns:
            ``{tier: {"overhead_ms", "probe_median_ms", "propagation_ms", "ping_ms"}}`` (``ping_ms`` None on end).

        Raises:
            TestbedError: a probe failed (the message gives the tier and the reason).
        """
        s = self.system.scenario
        propagation = {"end": 0.0, "edge": s.access.rtt_ms, "cloud": s.access.rtt_ms + s.wan.rtt_ms}
        out = {}
        for tier in TIERS:
            times = []
            for _ in range(n):
                sent = time.monotonic()
                reply = await self.ask(0, {"op": "probe", "tier": tier})
                if not reply.get("ok"):
                    raise TestbedError(f"the {tier} probe failed: {reply.get('error')}")
                times.append((reply["end_s" if tier == "end" else "done_s"] - sent) * 1e3)
            ping = None
            if tier != "end":
                reply = await self.ask(0, {"op": "echo", "tier": tier, "n": n})
                if not reply.get("ok"):
                    raise TestbedError(f"the {tier} ping failed: {reply.get('error')}")
                ping = float(np.median(reply["base_ms"]))
            median = float(np.median(times))
            out[tier] = {
                # the sleep that adds the delay can overshoot; that overshoot is part of the measured cost
                "overhead_ms": max(0.0, median - propagation[tier]),
                "probe_median_ms": median,
                "propagation_ms": propagation[tier],
                "ping_ms": ping,
            }
        return out

    def kill(self, name: str) -> None:
        """SIGKILL one part (``"edge"``, ``"cloud"`` or ``"device<i>"``), as a crash would."""
        process = self.processes[name]
        if process.returncode is None:
            process.kill()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    # -- stop ----------------------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every process (stdin closed, then SIGTERM, then SIGKILL) and delete the namespaces. Idempotent."""
        for process in self.processes.values():
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.close()
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in self.processes.values():
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._readers:
            task.cancel()
        for log in self._logs.values():
            log.close()
        await asyncio.get_running_loop().run_in_executor(None, self.network.close)
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None


def _check_port(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise TestbedError(
                f"port {port} on {host} is taken ({exc.strerror}); choose other ports (--ports)"
            ) from None


# ----------------------------------------------------------------------------------------------------------
# The orchestrator's measurements


class Measurements:
    """What the orchestrator measures on the testbed, turned into the simulator's :class:`Snapshot`."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.access_mbps = system.access_up.rate_mbps(0.0)
        self.wan_mbps = system.wan_up.rate_mbps(0.0)
        self.uplink_free_s = 0.0
        self.reported = {"edge": 0, "cloud": 0}
        self.outstanding = {"edge": 0, "cloud": 0}
        n = system.scenario.n_users
        self.device_free_s = [0.0] * n
        # each device's recent local latency per variant, ms (first value: the emulated profile's median)
        self.local_ms = [system.median_ms[END].astype(float).copy() for _ in range(n)]

    def snapshot(self, user: int, now_s: float) -> Snapshot:
        return Snapshot(
            access_mbps=self.access_mbps,
            wan_mbps=self.wan_mbps,
            access_backlog_ms=max(0.0, self.uplink_free_s - now_s) * 1e3,
            device_backlog_ms=max(0.0, self.device_free_s[user] - now_s) * 1e3,
            edge_in_system=max(self.reported["edge"], self.outstanding["edge"]),
            cloud_in_system=max(self.reported["cloud"], self.outstanding["cloud"]),
        )

    def dispatched(self, user: int, tier: int, variant: int, now_s: float) -> None:
        if tier == END:
            self.device_free_s[user] = (
                max(now_s, self.device_free_s[user]) + self.local_ms[user][variant] / 1e3
            )
            return
        name = TIERS[tier]
        self.outstanding[name] += 1
        upload_s = self.system.input_bytes[variant] * 8 / (self.access_mbps * 1e6)
        self.uplink_free_s = max(now_s, self.uplink_free_s) + upload_s

    def answered(self, user: int, tier: int, variant: int, reply: dict[str, Any]) -> None:
        w = ESTIMATE_WEIGHT
        if tier == END:
            if reply.get("ok"):
                compute_ms = (reply["end_s"] - reply["start_s"]) * 1e3
                self.local_ms[user][variant] = (1 - w) * self.local_ms[user][variant] + w * compute_ms
            return
        name = TIERS[tier]
        self.outstanding[name] -= 1
        if not reply.get("ok"):
            return
        self.reported[name] = int(reply["queue_length"])
        upload_s = reply["server_received_s"] - reply["sent_s"]
        if upload_s > 0:
            self.access_mbps = (1 - w) * self.access_mbps + w * reply["upload_bytes"] * 8 / upload_s / 1e6


def breakdown_ms(tier: int, reply: dict[str, Any], request_s: float) -> dict[str, float]:
    """The response-time parts and the total of an answered request, ms (the six measured parts sum to the
    total exactly).

    Remote tiers: ``network_wait`` from the request's time to the device's send, ``upload`` to the server's
    "body received", ``propagation`` the server's added delay, ``queue`` until a worker started it (minus the
    delay on the way in), ``compute`` the server's inference, ``download`` the rest. End tier: ``queue`` until the
    device started it, ``compute`` the stretched inference. ``overhead`` (the simulator's fixed per-request
    protocol cost, L11) is NaN: on a real path that cost is inside the other parts and cannot be separated.
    """
    if tier == END:
        parts = (0.0, 0.0, 0.0, reply["start_s"] - request_s, reply["end_s"] - reply["start_s"], 0.0)
        total = reply["end_s"] - request_s
    else:
        half = reply["propagation_ms"] / 2e3
        parts = (
            reply["sent_s"] - request_s,
            reply["server_received_s"] - reply["sent_s"],
            2 * half,
            reply["server_start_s"] - reply["server_received_s"] - half,
            reply["server_end_s"] - reply["server_start_s"],
            reply["done_s"] - reply["server_end_s"] - half,
        )
        total = reply["done_s"] - request_s
    measured = RESPONSE_PARTS[:-1]  # all but the last, overhead_ms
    out = {name: value * 1e3 for name, value in zip(measured, parts, strict=True)}
    out["overhead_ms"] = float("nan")
    out["latency_ms"] = total * 1e3
    return out


# ----------------------------------------------------------------------------------------------------------
# A run


@dataclass
class TestbedResult:
    """What :func:`run_testbed` returns."""

    #: one row per request (columns ``REQUEST_COLUMNS + EXTRA_COLUMNS``).
    requests: pd.DataFrame
    #: the device calibration (one row per variant; see :func:`orchlib.testbed.device.calibrate`).
    calibration: pd.DataFrame
    #: run facts: mode, counts, wall times, rate changes, whether it was interrupted.
    info: dict[str, Any]


def build_agent(config: TestbedConfig, system: System) -> tuple[Agent, OrchestrationEnv]:
    """The run's agent from the catalogue, on an environment of the same system (for spaces and encodings).

    Raises:
        ValueError: unknown agent name; TestbedError: a privileged agent (it reads simulator internals).
    """
    from orchlib.agents.catalogue import AGENTS, make_agent, observation_for

    if config.agent not in AGENTS:
        raise ValueError(f"unknown agent {config.agent!r}; valid names: {sorted(AGENTS)}")
    env = OrchestrationEnv(system, observation=observation_for(config.agent), oracle=False)
    agent = make_agent(config.agent, env, **dict(config.agent_kwargs))
    if agent.privileged:
        raise TestbedError(
            f"agent {config.agent!r} is privileged (it reads the simulator's true state), which the testbed does not have"
        )
    agent.reset(_agent_rng(config.seed))
    return agent, env


def run_testbed(
    config: TestbedConfig,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_start: Callable[[Testbed], None] | None = None,
) -> TestbedResult:
    """Play one testbed run; write ``requests.parquet``, ``calibration.csv`` and ``run.json`` to ``out_dir``.

    Everything is checked before anything starts (scenario files, trace, agent, ports, namespace names). On
    Ctrl-C, SIGTERM or an error every process and namespace the run made is removed and every finished request
    is written; the exception is then raised again.

    Args:
        config: the run.
        out_dir: results folder (created), or None to write nothing.
        progress: show a ``tqdm`` bar and print the mode.
        on_start: called with the running :class:`Testbed` once everything is up (tests inspect it).

    Raises:
        DataError, ValueError: a bad scenario, trace or agent (before anything starts).
        TestbedError, links.NetworkError: a part could not start.
    """
    system = build_system(config.scenario)
    mode = resolve_mode(config.mode)
    agent, env = build_agent(config, system)
    stream = request_stream(system, config.seed, config.duration_s)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    coroutine = _run(config, system, mode, agent, env, stream, out, progress, on_start)
    if _loop_running():
        # Inside Jupyter's event loop: run on a fresh loop in a worker thread.
        result: list[TestbedResult] = []
        errors: list[BaseException] = []

        def target() -> None:
            try:
                result.append(asyncio.run(coroutine))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return result[0]
    return asyncio.run(coroutine)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _run(
    config: TestbedConfig,
    system: System,
    mode: links.Mode,
    agent: Agent,
    env: OrchestrationEnv,
    stream: list[Request],
    out: Path | None,
    progress: bool,
    on_start: Callable[[Testbed], None] | None,
) -> TestbedResult:
    from tqdm.auto import tqdm

    # said even without progress: loopback numbers are not namespace numbers
    print(
        f"orchlib testbed: {mode} mode, {system.scenario.n_users} users, agent {config.agent}",
        file=sys.stderr,
    )
    calibration = pd.DataFrame(
        calibrate(
            system.variant_names,
            dict(zip(system.variant_names, system.median_ms[END].tolist(), strict=True)),
            repeats=config.calibration_repeats,
            rng=config.seed,
            idle_gap_ms=config.calibration_gap_ms,
        )
    )
    stretch = dict(zip(calibration["model"], calibration["factor"], strict=True))
    testbed = Testbed(
        system,
        mode,
        stretch,
        payload=config.payload,
        server_threads=config.server_threads,
        request_timeout_s=config.request_timeout_s,
        startup_timeout_s=config.startup_timeout_s,
        ports=config.ports,
        seed=config.seed,
        log_dir=out,
    )
    rows: dict[int, dict[str, Any]] = {}
    info: dict[str, Any] = {
        "mode": mode,
        "n_users": system.scenario.n_users,
        "agent": config.agent,
        "n_requests_planned": len(stream),
        "interrupted": False,
        "edge_killed_at_s": None,
        # the machine's load: the testbed's numbers include every other process on the shared cores
        "load_average_start": os.getloadavg()[0],
        "config": _jsonable(dataclasses.asdict(config) | {"scenario": config.scenario.to_dict()}),
    }
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    signals = threading.current_thread() is threading.main_thread()
    if signals and task is not None:
        # Ctrl-C and SIGTERM both cancel the run, which then tears down and writes what finished (SIGINT is
        # set here too because a shell starts background jobs with SIGINT ignored).
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, task.cancel)
    controller_task = None
    started = time.monotonic()
    try:
        await testbed.start()
        info["pids"] = testbed.pids()
        info["namespaces"] = sorted(testbed.network.namespaces)
        if on_start is not None:
            on_start(testbed)
        info["startup_s"] = time.monotonic() - started
        overhead = await testbed.measure_overhead()
        info["overhead"] = overhead
        info["request_overhead_ms"] = {tier: values["overhead_ms"] for tier, values in overhead.items()}
        t0 = time.monotonic() + 0.5
        await testbed.set_trace_start(t0)
        if mode == "netns":
            controller = links.RateController(testbed.network, t0, config.duration_s)
            controller_task = asyncio.create_task(controller.run())
        with tqdm(total=len(stream), desc="testbed requests", unit="req", disable=not progress) as bar:
            await _play(config, system, agent, env, testbed, stream, t0, rows, info, bar)
        if controller_task is not None:
            info["rate_changes"] = controller.n_changes
    except asyncio.CancelledError:
        info["interrupted"] = True
        raise KeyboardInterrupt from None
    except KeyboardInterrupt:
        info["interrupted"] = True
        raise
    finally:
        if controller_task is not None:
            controller_task.cancel()
        if signals:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)
        await asyncio.shield(testbed.close())
        info["wall_time_s"] = time.monotonic() - started
        info["load_average_end"] = os.getloadavg()[0]
        frame = _table(rows, system, config, mode)
        info["n_requests"] = len(frame)
        info["n_failed"] = int((frame["status"] == "failed").sum())
        if out is not None:
            _write(out, frame, calibration, info)
    return TestbedResult(frame, calibration, info)


async def _play(
    config: TestbedConfig,
    system: System,
    agent: Agent,
    env: OrchestrationEnv,
    testbed: Testbed,
    stream: list[Request],
    t0: float,
    rows: dict[int, dict[str, Any]],
    info: dict[str, Any],
    bar: Any,
) -> None:
    measured = Measurements(system)
    discrete = env.observation_mode == "discrete"
    failure_reward = -config.request_timeout_s * env.reward_scale
    in_flight: set[asyncio.Task] = set()
    end_by = t0 + config.duration_s + config.request_timeout_s + 10.0

    async def serve(i: int, request: Request, obs: Any, action: int, request_s: float) -> None:
        tier, variant = system.decode_action(action)
        reply = await testbed.ask(
            request.user,
            {"op": "infer", "tier": TIERS[tier], "variant": system.variant_names[variant]},
        )
        measured.answered(request.user, tier, variant, reply)
        row = rows[i]
        if reply.get("ok"):
            row.update(breakdown_ms(tier, reply, request_s))
            row["reward"] = -row["latency_ms"] / 1e3 * env.reward_scale
            row["queue_length_reported"] = int(reply.get("queue_length", -1))
            row["real_compute_ms"] = float(reply.get("real_ms", math.nan))
        else:
            row.update(status="failed", error=str(reply.get("error")), reward=failure_reward)
        now = time.monotonic()
        next_obs = env.observation(
            measured.snapshot(request.user, now), request.requirement_pct, request.requirement_class
        )
        mask = system.masks[request.requirement_class]
        agent.learn(
            obs,
            action,
            row["reward"],
            next_obs,
            mask,
            {"user": request.user, "latency_ms": row.get("latency_ms")},
        )
        bar.update()

    for i, request in enumerate(stream):
        request_s = t0 + request.time_ms / 1e3
        delay = request_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() > end_by:
            break
        kill_now = config.kill_edge_at_s is not None and request.time_ms / 1e3 >= config.kill_edge_at_s
        if kill_now and info["edge_killed_at_s"] is None:
            testbed.kill("edge")
            info["edge_killed_at_s"] = time.monotonic() - t0
        now = time.monotonic()
        snap = measured.snapshot(request.user, now)
        obs = env.observation(snap, request.requirement_pct, request.requirement_class)
        mask = system.masks[request.requirement_class]
        shown = {
            **snap._asdict(),
            "action_mask": mask,
            "user": request.user,
            "time_ms": request.time_ms,
            "requirement_pct": request.requirement_pct,
            "requirement_class": request.requirement_class,
        }
        action = int(agent.act(obs, mask, shown))
        if not (0 <= action < system.n_actions and mask[action]):
            raise TestbedError(
                f"agent {config.agent!r} chose action {action} outside the mask for request {i}"
            )
        tier, variant = system.decode_action(action)
        rows[i] = {
            "request": i,
            "time_s": request.time_ms / 1e3,
            "user": request.user,
            "state": int(obs) if discrete else -1,
            "requirement_pct": request.requirement_pct,
            "tier": TIERS[tier],
            "variant": system.variant_names[variant],
            "accuracy_pct": float(system.top1_pct[variant]),
            "met_requirement": bool(mask[action]),
            "status": "ok",
            "error": "",
            "queue_length_reported": -1,
            "real_compute_ms": math.nan,
        }
        measured.dispatched(request.user, tier, variant, now)
        task = asyncio.create_task(serve(i, request, obs, action, request_s))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        # every request is bounded by the device's timeout; this bound only guards against a lost device
        _, pending = await asyncio.wait(in_flight, timeout=config.request_timeout_s + 10.0)
        for task in pending:
            task.cancel()


def _table(rows: dict[int, dict[str, Any]], system: System, config: TestbedConfig, mode: str) -> pd.DataFrame:
    parts = (*RESPONSE_PARTS, "latency_ms")
    records = []
    for i in sorted(rows):
        row = dict(rows[i])
        if "latency_ms" not in row and row["status"] == "ok":
            # dispatched but never answered (the run was interrupted)
            row.update(status="failed", error="unanswered when the run stopped")
        for name in parts:
            row.setdefault(name, math.nan)
        row.setdefault("reward", math.nan)
        records.append(row)
    frame = pd.DataFrame.from_records(records, columns=[c for c in (*REQUEST_COLUMNS, *EXTRA_COLUMNS)])
    frame["oracle_latency_ms"] = math.nan
    frame["regret_ms"] = math.nan
    frame["agent"] = pd.Categorical([config.agent] * len(frame), categories=[config.agent])
    frame["scenario"] = pd.Categorical([system.scenario.name] * len(frame), categories=[system.scenario.name])
    frame["replicate"] = np.zeros(len(frame), dtype=np.int64)
    frame["mode"] = mode
    frame["tier"] = pd.Categorical(frame["tier"], categories=list(TIERS))
    frame["variant"] = pd.Categorical(frame["variant"], categories=list(system.variant_names))
    for name in ("request", "user", "state", "queue_length_reported"):
        frame[name] = frame[name].astype(np.int64)
    frame["met_requirement"] = frame["met_requirement"].astype(bool)
    return frame


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write(out: Path, frame: pd.DataFrame, calibration: pd.DataFrame, info: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write(out / "requests.parquet", buffer.getvalue())
    atomic_write(out / "calibration.csv", calibration.to_csv(index=False).encode())
    atomic_write(out / "run.json", json.dumps(_jsonable(info), indent=1, sort_keys=True).encode())
