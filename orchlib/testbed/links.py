"""The testbed's network: namespaces, veth pairs and kernel rate shaping, or a loopback fallback.

**Namespace mode** (needs ``CAP_NET_ADMIN``; :func:`netns_available`). Three network namespaces named after
the run's process id, ``ob<pid>u`` (the users' devices), ``ob<pid>e`` (edge server) and ``ob<pid>c`` (cloud
server), joined by two veth pairs::

    users 198.18.0.1/30 --access-- 198.18.0.2/30 edge (forwards) 198.18.0.5/30 --wan-- 198.18.0.6/30 cloud

Every address comes from the RFC 2544 benchmarking range 198.18.0.0/15 and lives only inside these
namespaces; the host's own interfaces and routes are untouched. A request to the cloud crosses the access
link and then the WAN link, routed by the edge namespace, as in the simulator. Each veth end's egress has a
``tbf`` qdisc: the users' end shapes the access uplink, the edge's access end the access downlink, the edge's
WAN end the WAN uplink, the cloud's end the WAN downlink. :class:`RateController` changes the rates at every
breakpoint of the scenario's rate functions (the same traces the simulator replays). The kernel here has no
``netem``, so RTT is added by the servers in user space (:mod:`orchlib.testbed.server`).

**Loopback mode** (fallback without ``CAP_NET_ADMIN``). Everything on 127.0.0.1; the servers play the links
in user space with the simulator's FIFO rule (:class:`orchlib.testbed.server.VirtualLink`). Limitation: the
edge and the cloud server each keep their own copy of the access uplink, so an edge upload and a cloud upload
do not wait for each other.

:class:`Network` creates either and removes everything it created in :meth:`Network.close` (deleting a
namespace deletes its veth ends and their qdiscs).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Literal

from orchlib.system.latency import RateFunction

Mode = Literal["netns", "loopback"]

#: addresses of the namespace topology (all inside namespaces the run creates).
USER_ADDRESS = "198.18.0.1"
EDGE_ADDRESS = "198.18.0.2"
EDGE_WAN_ADDRESS = "198.18.0.5"
CLOUD_ADDRESS = "198.18.0.6"
LOOPBACK_ADDRESS = "127.0.0.1"

#: tbf queue limit, as the time a full queue takes to drain: larger than any burst of uploads the scenarios
#: make at once (a few 150 kB payloads), so the qdisc queues rather than drops, as the simulator's FIFO link.
TBF_LATENCY_MS = 2000


class NetworkError(RuntimeError):
    """The network could not be set up (the message names the command or the resource)."""


def netns_available() -> bool:
    """True if this process can create network namespaces and shape with ``tc`` (root with ``ip`` and ``tc``)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("tc") is not None


def namespace_names(pid: int) -> dict[str, str]:
    """The namespace name of each role (``user``, ``edge``, ``cloud``) for run ``pid``."""
    return {"user": f"ob{pid}u", "edge": f"ob{pid}e", "cloud": f"ob{pid}c"}


def existing_namespaces() -> set[str]:
    """Names of the network namespaces that exist now (``ip netns list``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise NetworkError(f"`{' '.join(command)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def tbf_arguments(mbps: float) -> list[str]:
    """``tc`` arguments of a tbf at ``mbps`` Mbit/s.

    The bucket holds at least one jiffy of traffic at the rate (4 ms covers HZ = 250) and at least two
    full-size frames, the smallest bucket that lets tbf reach its rate (tc-tbf(8), "burst").
    """
    if not mbps > 0:
        raise ValueError(f"rate must be > 0 Mbit/s, got {mbps!r}")
    bits = mbps * 1e6
    burst = max(2 * 1514, int(bits / 8 * 0.004))
    return ["tbf", "rate", f"{round(bits)}bit", "burst", str(burst), "latency", f"{TBF_LATENCY_MS}ms"]


@dataclass(frozen=True)
class Shaper:
    """One shaped direction: a veth end in a namespace, and the rate function it follows."""

    namespace: str
    device: str
    rate: RateFunction
    label: str


class Network:
    """The run's network, in ``mode``; addresses in :attr:`urls`, namespaces in :attr:`namespaces`.

    Args:
        mode: ``"netns"`` or ``"loopback"``.
        pid: the run's id used in names (default: this process's pid).
        ports: TCP port of the edge and the cloud server.

    Raises:
        NetworkError: a namespace name is taken, or a command fails (everything made so far is removed).
    """

    def __init__(self, mode: Mode, pid: int | None = None, ports: tuple[int, int] = (8080, 8081)) -> None:
        if mode not in ("netns", "loopback"):
            raise ValueError(f"mode must be 'netns' or 'loopback', got {mode!r}")
        self.mode = mode
        self.pid = os.getpid() if pid is None else pid
        self.ports = ports
        self.namespaces: dict[str, str] = {}
        self.shapers: list[Shaper] = []
        if mode == "loopback":
            self.hosts = {"edge": LOOPBACK_ADDRESS, "cloud": LOOPBACK_ADDRESS}
        else:
            self.hosts = {"edge": EDGE_ADDRESS, "cloud": CLOUD_ADDRESS}
        self.urls = {
            tier: f"http://{host}:{port}"
            for (tier, host), port in zip(self.hosts.items(), ports, strict=True)
        }

    def create(
        self, access_up: RateFunction, access_down: RateFunction, wan_up: RateFunction, wan_down: RateFunction
    ) -> None:
        """Build the namespaces, veths, addresses, routes and qdiscs (namespace mode; loopback: nothing)."""
        if self.mode == "loopback":
            return
        names = namespace_names(self.pid)
        taken = sorted(set(names.values()) & existing_namespaces())
        if taken:
            raise NetworkError(
                f"network namespace(s) {taken} already exist (a previous run with pid {self.pid} was not cleaned "
                f"up?); remove them with `ip netns del NAME` or run with another id"
            )
        u, e, c = names["user"], names["edge"], names["cloud"]
        try:
            for name in (u, e, c):
                _run(["ip", "netns", "add", name])
                self.namespaces[name] = name
                _run(["ip", "-n", name, "link", "set", "lo", "up"])
            ua, ea, ew, cw = (f"ob{self.pid}{s}" for s in ("ua", "ea", "ew", "cw"))
            _run(["ip", "link", "add", ua, "netns", u, "type", "veth", "peer", "name", ea, "netns", e])
            _run(["ip", "link", "add", ew, "netns", e, "type", "veth", "peer", "name", cw, "netns", c])
            for ns, dev, address in (
                (u, ua, USER_ADDRESS),
                (e, ea, EDGE_ADDRESS),
                (e, ew, EDGE_WAN_ADDRESS),
                (c, cw, CLOUD_ADDRESS),
            ):
                _run(["ip", "-n", ns, "addr", "add", f"{address}/30", "dev", dev])
                _run(["ip", "-n", ns, "link", "set", dev, "up"])
            _run(["ip", "-n", u, "route", "add", f"{CLOUD_ADDRESS}/32", "via", EDGE_ADDRESS])
            _run(["ip", "-n", c, "route", "add", f"{USER_ADDRESS}/32", "via", EDGE_WAN_ADDRESS])
            _run(["ip", "netns", "exec", e, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            self.shapers = [
                Shaper(u, ua, access_up, "access uplink"),
                Shaper(e, ea, access_down, "access downlink"),
                Shaper(e, ew, wan_up, "WAN uplink"),
                Shaper(c, cw, wan_down, "WAN downlink"),
            ]
            for shaper in self.shapers:
                _run(
                    [
                        "tc",
                        "-n",
                        shaper.namespace,
                        "qdisc",
                        "add",
                        "dev",
                        shaper.device,
                        "root",
                        *tbf_arguments(shaper.rate.rate_mbps(0.0)),
                    ]
                )
        except BaseException:
            self.close()
            raise

    def prefix(self, role: str) -> list[str]:
        """The command prefix that runs a program in ``role``'s namespace (empty in loopback mode)."""
        if self.mode == "loopback":
            return []
        return ["ip", "netns", "exec", namespace_names(self.pid)[role]]

    def set_rates(self, t_s: float) -> None:
        """Set every shaper to its rate function's value at ``t_s`` seconds into the run."""
        for shaper in self.shapers:
            _run(
                [
                    "tc",
                    "-n",
                    shaper.namespace,
                    "qdisc",
                    "change",
                    "dev",
                    shaper.device,
                    "root",
                    *tbf_arguments(shaper.rate.rate_mbps(t_s)),
                ]
            )

    def qdiscs(self) -> str:
        """``tc qdisc show`` of every namespace of this run (for checks)."""
        return "".join(_run(["tc", "-n", ns, "qdisc", "show"]) for ns in self.namespaces)

    def close(self) -> None:
        """Delete every namespace this object created (and with them their veths and qdiscs). Idempotent."""
        errors = []
        for name in list(self.namespaces):
            done = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if done.returncode != 0 and name in existing_namespaces():
                errors.append(f"{name}: {done.stderr.strip()}")
            else:
                del self.namespaces[name]
        self.shapers = []
        if errors:
            raise NetworkError(f"could not delete namespace(s): {errors}")


def breakpoints_s(rate: RateFunction, until_s: float) -> list[float]:
    """Times (s) in ``[0, until_s)`` at which ``rate`` may change: every trace sample boundary."""
    if rate.constant_mbps is not None:
        return [0.0]
    times = [t for t in rate.prefix_times_s.tolist() if t < until_s]
    start = rate.prefix_end_s
    while start < until_s:
        times += [start + t for t in rate.tail_times_s[:-1].tolist() if start + t < until_s]
        start += rate.period_s
    return sorted(set([0.0, *times]))


class RateController:
    """Changes the kernel shapers at every trace breakpoint, on the run's clock (namespace mode only).

    Args:
        network: the run's network.
        start_s: CLOCK_MONOTONIC time (s) at which the traces start.
        until_s: last time (s, from ``start_s``) to schedule.
    """

    def __init__(self, network: Network, start_s: float, until_s: float) -> None:
        self.network = network
        self.start_s = start_s
        times = set()
        for shaper in network.shapers:
            times.update(breakpoints_s(shaper.rate, until_s))
        self.times_s = sorted(times)
        self.n_changes = 0

    async def run(self) -> None:
        """Apply each breakpoint's rates when its time comes (cancel the task to stop)."""
        loop = asyncio.get_running_loop()
        for t in self.times_s[1:]:
            delay = self.start_s + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await loop.run_in_executor(None, self.network.set_rates, t)
            self.n_changes += 1
