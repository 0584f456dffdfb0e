"""Measure the live testbed's links: shaped bulk throughput and the RTT added in user space (namespace mode, root).

Starts a one-user testbed on steady links (20 Mbit/s access uplink with 20 ms RTT, WAN 200 Mbit/s with 10 ms RTT),
sends three 2.5 MB bulk uploads to the edge and one through the edge to the cloud, and ten ``/echo`` and ``/ping``
round trips per server, then prints a table and removes everything. Run:
``.venv/bin/python benchmarks/bench_testbed_links.py`` (as root). ``tests/test_testbed.py`` asserts the bounds.
It is section 10 of ``benchmarks/run_all.py``, skipped without root or in quick mode (it starts real processes and
namespaces; the live test makes the same measurements).
"""

from __future__ import annotations

import asyncio
import os

from harness import Config, Section, Target

from orchlib.system.scenario import LinkSpec, preset
from orchlib.system.simulator import build_system
from orchlib.testbed.links import netns_available
from orchlib.testbed.run import Testbed

TITLE = "10. Testbed links: shaped throughput and added RTT (namespace mode)"
VARIANT = "mobilenet_v1_0.25_128_quant"
ACCESS = LinkSpec(uplink_mbps=20.0, downlink_mbps=40.0, rtt_ms=20.0)
WAN = LinkSpec(uplink_mbps=200.0, downlink_mbps=200.0, rtt_ms=10.0)


async def measure() -> list[tuple[str, str, str, float, float]]:
    """(measurement, set value, measured value, set number, measured number) rows."""
    scenario = preset("testbed").replace(n_users=1, variant_subset=(VARIANT,), access=ACCESS, wan=WAN)
    testbed = Testbed(build_system(scenario), "netns", {VARIANT: 1.0})
    rows = []
    try:
        await testbed.start()
        for tier in ("edge", "edge", "edge", "cloud"):
            bulk = await testbed.ask(0, {"op": "bulk", "tier": tier, "n_bytes": 2_500_000})
            mbps = bulk["n_bytes"] * 8 / (bulk["received_s"] - bulk["sent_s"]) / 1e6
            rows.append(
                (
                    f"bulk 2.5 MB to {tier}",
                    f"{ACCESS.uplink_mbps:g} Mbit/s",
                    f"{mbps:.2f} Mbit/s",
                    ACCESS.uplink_mbps,
                    mbps,
                )
            )
        for tier, rtt in (("edge", ACCESS.rtt_ms), ("cloud", ACCESS.rtt_ms + WAN.rtt_ms)):
            echo = await testbed.ask(0, {"op": "echo", "tier": tier, "n": 10})
            added = min(echo["rtt_ms"]) - min(echo["base_ms"])
            rows.append((f"added RTT, {tier} path", f"{rtt:g} ms", f"{added:.2f} ms", rtt, added))
            base = min(echo["base_ms"])
            rows.append((f"bare HTTP round trip, {tier}", "-", f"{base:.2f} ms", float("nan"), base))
    finally:
        await testbed.close()
    return rows


def run(config: Config) -> Section:
    """Section 10 of RESULTS.md: skipped in quick mode and without root (the reason is in the section)."""
    section = Section(TITLE)
    if config.quick or not netns_available():
        why = "quick mode" if config.quick else "no root (CAP_NET_ADMIN) with `ip` and `tc`"
        section.table(("measurement", "result"), [("all", f"skipped: {why}")])
        return section
    rows = asyncio.run(measure())
    section.intro = f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    section.table(("measurement", "set", "measured"), [row[:3] for row in rows])
    for name, _, value, target, measured in rows:
        if name.startswith("bulk"):
            ok = abs(measured - target) <= 0.1 * target
            section.targets.append(
                Target(name, f"within 10% of {target:g} Mbit/s", value, ok, "" if ok else "TCP")
            )
        elif name.startswith("added"):
            ok = abs(measured - target) <= 2.0
            section.targets.append(
                Target(name, f"within 2 ms of {target:g} ms", value, ok, "" if ok else "load")
            )
    return section


def main() -> None:
    if not netns_available():
        raise SystemExit("needs root (CAP_NET_ADMIN) with `ip` and `tc`: the links are network namespaces")
    rows = asyncio.run(measure())
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'measurement':32s} {'set':>12s} {'measured':>14s}")
    for name, target, value, _, _ in rows:
        print(f"{name:32s} {target:>12s} {value:>14s}")


if __name__ == "__main__":
    main()
