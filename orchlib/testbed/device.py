"""An end device: one client process per user that runs inference locally or sends it to a server.

Run as ``python -m orchlib.testbed.device CONFIG_JSON`` (the testbed starts it inside the users' namespace, or on
loopback). It builds the offered variants once (untrained, seeded; torch on one thread), prints one JSON line
``{"event": "ready"}``, then reads one JSON command per line on stdin and answers one JSON line per command on
stdout, in completion order, matched by ``id``:

* ``{"id": i, "op": "infer", "tier": "end" | "edge" | "cloud", "variant": NAME}``. ``end``: the inference runs
  here, one at a time in arrival order (the device's own queue), stretched to the emulated device class by
  the calibration factor of the variant (:func:`calibrate`): the process stays busy ``factor`` times the real
  inference time (the real run, then a sleep for the rest). ``edge``/``cloud``: the variant's payload
  (:mod:`orchlib.testbed.wire`) is posted to the server over a kept-alive HTTP connection (httpx).
* ``{"id": i, "op": "probe", "tier": T}``: the same path as ``infer`` with nothing to compute: ``end``, a
  no-op through the device's own worker; ``edge``/``cloud``, the server's empty-payload request (``POST /infer``
  with ``X-Probe: 1``, :mod:`orchlib.testbed.server`). It measures the per-request protocol cost (L11).
* ``{"id": i, "op": "bulk", "tier": T, "n_bytes": N}``: one bulk upload to the server's ``/sink``.
* ``{"id": i, "op": "echo", "tier": T, "n": K}``: ``K`` pairs of sequential round trips, ``GET /echo`` (with the
  server's added delay, ``rtt_ms``) and ``GET /ping`` (without, ``base_ms``).

Every answer carries CLOCK_MONOTONIC times in seconds (the clock is shared by every process on the machine,
whatever its network namespace). A failed request answers ``{"id": i, "ok": false, "error": REASON}``; every
request is bounded by ``timeout_s``. The process ends when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from orchlib.testbed import wire


@dataclass(frozen=True)
class DeviceConfig:
    """What one device process runs (passed as JSON)."""

    #: the user's index.
    user: int
    #: variants the device can run or request.
    variants: tuple[str, ...]
    #: calibration factor per variant: emulated compute time = factor x real local inference time.
    stretch: dict[str, float]
    #: base URL of each server tier, e.g. ``{"edge": "http://198.18.0.2:8080", ...}``.
    urls: dict[str, str]
    #: payload kind (:data:`orchlib.testbed.wire.PAYLOAD_KINDS`).
    payload: str = "raw"
    #: bound on every request and command, s.
    timeout_s: float = 10.0
    #: seed of the weights and input images.
    seed: int = 0
    #: extra settings kept for the record.
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DeviceConfig:
        data = json.loads(text)
        data["variants"] = tuple(data["variants"])
        return cls(**data)


def input_tensor(resolution: int, rng: np.random.Generator | int | None) -> np.ndarray:
    """A ``(3, resolution, resolution)`` uint8 image (random pixels: latency does not depend on content)."""
    rng = np.random.default_rng(rng)
    return rng.integers(0, 256, size=(3, resolution, resolution), dtype=np.uint8)


def calibrate(
    variants: tuple[str, ...],
    target_median_ms: dict[str, float],
    repeats: int = 15,
    warmup: int = 3,
    rng: np.random.Generator | int | None = 0,
    idle_gap_ms: float | None = None,
) -> list[dict[str, Any]]:
    """Measure this machine's batch-1 latency of each variant on one thread and the stretch to the target.

    Method: a fresh untrained model per variant, ``warmup`` untimed and ``repeats`` timed forward passes with
    :func:`orchlib.profiling.profiler.measure_latency_ms` on one torch thread, each after ``idle_gap_ms`` of
    idle time (None: :data:`~orchlib.profiling.profiler.AS_SERVED_GAP_MS`, as served: a device runs sporadic
    requests, and a pass after idle time is slower than back to back, T12); ``factor = target median /
    local median``. A factor below 1 means the emulated device is faster than this machine; it cannot be
    emulated, the device then runs unstretched (factor 1) and the row says so (``emulable`` False).

    Returns:
        One dict per variant: ``model``, ``local_median_ms``, ``target_median_ms``, ``factor``, ``emulable``.
    """
    import torch

    from orchlib.profiling.mobilenet import build_variant, parse_variant
    from orchlib.profiling.profiler import AS_SERVED_GAP_MS, measure_latency_ms

    gap = AS_SERVED_GAP_MS if idle_gap_ms is None else idle_gap_ms
    rng = np.random.default_rng(rng)
    rows = []
    for name in variants:
        model = build_variant(name, rng=rng)
        resolution = parse_variant(name).resolution
        example = torch.from_numpy(wire.to_model_input(input_tensor(resolution, rng)))
        local = float(
            np.median(
                measure_latency_ms(model, example, threads=1, repeats=repeats, warmup=warmup, idle_gap_ms=gap)
            )
        )
        target = float(target_median_ms[name])
        rows.append(
            {
                "model": name,
                "local_median_ms": local,
                "target_median_ms": target,
                "factor": max(1.0, target / local),
                "emulable": target >= local,
            }
        )
    return rows


#: the empty-payload request of the ``probe`` command (see :mod:`orchlib.testbed.server`).
_PROBE = wire.Payload(b"", {"X-Probe": "1", "Content-Type": "application/octet-stream"})


class Device:
    """The device process's state: models, payloads, HTTP clients, the local one-at-a-time worker."""

    def __init__(self, config: DeviceConfig) -> None:
        import httpx
        import torch

        from orchlib.profiling.variants import parse_variant
        from orchlib.testbed.server import build_models

        self.config = config
        rng = np.random.default_rng(config.seed)
        self.models = build_models(config.variants, threads=1, seed=config.seed)
        tensors = {name: input_tensor(parse_variant(name).resolution, rng) for name in config.variants}
        self.inputs = {name: torch.from_numpy(wire.to_model_input(t)) for name, t in tensors.items()}
        self.payloads = {name: wire.encode(t, name, config.payload) for name, t in tensors.items()}
        self.local = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
        from orchlib.testbed.server import KEEPALIVE_S

        # One bound for every phase, connecting included: on the shared cores a server may not be scheduled
        # for a while, which is slowness to measure, not a failure.
        timeout = httpx.Timeout(config.timeout_s)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_S)
        self.clients = {
            tier: httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits, trust_env=False)
            for tier, url in config.urls.items()
        }

    def _run_local(self, variant: str) -> tuple[float, float, float]:
        import torch

        start = time.monotonic()
        with torch.inference_mode():
            self.models[variant](self.inputs[variant])
        real = time.monotonic() - start
        factor = self.config.stretch.get(variant, 1.0)
        # The device stays busy for the whole emulated time, so later local requests wait behind it.
        time.sleep(real * (factor - 1.0))
        return start, time.monotonic(), real * 1e3

    @staticmethod
    def _run_nothing() -> tuple[float, float, float]:
        now = time.monotonic()
        return now, now, 0.0

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op, tier = command.get("op"), command.get("tier")
        received = time.monotonic()
        if op in ("infer", "probe") and tier == "end":
            loop = asyncio.get_running_loop()
            if op == "probe":
                start, end, real_ms = await loop.run_in_executor(self.local, self._run_nothing)
            else:
                start, end, real_ms = await loop.run_in_executor(
                    self.local, self._run_local, command["variant"]
                )
            return {"ok": True, "received_s": received, "start_s": start, "end_s": end, "real_ms": real_ms}
        client = self.clients[tier]
        if op in ("infer", "probe"):
            payload = self.payloads[command["variant"]] if op == "infer" else _PROBE
            sent = time.monotonic()
            response = await client.post("/infer", content=payload.body, headers=payload.headers)
            done = time.monotonic()
            if response.status_code != 200:
                return {"ok": False, "error": f"HTTP {response.status_code}: {response.text[:200]}"}
            h = response.headers
            return {
                "ok": True,
                "received_s": received,
                "sent_s": sent,
                "done_s": done,
                "upload_bytes": len(payload.body),
                "result_bytes": len(response.content),
                "server_received_s": float(h["x-received-s"]),
                "server_start_s": float(h["x-start-s"]),
                "server_end_s": float(h["x-end-s"]),
                "queue_length": int(h["x-queue-length"]),
                "propagation_ms": float(h["x-propagation-ms"]),
            }
        if op == "bulk":
            sent = time.monotonic()
            response = await client.post("/sink", content=b"\0" * int(command["n_bytes"]))
            response.raise_for_status()
            return {"ok": True, "sent_s": sent, **response.json()}
        if op == "echo":
            samples: dict[str, list[float]] = {"/echo": [], "/ping": []}
            for _ in range(int(command.get("n", 1))):
                for path, values in samples.items():
                    start = time.monotonic()
                    (await client.get(path)).raise_for_status()
                    values.append((time.monotonic() - start) * 1e3)
            return {"ok": True, "rtt_ms": samples["/echo"], "base_ms": samples["/ping"]}
        return {"ok": False, "error": f"unknown command op={op!r} tier={tier!r}"}

    async def answer(self, command: dict[str, Any]) -> None:
        try:
            reply = await asyncio.wait_for(self.handle(command), self.config.timeout_s)
        except TimeoutError:
            reply = {"ok": False, "error": f"timeout: no answer within {self.config.timeout_s} s"}
        except Exception as exc:  # every failure becomes a recorded answer, never a dead device
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply["id"] = command.get("id")
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.local.shutdown(wait=False, cancel_futures=True)


async def _serve(config: DeviceConfig) -> None:
    device = Device(config)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"event": "ready", "user": config.user}), flush=True)
    tasks: set[asyncio.Task] = set()
    while line := await reader.readline():
        try:
            command = json.loads(line)
        except json.JSONDecodeError:
            print(
                json.dumps({"id": None, "ok": False, "error": f"bad command line {line[:80]!r}"}), flush=True
            )
            continue
        task = asyncio.create_task(device.answer(command))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()
    await device.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m orchlib.testbed.device CONFIG_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchlib.testbed.device CONFIG_JSON", file=sys.stderr)
        return 2
    asyncio.run(_serve(DeviceConfig.from_json(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
