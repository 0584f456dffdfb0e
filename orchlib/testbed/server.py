"""An edge or cloud inference server: one process, FastAPI on uvicorn, MobileNetV1 variants built once.

Run as ``python -m orchlib.testbed.server CONFIG_JSON`` (the testbed starts it, inside the server's network
namespace or on loopback). The process refuses to bind anything but a loopback address or an address of the
benchmarking range 198.18.0.0/15 (which the testbed assigns only inside namespaces it created), builds every
offered variant once (float32, or int8 through :func:`orchlib.profiling.mobilenet.build_variant`), pins torch
to ``threads`` threads, and prints one line ``ready`` on stdout when it accepts connections.

Endpoints:

* ``POST /infer``: the request of :mod:`orchlib.testbed.wire`; answers the float32 scores and the timing
  headers of :data:`orchlib.testbed.wire.TIMING_HEADERS`, among them the queue length the server had when
  the request arrived. ``n_workers`` inferences run at once (a thread pool); the others wait in FIFO order.
  With ``X-Probe: 1`` and an empty body it is the **empty-payload request** that measures the per-request
  protocol cost (assumption L11): the same path (body read, link shaping, queue bookkeeping, the added delay,
  the hand-off to a worker thread, the timing headers) with no input, no inference and an empty answer.
* ``POST /sink``: reads and discards up to :data:`MAX_SINK_BYTES` (the bulk-throughput check of the links).
* ``GET /echo``: answers after the propagation delay; ``GET /ping`` at once (together: the RTT check).

Propagation delay is added here, in user space (the kernel has no ``netem``): ``propagation_ms / 2`` after the
body is received and again before the response is sent. In loopback mode the server also plays the links of
its path in user space (:class:`VirtualLink`), with the simulator's own rate functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from orchlib.testbed import wire

#: Largest body ``POST /sink`` accepts, bytes (a bulk transfer of a few seconds at tens of Mbit/s).
MAX_SINK_BYTES = 32 * 1024 * 1024

#: seconds an idle client connection is kept (devices); the server keeps them longer.
KEEPALIVE_S = 60.0

#: Exit code when the address or port cannot be bound (taken, or not allowed).
EXIT_BIND = 3

_BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")


def check_bind_address(host: str) -> str:
    """Return ``host`` if a testbed server may bind it: loopback or 198.18.0.0/15 (RFC 2544), else raise.

    Raises:
        ValueError: any other address, a wildcard such as ``0.0.0.0``, or a host name.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"server host must be a literal IP address (loopback or 198.18.0.0/15), got {host!r}"
        ) from None
    if address.is_loopback or (address.version == 4 and address in _BENCHMARK_NET):
        return host
    raise ValueError(
        f"server host {host} is not allowed: bind only loopback (127.0.0.0/8, ::1) or an address of "
        "198.18.0.0/15 assigned inside a namespace of this run"
    )


@dataclass(frozen=True)
class ServerConfig:
    """What one server process runs (passed to the process as JSON)."""

    #: ``"edge"`` or ``"cloud"`` (labels and the loopback links it plays).
    tier: str
    #: address to bind (checked by :func:`check_bind_address`).
    host: str
    #: TCP port.
    port: int
    #: variant names served.
    variants: tuple[str, ...]
    #: inferences run at once (the scenario's ``n_workers``).
    n_workers: int = 1
    #: torch intra-op threads (pinned with ``torch.set_num_threads``).
    threads: int = 1
    #: user-space propagation delay added per request, ms (the path's RTT; half each way).
    propagation_ms: float = 0.0
    #: loopback mode only: the scenario (``Scenario.to_dict``) whose links this server plays in user space.
    shaping_scenario: dict[str, Any] | None = None
    #: loopback mode only: CLOCK_MONOTONIC time (s) at which the run's traces start.
    trace_start_s: float = 0.0
    #: seed of the untrained weights.
    seed: int = 0
    #: extra settings kept for the record.
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        data = json.loads(text)
        data["variants"] = tuple(data["variants"])
        return cls(**data)


class VirtualLink:
    """A FIFO link played in user space (loopback mode): one transfer at a time, at the rate function's speed.

    The rule is the simulator's (``docs/assumptions.md`` L2, L3), evaluated on the wall clock: a transfer that
    starts when the link is busy waits for it, then takes :func:`orchlib.system.latency.transfer_time_ms`.
    """

    def __init__(self, rate: Any, trace_start_s: float) -> None:
        self.rate = rate
        self.trace_start_s = trace_start_s
        self.free_s = 0.0
        self._lock = threading.Lock()

    def reserve(self, n_bytes: float, ready_s: float) -> float:
        """Book a transfer of ``n_bytes`` ready at ``ready_s`` (monotonic s); return when it ends."""
        from orchlib.system.latency import transfer_time_ms

        with self._lock:
            start = max(ready_s, self.free_s)
            duration = transfer_time_ms(self.rate, n_bytes, (start - self.trace_start_s) * 1e3) / 1e3
            self.free_s = start + duration
            return self.free_s


def _virtual_links(config: ServerConfig) -> tuple[list[VirtualLink], list[VirtualLink]]:
    """(links up, links down) this server plays in loopback mode, in path order."""
    if config.shaping_scenario is None:
        return [], []
    from orchlib.system.scenario import Scenario
    from orchlib.system.simulator import build_system

    system = build_system(Scenario.from_dict(config.shaping_scenario))
    up = [VirtualLink(system.access_up, config.trace_start_s)]
    down = [VirtualLink(system.access_down, config.trace_start_s)]
    if config.tier == "cloud":
        up.append(VirtualLink(system.wan_up, config.trace_start_s))
        down.insert(0, VirtualLink(system.wan_down, config.trace_start_s))
    return up, down


def build_models(variants: tuple[str, ...], threads: int, seed: int) -> dict[str, Any]:
    """Every variant built once (untrained, seeded), torch pinned to ``threads`` threads."""
    import torch

    from orchlib.profiling.mobilenet import build_variant

    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    models = {name: build_variant(name, rng=rng) for name in variants}
    warm_up(models)
    return models


#: untimed forward passes per model at start-up: the first passes of a torch model are several times slower
#: (allocation, kernel selection) and would otherwise land on the first requests.
WARMUP_PASSES = 3


def warm_up(models: dict[str, Any]) -> None:
    """Run :data:`WARMUP_PASSES` forward passes of every model on a zero input."""
    import torch

    from orchlib.profiling.variants import parse_variant

    for name, model in models.items():
        resolution = parse_variant(name).resolution
        with torch.inference_mode():
            for _ in range(WARMUP_PASSES):
                model(torch.zeros((1, 3, resolution, resolution)))


def create_app(config: ServerConfig, models: dict[str, Any]) -> FastAPI:
    """The FastAPI application of one server (``models``: variant name -> torch module)."""
    import torch

    from orchlib.profiling.variants import parse_variant

    app = FastAPI(title=f"orchlib {config.tier} server")
    pool = ThreadPoolExecutor(max_workers=config.n_workers, thread_name_prefix=f"{config.tier}-worker")
    half_s = config.propagation_ms / 2e3
    links_up, links_down = _virtual_links(config)
    state = {"in_system": 0}
    resolutions = {name: parse_variant(name).resolution for name in models}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request: Request, limit: int) -> bytes:
        wire.check_length(request.headers.get("content-length"))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise wire.WireError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def shape(links: list[VirtualLink], n_bytes: int) -> None:
        ready = time.monotonic()
        for link in links:
            ready = link.reserve(n_bytes, ready)
        await asyncio.sleep(max(0.0, ready - time.monotonic()))

    def infer(model: Any, tensor: np.ndarray | None) -> tuple[bytes, float, float]:
        start = time.monotonic()
        if model is None:  # a probe: the worker hand-off alone
            return b"", start, start
        with torch.inference_mode():
            scores = model(torch.from_numpy(wire.to_model_input(tensor)))
        end = time.monotonic()
        return scores.numpy().astype(np.float32).tobytes(), start, end

    @app.post("/infer")
    async def infer_endpoint(request: Request) -> Response:
        variant = request.headers.get("x-variant")
        probe = request.headers.get("x-probe") == "1"
        if not probe and variant not in models:
            return error(404, f"X-Variant must be one of {sorted(models)}, got {variant!r}")
        try:
            body = await read_body(request, wire.MAX_BODY_BYTES)
            if probe and body:
                raise wire.WireError(400, "a probe (X-Probe: 1) carries no body")
            tensor = None if probe else wire.decode(body, dict(request.headers), resolutions[variant])
        except wire.WireError as bad:
            return error(bad.status, str(bad))
        await shape(links_up, len(body))
        received = time.monotonic()
        queue_length = state["in_system"]
        state["in_system"] += 1
        try:
            await asyncio.sleep(half_s)
            loop = asyncio.get_running_loop()
            model = None if probe else models[variant]
            scores, start, end = await loop.run_in_executor(pool, infer, model, tensor)
        finally:
            state["in_system"] -= 1
        await shape(links_down, len(scores))
        await asyncio.sleep(half_s)
        headers = {
            "X-Received-S": repr(received),
            "X-Start-S": repr(start),
            "X-End-S": repr(end),
            "X-Queue-Length": str(queue_length),
            "X-Propagation-Ms": repr(config.propagation_ms),
        }
        return Response(scores, media_type="application/octet-stream", headers=headers)

    @app.post("/sink")
    async def sink(request: Request) -> Response:
        started = time.monotonic()
        try:
            body = await read_body_unchecked(request)
        except wire.WireError as bad:
            return error(bad.status, str(bad))
        await shape(links_up, len(body))
        return JSONResponse({"n_bytes": len(body), "first_byte_s": started, "received_s": time.monotonic()})

    async def read_body_unchecked(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_SINK_BYTES:
                raise wire.WireError(413, f"sink body exceeds the limit of {MAX_SINK_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/trace-start")
    async def trace_start(t: float) -> Response:
        # loopback mode: the run tells its servers when the traces start (the links' time 0)
        for link in links_up + links_down:
            link.trace_start_s = t
        return JSONResponse({"trace_start_s": t})

    @app.get("/ping")
    async def ping() -> Response:
        # the same round trip as /echo without the added delay: the baseline the RTT check subtracts
        return JSONResponse({"queue_length": state["in_system"], "propagation_ms": 0.0})

    @app.get("/echo")
    async def echo() -> Response:
        await asyncio.sleep(2 * half_s)
        return JSONResponse({"queue_length": state["in_system"], "propagation_ms": config.propagation_ms})

    app.state.pool = pool
    return app


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(
                f"cannot bind {host}:{port}: {exc.strerror} (port taken or address absent)"
            ) from None


async def _serve(config: ServerConfig) -> None:
    import uvicorn

    models = build_models(config.variants, config.threads, config.seed)
    app = create_app(config, models)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            # longer than the devices keep idle connections (device.KEEPALIVE_S), so a device never sends on a
            # connection the server is closing (uvicorn's default of 5 s raced with requests a few seconds apart)
            timeout_keep_alive=KEEPALIVE_S + 30,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    await task
    app.state.pool.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a server process: ``python -m orchlib.testbed.server CONFIG_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchlib.testbed.server CONFIG_JSON", file=sys.stderr)
        return 2
    config = ServerConfig.from_json(args[0])
    try:
        check_bind_address(config.host)
        _check_port_free(config.host, config.port)
    except (ValueError, OSError) as bad:
        print(f"{config.tier} server: {bad}", file=sys.stderr, flush=True)
        return EXIT_BIND
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
