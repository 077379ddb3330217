"""Websocket service (protocol v1, docs/protocol.md): ``streamasr serve``.

One coroutine per connection owns that stream's state (a local of ``_Session``); the shared
``InferenceWorker`` runs every stream's pending audio as one batched model call off the event loop.
The same port answers ``GET /`` (browser demo), ``/worklet.js``, ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import http
import logging
import os
import signal
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from streamasr import protocol
from streamasr.session import Session
from streamasr.stream import Recognizer
from streamasr.worker import InferenceWorker, WorkerConfig

log = logging.getLogger(__name__)

TOKEN_ENV = "STREAMASR_TOKEN"  # environment variable read by ``streamasr serve`` when --token is absent
WEB_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
             "/index.html": ("index.html", "text/html; charset=utf-8"),
             "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8")}


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # interface to listen on
    port: int = 8765  # TCP port (0: any free port)
    max_connections: int = 64  # concurrent streams; more are refused at the handshake with HTTP 503
    max_frame_bytes: int = 1 << 20  # bytes per websocket message; a larger one closes with 1009
    idle_timeout: float = 30.0  # seconds without any client message before close 1008
    max_stream_seconds: float = 4 * 3600.0  # seconds of audio per stream; beyond: last final, close 1008
    partial_interval_ms: float = 200.0  # ms: least time between two partials of one stream
    max_pending_seconds: float = 10.0  # seconds of received, unprocessed audio per stream before reading pauses
    shutdown_timeout: float = 10.0  # seconds to deliver finals on SIGTERM/SIGINT before closing anyway
    token: str = ""  # bearer token clients must send ("" = none); the CLI also reads STREAMASR_TOKEN

    def __post_init__(self) -> None:
        checks: tuple[tuple[str, float, float], ...] = (
            ("port", 0, 65535), ("max_connections", 1, 100000), ("max_frame_bytes", 1024, 1 << 30),
            ("idle_timeout", 0.1, 86400), ("max_stream_seconds", 1, 7 * 86400),
            ("partial_interval_ms", 0, 60000), ("max_pending_seconds", 0.1, 3600),
            ("shutdown_timeout", 0, 3600))
        for name, low, high in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"ServerConfig.{name} must be in [{low}, {high}], got {value!r}")
        if not self.host:
            raise ValueError("ServerConfig.host must be a host name or address, got ''")


class Metrics:
    """Counters for ``GET /metrics`` (Prometheus text format 0.0.4)."""

    def __init__(self) -> None:
        self.streams_total = 0
        self.errors: Counter[str] = Counter()  # by protocol error code / disconnect kind
        self.rejected: Counter[str] = Counter()  # handshakes refused, by reason

    def render(self, active: int, worker: InferenceWorker) -> str:
        s = worker.stats
        rows: list[tuple[str, str, str, list[tuple[str, float]]]] = [
            ("active_streams", "gauge", "Streams connected now.", [("", active)]),
            ("streams_total", "counter", "Streams accepted since start.", [("", self.streams_total)]),
            ("audio_seconds_total", "counter", "Seconds of audio processed.", [("", s.audio_seconds)]),
            ("compute_seconds_total", "counter", "Seconds the inference worker computed.", [("", s.compute_seconds)]),
            ("real_time_factor", "gauge", "Compute seconds per audio second since start.",
             [("", s.real_time_factor)]),
            ("queue_depth", "gauge", "Stream steps waiting for the inference worker.", [("", worker.queue_depth)]),
            ("batches_total", "counter", "Batched model calls.", [("", s.calls)]),
            ("batch_streams_total", "counter", "Stream steps served by batched calls.", [("", s.requests)]),
            ("errors_total", "counter", "Streams ended by an error, by kind.",
             [(f'{{kind="{k}"}}', v) for k, v in sorted(self.errors.items())]),
            ("rejected_total", "counter", "Handshakes refused, by reason.",
             [(f'{{reason="{k}"}}', v) for k, v in sorted(self.rejected.items())]),
        ]
        lines: list[str] = []
        for name, kind, help_text, samples in rows:
            lines += [f"# HELP streamasr_{name} {help_text}", f"# TYPE streamasr_{name} {kind}"]
            lines += [f"streamasr_{name}{labels} {value:g}" for labels, value in samples]
        return "\n".join(lines) + "\n"


class StreamServer:
    """The websocket service: ``async with StreamServer(rec, cfg) as server: ...``."""

    def __init__(self, rec: Recognizer, cfg: ServerConfig | None = None,
                 worker_cfg: WorkerConfig | None = None) -> None:
        self.rec = rec
        self.cfg = cfg or ServerConfig()
        self.worker = InferenceWorker(rec, worker_cfg)
        self.metrics = Metrics()
        self.sessions: set[Session] = set()
        self._slots = asyncio.Semaphore(self.cfg.max_connections)
        self._server: Server | None = None
        web = resources.files("streamasr") / "web"
        self._pages = {path: ((web / name).read_text(encoding="utf-8"), ctype)
                       for path, (name, ctype) in WEB_FILES.items()}

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``ws://host:port/v1/stream`` of the running server."""
        return f"ws://{self.cfg.host}:{self.port}{protocol.PATH}"

    async def start(self) -> None:
        self.worker.start()
        self._server = await serve(
            self._handler, self.cfg.host, self.cfg.port, process_request=self._process_request,
            max_size=self.cfg.max_frame_bytes, close_timeout=5, compression=None)
        log.info("serving ws://%s:%d%s (model %s, at most %d streams)", self.cfg.host, self.port,
                 protocol.PATH, self.rec.name, self.cfg.max_connections)

    async def shutdown(self) -> None:
        """Stop accepting, finish every stream with its finals (bounded wait), stop the worker."""
        if self._server is None:
            return
        server, self._server = self._server, None
        log.info("shutting down: finishing %d streams", len(self.sessions))
        server.close(close_connections=False)  # stops listening; handshakes in progress get 503
        for session in list(self.sessions):
            session.shutdown()
        try:
            async with asyncio.timeout(self.cfg.shutdown_timeout + 6):
                await server.wait_closed()
        except TimeoutError:
            log.warning("%d connections did not close in time; aborting them", len(server.connections))
            for connection in server.connections:
                connection.transport.abort()
        await self.worker.close()
        log.info("server stopped")

    async def __aenter__(self) -> StreamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def _authorized(self, request: Request) -> bool:
        if not self.cfg.token:
            return True
        header = request.headers.get("Authorization", "")
        offered = header[7:] if header[:7].lower() == "bearer " else ""
        if not offered:  # browsers cannot set headers on a websocket: ?token=... instead
            offered = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        return hmac.compare_digest(offered.encode(), self.cfg.token.encode())

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return _typed(connection.respond(http.HTTPStatus.OK, self.metrics.render(len(self.sessions), self.worker)),
                          "text/plain; version=0.0.4; charset=utf-8")
        if path in self._pages:
            body, ctype = self._pages[path]
            return _typed(connection.respond(http.HTTPStatus.OK, body), ctype)
        if path != protocol.PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"no such path {path!r}; the stream is at "
                                                                 f"{protocol.PATH}\n")
        if not self._authorized(request):
            self.metrics.rejected["unauthorized"] += 1
            response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="streamasr"'
            return response
        if self._slots.locked():
            self.metrics.rejected["overload"] += 1
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"server at capacity ({self.cfg.max_connections} streams); retry later\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        # The one place a stream slot is taken and given back.
        if self._slots.locked():  # lost a race with another handshake
            self.metrics.rejected["overload"] += 1
            await ws.close(protocol.CLOSE_TRY_AGAIN, "server at capacity")
            return
        async with self._slots:
            session = Session(ws, self.rec, self.worker, self.cfg, self.metrics)
            self.sessions.add(session)
            self.metrics.streams_total += 1
            try:
                await session.run()
            finally:
                self.sessions.discard(session)


def _typed(response: Response, content_type: str) -> Response:
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


async def serve_until_signalled(rec: Recognizer, cfg: ServerConfig, worker_cfg: WorkerConfig) -> None:
    """Run the service until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with StreamServer(rec, cfg, worker_cfg):
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    from streamasr.cli import add_dataclass_options

    parser: argparse.ArgumentParser = sub.add_parser(
        "serve", help="websocket service with a browser demo page",
        description=f"Serve protocol v1 on ws://HOST:PORT{protocol.PATH}, plus /, /healthz and /metrics. "
                    f"The bearer token may also come from ${TOKEN_ENV}.")
    parser.add_argument("--model", default=None, help="checkpoint path (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the inference worker (default: 1)")
    parser.add_argument("--quantize", action="store_true",
                        help="int8 dynamic quantisation of the model (faster; see docs/benchmarks.md)")
    add_dataclass_options(parser, ServerConfig)
    add_dataclass_options(parser, WorkerConfig)
    parser.set_defaults(func=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    import torch

    from streamasr.cli import dataclass_from_args

    if not args.token:
        args.token = os.environ.get(TOKEN_ENV, "")
    cfg = dataclass_from_args(ServerConfig, args)
    worker_cfg = dataclass_from_args(WorkerConfig, args)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.model, args.quantize)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(rec, cfg, worker_cfg))
    return 0
