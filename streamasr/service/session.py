"""One websocket stream on the server: reads frames, feeds the inference worker, sends results.

The stream state is a local of ``Session._process`` and is passed to the worker and back; nothing
about a stream outlives its connection. A reader task turns frames into items (audio, ``flush``,
``stop``, an error) in arrival order; the processor takes them, coalescing consecutive audio, so a
stream has at most one request with the worker at a time and never falls behind by more than
``max_pending_seconds`` (beyond that the reader stops reading and TCP pushes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streamasr.service import protocol
from streamasr.engine.adapt import AdaptConfig, AdaptState, Speaker
from streamasr.engine.audio import SAMPLE_RATE
from streamasr.errors import AudioError, ProtocolError
from streamasr.service.protocol import Done, ErrorMessage, Flush, Ready, Start, Stop
from streamasr.results import Result
from streamasr.engine.stream import Recognizer, StreamState, flush_segment, keep_speaker
from streamasr.service.config import ServerConfig
from streamasr.service.metrics import Metrics
from streamasr.service.worker import InferenceWorker


log = logging.getLogger(__name__)
MIN_RATE_AFTER = 60.0  # seconds a stream may run before its audio rate counts (ServerConfig.min_audio_rate)


class _Shutdown:
    """Queue item: the server is stopping; finish the stream now."""


class _Limit:
    """Queue item: the stream reached ``max_stream_seconds``; finish it, then report ``error``."""

    def __init__(self, error: ProtocolError) -> None:
        self.error = error


_Item = np.ndarray | Flush | Stop | _Shutdown | _Limit | BaseException


class Session:
    """The server side of one connection."""

    def __init__(self, ws: ServerConnection, rec: Recognizer, worker: InferenceWorker,
                 cfg: ServerConfig, metrics: Metrics, adapt: AdaptConfig | None = None) -> None:
        self.ws, self.rec, self.worker, self.cfg, self.metrics = ws, rec, worker, cfg, metrics
        self.adapt = adapt  # speaker adaptation for the streams that ask (start.adapt)
        self.id = uuid.uuid4().hex[:12]
        self.items: deque[_Item] = deque()
        self.arrived = asyncio.Event()
        self.drained = asyncio.Event()
        self.pending = 0  # samples received but not yet handed to the worker
        self.received = 0  # samples received in total
        self.reader: asyncio.Task[None] | None = None
        self.sent_partial: tuple[int, str] = (-1, "")  # (segment, text) of the last partial sent
        self.held: Result | None = None  # newer partial waiting for the rate limit
        self.partial_at = -1e9  # monotonic time of the last partial sent
        # The speaker ``start`` named and their profile's file, kept when the stream stops.
        self.speaker: tuple[Speaker, Path] | None = None

    def shutdown(self) -> None:
        """Ask the stream to finish with its finals (server shutdown)."""
        self._put(_Shutdown())  # before 'start', this only wakes ``_receive_start``

    def _put(self, item: _Item) -> None:
        self.items.append(item)
        self.arrived.set()

    async def run(self) -> None:
        """Serve the connection until ``stop``, an error, a disconnect or shutdown; log once each way."""
        log.info("stream %s connected from %s", self.id, self.ws.remote_address)
        outcome, exc_info, sample_rate = "closed by client", False, SAMPLE_RATE
        try:
            start = await self._receive_start()
            if start is None:
                outcome = "shutdown"
                return
            sample_rate = start.sample_rate
            speaker = await self._speaker(start)
            try:  # off the event loop: a resampler, hotword tree or phrase automaton may take a while to build
                state = await asyncio.get_running_loop().run_in_executor(None, functools.partial(
                    self.rec.initial_state, start.sample_rate, start.endpoint,
                    speaker.adapt if speaker is not None else self.adapt if start.adapt else None, start.nbest,
                    list(start.hotwords) if self.rec.beam is not None else None,
                    list(start.grammar) if start.grammar is not None else None))
            except (AudioError, ValueError) as e:  # the engine's own checks, beyond the protocol's
                raise ProtocolError("bad_field", str(e), protocol.CLOSE_INVALID_DATA) from e
            await self._send(Ready(self.id, self.rec.name, start.sample_rate, start.encoding,
                                   adapt=state.adapt is not None).to_json())
            self.reader = asyncio.create_task(self._read(start))
            outcome = await self._process(start, state)
        except ProtocolError as e:
            outcome = e.code
            await self._fail(e)
        except ConnectionClosed as e:
            outcome = self._closed_kind(e)
        except Exception:
            outcome, exc_info = "internal", True
            await self._fail(ProtocolError("internal", f"internal server error in stream {self.id}",
                                           protocol.CLOSE_INTERNAL))
        finally:
            if self.reader is not None:
                self.reader.cancel()
            if outcome not in ("stop", "shutdown", "closed by client"):
                self.metrics.errors[outcome] += 1
            log.log(logging.ERROR if exc_info else logging.INFO, "stream %s disconnected: %s after %.1f s of audio",
                    self.id, outcome, self.received / sample_rate, exc_info=exc_info)

    def _closed_kind(self, e: ConnectionClosed) -> str:
        if e.sent is not None and e.sent.code == protocol.CLOSE_TOO_BIG:
            return "frame_too_big"
        if e.rcvd is not None and e.rcvd.code in (1000, 1001):
            return "closed by client"
        return "client_gone"

    async def _send(self, text: str) -> None:
        """Send one message; a client that stops reading for ``idle_timeout`` is dropped."""
        try:
            async with asyncio.timeout(self.cfg.idle_timeout):
                await self.ws.send(text)
        except TimeoutError:
            raise ProtocolError("client_stalled", f"client read nothing for {self.cfg.idle_timeout:g} s",
                                protocol.CLOSE_POLICY) from None

    async def _fail(self, error: ProtocolError) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(1.0):  # a client that stopped reading gets the close frame only
                await self.ws.send(ErrorMessage(error.code, str(error)).to_json())
        await self._close(error.close_code, error.code)

    async def _close(self, code: int, reason: str) -> None:
        """Close, discarding whatever the client still sends: frames queued unread would hold back its
        close frame (websockets pauses reading when its buffer is full) until ``close_timeout``."""
        if self.reader is not None:
            self.reader.cancel()  # safe: cancelling recv() loses nothing
            await asyncio.gather(self.reader, return_exceptions=True)

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await self.ws.recv()

        draining = asyncio.create_task(drain())
        try:
            await self.ws.close(code, reason)
        finally:
            draining.cancel()

    async def _recv(self, first: bool = False) -> str | bytes:
        """The next message; ``first``: the stream's 'start', due within ``start_timeout``."""
        try:
            async with asyncio.timeout(self.cfg.start_timeout if first else self.cfg.idle_timeout):
                return await self.ws.recv()
        except TimeoutError:
            if first:
                raise ProtocolError("start_timeout", f"no 'start' within {self.cfg.start_timeout:g} s of the "
                                                     f"handshake", protocol.CLOSE_POLICY) from None
            raise ProtocolError("idle_timeout", f"no message for {self.cfg.idle_timeout:g} s; "
                                                "send audio or 'stop'", protocol.CLOSE_POLICY) from None

    def _over_limit(self, start: Start, began: float) -> ProtocolError | None:
        """The stream's wall-clock limit, or too little audio for the time it has held its slot."""
        open_for = time.monotonic() - began
        if open_for > self.cfg.max_stream_wall_seconds:
            return ProtocolError("stream_too_long", f"stream open for over {self.cfg.max_stream_wall_seconds:g} s; "
                                                    "start a new stream", protocol.CLOSE_POLICY)
        heard = self.received / start.sample_rate
        if open_for > MIN_RATE_AFTER and heard < self.cfg.min_audio_rate * open_for:
            return ProtocolError("too_little_audio", f"{heard:.1f} s of audio in {open_for:.0f} s; a stream must "
                                                     f"send at least {self.cfg.min_audio_rate:g} s of audio per "
                                                     f"second to keep its slot", protocol.CLOSE_POLICY)
        return None

    async def _receive_start(self) -> Start | None:
        recv = asyncio.create_task(self._recv(first=True))
        arrived = asyncio.create_task(self.arrived.wait())  # shutdown before start
        try:
            await asyncio.wait((recv, arrived), return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
        if not recv.done():  # the server is shutting down
            recv.cancel()
            await asyncio.gather(recv, return_exceptions=True)
            await self._close(protocol.CLOSE_GOING_AWAY, "server shutting down")
            return None
        message = recv.result()
        if isinstance(message, bytes):
            raise ProtocolError("not_started", f"binary frame of {len(message)} bytes before 'start'; "
                                               "send a 'start' message first", protocol.CLOSE_POLICY)
        parsed = protocol.parse_client(message)
        if not isinstance(parsed, Start):
            raise ProtocolError("not_started", f"{type(parsed).__name__.lower()!r} before 'start'; "
                                               "send a 'start' message first", protocol.CLOSE_POLICY)
        return parsed

    async def _speaker(self, start: Start) -> Speaker | None:
        """The speaker ``start`` names, as their profile on this server left them (new if none)."""
        if start.speaker is None:
            return None
        if not self.cfg.speakers:
            raise ProtocolError("bad_field", f"start.speaker {start.speaker!r}: this server keeps no speaker "
                                             f"profiles (serve --speakers DIR)", protocol.CLOSE_INVALID_DATA)
        if self.adapt is None or not start.adapt:
            raise ProtocolError("bad_field", f"start.speaker {start.speaker!r} learns the speaker's voice: it "
                                             f"needs start.adapt true", protocol.CLOSE_INVALID_DATA)
        path = Path(self.cfg.speakers) / f"{start.speaker}.spk"
        try:
            speaker = await asyncio.get_running_loop().run_in_executor(None, self.rec.speaker, self.adapt, path)
        except (OSError, ValueError) as e:  # another model's profile, or a damaged one: the operator's to see
            log.warning("stream %s: speaker profile %s not used: %s", self.id, path, e)
            raise ProtocolError("bad_field", f"start.speaker {start.speaker!r}: the server's profile of that name "
                                             f"cannot be used (another model's, or damaged); start with another "
                                             f"name", protocol.CLOSE_INVALID_DATA) from e
        self.speaker = speaker, path
        self.metrics.profiles["loaded" if isinstance(speaker.adapt, AdaptState) else "new"] += 1
        return speaker

    async def _keep(self, state: StreamState) -> None:
        """Learn from the stream's last segment and keep its speaker's profile, off the event loop.
        A profile that cannot be written is logged and counted; the stream's results are out already."""
        if self.speaker is None:
            return
        speaker, path = self.speaker

        def keep() -> int:
            return self.rec.save_speaker(keep_speaker(self.rec, state, speaker), path).segments

        try:
            segments = await asyncio.get_running_loop().run_in_executor(None, keep)
        except OSError as e:
            self.metrics.profiles["not_kept"] += 1
            log.error("stream %s: speaker profile %s not kept: %s", self.id, path, e)
            return
        self.metrics.profiles["kept"] += 1
        log.info("stream %s: speaker profile %s kept (%d segments learnt in all)", self.id, path, segments)

    async def _read(self, start: Start) -> None:
        """Reader task: frames -> items, until ``stop``, an error or a disconnect."""
        limit = int(self.cfg.max_stream_seconds * start.sample_rate)
        backlog = int(self.cfg.max_pending_seconds * start.sample_rate)
        began = time.monotonic()
        try:
            while True:
                message = await self._recv()
                over = self._over_limit(start, began)
                if over is not None:  # the finals so far come first
                    self._put(_Limit(over))
                    return
                if isinstance(message, bytes):
                    pcm = protocol.decode_audio(message, start.encoding)
                    self.pending += len(pcm)
                    self.received += len(pcm)
                    self._put(pcm)
                    if self.received > limit:
                        self._put(_Limit(ProtocolError(
                            "stream_too_long", f"stream exceeded {self.cfg.max_stream_seconds:g} s of audio; "
                                               "start a new stream", protocol.CLOSE_POLICY)))
                        return
                    while self.pending > backlog:
                        self.drained.clear()
                        await self.drained.wait()
                    continue
                parsed = protocol.parse_client(message)
                if isinstance(parsed, Start):
                    raise ProtocolError("already_started", "second 'start' on one stream; open a new "
                                                           "connection for a new stream", protocol.CLOSE_POLICY)
                self._put(parsed)
                if isinstance(parsed, Stop):
                    return
        except Exception as e:  # noqa: BLE001 - the processor raises it in the handler's context
            self._put(e)

    async def _next(self) -> _Item:
        """The next item; sends a rate-limited partial when its time comes while waiting."""
        while not self.items:
            self.arrived.clear()
            wait = None
            if self.held is not None:
                wait = max(0.0, self.partial_at + self.cfg.partial_interval_ms / 1000 - time.monotonic())
            try:
                async with asyncio.timeout(wait):
                    await self.arrived.wait()
            except TimeoutError:
                await self._send_held()
        return self.items.popleft()

    async def _process(self, start: Start, state: StreamState) -> str:
        """Processor: items -> worker -> messages. Returns how the stream ended."""
        while True:
            item = await self._next()
            if isinstance(item, np.ndarray):
                chunks = [item]
                while self.items and isinstance(self.items[0], np.ndarray):
                    chunks.append(self.items.popleft())  # type: ignore[arg-type]
                pcm = np.concatenate(chunks) if len(chunks) > 1 else item
                self.pending -= len(pcm)
                self.drained.set()
                state, results = await self.worker.step(state, pcm)
                await self._emit(start, results)
            elif isinstance(item, Flush):
                state, results = flush_segment(self.rec, state)  # no model work: just closes the segment
                await self._emit(start, results)
            elif isinstance(item, BaseException):
                raise item
            else:
                return await self._finish(start, state, item)

    async def _finish(self, start: Start, state: StreamState, item: Stop | _Shutdown | _Limit) -> str:
        try:
            async with asyncio.timeout(self.cfg.shutdown_timeout if isinstance(item, _Shutdown) else None):
                state, results = await self.worker.finish(state)
                await self._emit(start, results)
                if isinstance(item, _Limit):
                    raise item.error
                await self._keep(state)  # before "done": a client that reconnects at once finds it
                await self._send(Done().to_json())
        except TimeoutError:
            await self._close(protocol.CLOSE_GOING_AWAY, "server shutting down")
            return "shutdown_timeout"
        if isinstance(item, Stop):
            await self._close(protocol.CLOSE_NORMAL, "done")
            return "stop"
        await self._close(protocol.CLOSE_GOING_AWAY, "server shutting down")
        return "shutdown"

    async def _emit(self, start: Start, results: list[Result]) -> None:
        for result in results:
            if result.is_final:
                self.held = None
                self.sent_partial = (result.segment + 1, "")
                await self._send(protocol.result_to_json(result, start.words))
            elif start.partials:
                fresh = result.text and (result.segment, result.text) != self.sent_partial
                self.held = result if fresh else None
        if self.held is not None and time.monotonic() >= self.partial_at + self.cfg.partial_interval_ms / 1000:
            await self._send_held()

    async def _send_held(self) -> None:
        if self.held is not None:
            result, self.held = self.held, None
            self.sent_partial = (result.segment, result.text)
            self.partial_at = time.monotonic()
            await self._send(protocol.result_to_json(result))
