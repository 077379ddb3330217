"""Helpers for the server, client, mic and web tests: real servers on port 0 and raw websocket peers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamasr.engine.adapt import AdaptConfig
from streamasr.engine.endpoint import EndpointConfig
from streamasr.results import Result
from streamasr.service.server import ServerConfig, StreamServer
from streamasr.engine.run import run as run_stream
from streamasr.engine.stream import Recognizer

T = TypeVar("T")
SHORT_ENDPOINT = EndpointConfig(silence_after_speech=0.3)  # several segments from the sample files


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one test coroutine with a hard time limit."""
    async def limited() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(limited())


def offline(rec: Recognizer, audio: np.ndarray, sample_rate: int = 16000,
            endpoint: EndpointConfig | None = None) -> list[Result]:
    """Finals of the engine run directly over the whole signal (the reference for every stream)."""
    _, results = run_stream(rec, rec.initial_state(sample_rate, endpoint), [audio])
    return [r for r in results if r.is_final]


def finals(results: list[Result]) -> list[Result]:
    return [r for r in results if r.is_final]


@contextlib.asynccontextmanager
async def running(rec: Recognizer, **cfg: Any) -> AsyncIterator[StreamServer]:
    """A real server on a free port for the duration of the block."""
    async with StreamServer(rec, ServerConfig(port=0, **cfg)) as server:
        yield server


async def exchange(url: str, frames: list[str | bytes], wait: float = 10.0,
                   headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Send ``frames`` over a raw websocket, then collect the server's messages until it closes.

    Returns:
        The JSON messages received and the close code the server sent.
    """
    messages: list[dict[str, Any]] = []
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        with contextlib.suppress(ConnectionClosed):
            for frame in frames:
                await ws.send(frame)
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(wait):
                async for message in ws:
                    messages.append(json.loads(message))
        await ws.wait_closed()
        return messages, ws.close_code


class ThreadedServer:
    """A StreamServer on its own event loop thread, for code that runs ``asyncio.run`` itself (CLI, browser)."""

    def __init__(self, rec: Recognizer, adapt: AdaptConfig | None = None, **cfg: Any) -> None:
        self.rec, self.cfg, self.adapt = rec, cfg, adapt
        self.loop = asyncio.new_event_loop()
        self.server: StreamServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def __enter__(self) -> StreamServer:
        self._thread.start()
        self.server = StreamServer(self.rec, ServerConfig(port=0, **self.cfg), adapt=self.adapt)
        self.call(self.server.start())
        return self.server

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def threaded_server(rec: Recognizer, adapt: AdaptConfig | None = None, **cfg: Any) -> Iterator[StreamServer]:
    with ThreadedServer(rec, adapt, **cfg) as server:
        yield server
