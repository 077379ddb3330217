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
import socket
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from streamasr.service import protocol
from streamasr.engine.adapt import AdaptConfig
from streamasr.engine.beam import DecoderConfig
from streamasr.service.config import ServerConfig
from streamasr.service.metrics import Metrics
from streamasr.service.session import Session
from streamasr.engine.stream import Recognizer
from streamasr.service.worker import InferenceWorker, WorkerConfig

log = logging.getLogger(__name__)

TOKEN_ENV = "STREAMASR_TOKEN"  # environment variable read by ``streamasr serve`` when --token is absent
WEB_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
             "/index.html": ("index.html", "text/html; charset=utf-8"),
             "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8")}


class StreamServer:
    """The websocket service: ``async with StreamServer(rec, cfg) as server: ...``."""

    def __init__(self, rec: Recognizer, cfg: ServerConfig | None = None,
                 worker_cfg: WorkerConfig | None = None, sock: socket.socket | None = None,
                 adapt: AdaptConfig | None = None) -> None:
        """
        Args:
            sock: a listening socket to accept on instead of binding ``cfg.host:cfg.port`` (the
                worker processes of ``streamasr serve --workers N`` share their parent's).
            adapt: speaker adaptation for every stream that does not decline it in ``start``
                (``streamasr.engine.adapt``: each stream learns its own speaker's voice); off when None.

        Raises:
            ValueError: ``adapt`` is on and ``rec`` is quantized (learning needs the float model), or
                ``cfg.speakers`` names a directory of speaker profiles and ``adapt`` is off.
        """
        if adapt is not None and adapt.enabled:
            rec.check_adaptable()
        self.adapt = adapt if adapt is not None and adapt.enabled else None
        self.rec = rec
        self.cfg = cfg or ServerConfig()
        if self.cfg.speakers:
            self.cfg.check_speakers(self.adapt is not None)
            Path(self.cfg.speakers).mkdir(parents=True, exist_ok=True)  # OSError: the operator's to fix
        self._sock = sock
        self._origins = {o.strip().rstrip("/") for o in self.cfg.allowed_origins.split(",") if o.strip()}
        self.worker = InferenceWorker(rec, worker_cfg)
        self.metrics = Metrics()
        self.sessions: set[Session] = set()
        self._slots = asyncio.Semaphore(self.cfg.max_connections)
        self._per_address: Counter[str] = Counter()  # open streams by client address
        self._server: Server | None = None
        web = resources.files("streamasr.service") / "web"
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
        where: dict[str, Any] = {"sock": self._sock} if self._sock else {"host": self.cfg.host, "port": self.cfg.port}
        # No keepalive pings: the library would close a client that stops reading with 1011, the
        # code for a server bug. Silence from a client ends it with idle_timeout, and a client that
        # stops reading with client_stalled once a message has waited for it as long (both 1008).
        self._server = await serve(
            self._handler, **where, process_request=self._process_request,
            max_size=self.cfg.max_frame_bytes, close_timeout=5, compression=None, ping_interval=None)
        adapting = ""
        if self.adapt is not None:  # what each stream that does not decline will learn, and how fast
            cfg = self.adapt.for_decoder(self.rec.decoder.method)
            adapting = f", speaker adaptation lr {cfg.lr:g} towards {cfg.target}"
        log.info("%s ws://%s:%d%s (model %s, at most %d streams%s)",
                 f"worker process {os.getpid()} accepting on" if self._sock else "serving", self.cfg.host,
                 self.port, protocol.PATH, self.rec.name, self.cfg.max_connections, adapting)

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

    def _origin_allowed(self, request: Request) -> bool:
        # Browsers send Origin on every websocket handshake; other clients usually send none. Without
        # this check any web page the user visits could stream to (and use) a server on localhost.
        # The server's own pages are those served under a loopback name or the address it listens
        # on: never whatever the request's Host says, which a page on a rebound DNS name sets to
        # its own name (issue 33, finding 7).
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if "*" in self._origins or origin.rstrip("/") in self._origins:
            return True
        return urlsplit(origin).netloc.lower() in self._own_netlocs()

    def _own_netlocs(self) -> set[str]:
        names = {"127.0.0.1", "localhost", "[::1]"}
        if self.cfg.host not in ("", "0.0.0.0", "::"):  # a wildcard address names no page
            names.add(f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host.lower())
        return {f"{name}:{self.port}" for name in names}

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if request.method != "GET":  # every route here only reads (issue 33, finding 8)
            self.metrics.rejected["method"] += 1
            response = connection.respond(http.HTTPStatus.METHOD_NOT_ALLOWED,
                                          f"{request.method[:20]} is not served here; every path answers GET only\n")
            response.headers["Allow"] = "GET"
            return response
        if path == "/healthz":  # open: load balancers and orchestrators probe it without credentials
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/metrics":  # with a token set, only for its holders: it tells how busy the server is
            if not self._authorized(request):
                self.metrics.rejected["unauthorized"] += 1
                return _unauthorized(connection)
            return _typed(connection.respond(http.HTTPStatus.OK, self.metrics.render(len(self.sessions), self.worker)),
                          "text/plain; version=0.0.4; charset=utf-8")
        if path in self._pages:
            body, ctype = self._pages[path]
            return _typed(connection.respond(http.HTTPStatus.OK, body), ctype)
        if path != protocol.PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"no such path {path!r}; the stream is at "
                                                                 f"{protocol.PATH}\n")
        repeated = [name for name in ("Authorization", "Origin", "Host") if len(request.headers.get_all(name)) > 1]
        if repeated:  # which one would count is ambiguous, and proxies disagree: refuse (issue 33, finding 2)
            self.metrics.rejected["bad_request"] += 1
            return connection.respond(http.HTTPStatus.BAD_REQUEST, f"the handshake repeats the header(s) "
                                                                   f"{', '.join(repeated)}; send each once\n")
        if not self._origin_allowed(request):
            self.metrics.rejected["origin"] += 1
            origin = request.headers.get("Origin", "")
            return connection.respond(http.HTTPStatus.FORBIDDEN, f"origin {origin!r} may not open streams here; "
                                                                 f"start the server with --allowed-origins {origin}\n")
        if not self._authorized(request):
            self.metrics.rejected["unauthorized"] += 1
            return _unauthorized(connection)
        limit, address = self.cfg.max_connections_per_address, _address(connection)
        if limit and self._per_address[address] >= limit:
            self.metrics.rejected["per_address"] += 1
            return connection.respond(http.HTTPStatus.TOO_MANY_REQUESTS,
                                      f"{address} already holds {limit} streams (--max-connections-per-address); "
                                      f"retry when one has ended\n")
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
        address = _address(ws)
        async with self._slots:
            session = Session(ws, self.rec, self.worker, self.cfg, self.metrics, self.adapt)
            self.sessions.add(session)
            self._per_address[address] += 1
            self.metrics.streams_total += 1
            try:
                await session.run()
            finally:
                self.sessions.discard(session)
                self._per_address[address] -= 1
                if not self._per_address[address]:
                    del self._per_address[address]


def _address(connection: ServerConnection) -> str:
    """The client's IP address (host part of the peer address)."""
    peer = connection.remote_address
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def _unauthorized(connection: ServerConnection) -> Response:
    response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")
    response.headers["WWW-Authenticate"] = 'Bearer realm="streamasr"'
    return response


def _typed(response: Response, content_type: str) -> Response:
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


async def serve_until_signalled(rec: Recognizer, cfg: ServerConfig, worker_cfg: WorkerConfig,
                                sock: socket.socket | None = None, ready_fd: int | None = None,
                                parent_fd: int | None = None, adapt: AdaptConfig | None = None) -> None:
    """Run the service until SIGTERM or SIGINT, then shut down gracefully.

    Args:
        sock: listening socket to accept on (a worker process of ``--workers N``).
        ready_fd: pipe to write one byte to once the server accepts (tells the parent it is up).
        parent_fd: pipe whose other end only the parent holds: when it reads as closed, the parent
            is gone (even killed with SIGKILL) and this worker process shuts down too.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if parent_fd is not None:
        loop.add_reader(parent_fd, stop.set)
    try:
        async with StreamServer(rec, cfg, worker_cfg, sock, adapt):
            if ready_fd is not None:
                os.write(ready_fd, b".")
                os.close(ready_fd)
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if parent_fd is not None:
            loop.remove_reader(parent_fd)


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    from streamasr.options import add_dataclass_options

    parser: argparse.ArgumentParser = sub.add_parser(
        "serve", help="websocket service with a browser demo page",
        description=f"Serve protocol v1 on ws://HOST:PORT{protocol.PATH}, plus /, /healthz and /metrics. "
                    f"The bearer token may also come from ${TOKEN_ENV}.")
    parser.add_argument("--model", default=None, help="checkpoint path (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the inference worker (default: 1)")
    parser.add_argument("--quantize", action="store_true",
                        help="int8 dynamic quantisation of the model (faster; see docs/benchmarks.md)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the port, each with its own inference worker and "
                             "its share of the streams; --max-connections and /metrics are per process "
                             "(default: 1; use one per CPU core)")
    parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)  # set for worker processes
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parent-fd", type=int, default=None, help=argparse.SUPPRESS)
    add_dataclass_options(parser, ServerConfig)
    add_dataclass_options(parser, WorkerConfig)
    add_dataclass_options(parser, DecoderConfig)  # --method, --beam-size, --lm-weight, ...
    # --adapt-lr, ...: each stream learns its own speaker (streams may decline: start.adapt false)
    add_dataclass_options(parser, AdaptConfig, prefix="adapt_")
    # The beam search with the LMs, as `transcribe` decodes: a file gives the same text through the
    # server as offline. It is batched across streams (engine/beam.py); `--method greedy` serves
    # more streams per CPU with far less accurate text (docs/performance.md).
    parser.set_defaults(func=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    import torch

    from streamasr.options import dataclass_from_args

    if not args.token:
        args.token = os.environ.get(TOKEN_ENV, "")
    cfg = dataclass_from_args(ServerConfig, args)
    worker_cfg = dataclass_from_args(WorkerConfig, args)
    decoder = dataclass_from_args(DecoderConfig, args)
    adapt = dataclass_from_args(AdaptConfig, args, prefix="adapt_")
    if args.threads < 1 or not 1 <= args.workers <= 256:
        raise ValueError(f"--threads must be >= 1 and --workers in [1, 256], got {args.threads} and {args.workers}")
    adapt.check_float(args.quantize)  # before loading the model and LM
    cfg.check_speakers(adapt.enabled)  # here too: --workers N checks before starting its processes
    if args.workers > 1:
        return _supervise(args, cfg, worker_cfg, decoder, adapt)
    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.model, args.quantize, decoder)
    sock = socket.socket(fileno=args.listen_fd) if args.listen_fd is not None else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(rec, cfg, worker_cfg, sock, args.ready_fd, args.parent_fd, adapt))
    return 0


def _supervise(args: argparse.Namespace, cfg: ServerConfig, worker_cfg: WorkerConfig, decoder: DecoderConfig,
               adapt: AdaptConfig) -> int:
    """``--workers N``: listen once, run N single-worker server processes on the socket, relay SIGTERM.

    Each process accepts connections as it has time (the kernel hands each new connection to one of
    them), so the streams spread over the processes and a busy one takes fewer. Two processes with
    one torch thread each scale ~2x on two cores, where threads in one process share the GIL.
    """
    import subprocess
    import sys

    from streamasr.options import dataclass_argv

    sock = socket.create_server((cfg.host, cfg.port), backlog=4096)
    sock.set_inheritable(True)
    read_end, write_end = os.pipe()
    lifeline, keep = os.pipe()  # the children watch ``lifeline``; it closes when this process ends
    options = [*dataclass_argv(cfg, skip=("token",)), *dataclass_argv(worker_cfg), *dataclass_argv(decoder),
               *dataclass_argv(adapt, prefix="adapt_")]
    cmd = [sys.executable, "-m", "streamasr", *(["-v"] if log.isEnabledFor(logging.DEBUG) else []), "serve",
           *options, f"--threads={args.threads}", f"--listen-fd={sock.fileno()}", f"--ready-fd={write_end}",
           f"--parent-fd={lifeline}",
           *(["--model", str(args.model)] if args.model else []), *(["--quantize"] if args.quantize else [])]
    env = {**os.environ, TOKEN_ENV: cfg.token}  # the token stays out of the process list
    children = [subprocess.Popen(cmd, pass_fds=(sock.fileno(), write_end, lifeline), env=env)
                for _ in range(args.workers)]
    os.close(write_end)
    os.close(lifeline)

    def relay(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, relay) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ready = 0
        while ready < args.workers and (data := os.read(read_end, args.workers)):
            ready += len(data)
        if ready < args.workers:
            relay(signal.SIGTERM, None)
            log.error("%d of %d worker processes failed to start", args.workers - ready, args.workers)
        else:
            log.info("serving ws://%s:%d%s with %d worker processes (model %s, at most %d streams each)",
                     cfg.host, sock.getsockname()[1], protocol.PATH, args.workers, args.model or "default",
                     cfg.max_connections)
        codes = [child.wait() for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(read_end)
        os.close(keep)
        sock.close()
    return 0 if ready == args.workers and not any(codes) else 1
