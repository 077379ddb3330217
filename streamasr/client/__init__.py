"""Python client for protocol v1 (``StreamClient``) and the ``streamasr client FILE`` command.

Example::

    async with StreamClient("ws://127.0.0.1:8765/v1/stream", Start(encoding="pcm_f32le")) as client:
        async for result in client.stream(audio):  # float32 samples at 16 kHz
            print(result.kind, result.text)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from streamasr.service import protocol
from streamasr.errors import StreamAsrError
from streamasr.service.protocol import Done, ErrorMessage, Flush, Ready, Start, Stop
from streamasr.results import Result

DEFAULT_URL = f"ws://127.0.0.1:8765{protocol.PATH}"


class ServerError(StreamAsrError):
    """The server refused the connection or ended the stream with an ``error``.

    ``code`` is the protocol error code (or ``http_401``, ``http_503``, ``connection_closed``),
    ``close_code`` the websocket close code and ``status`` the HTTP status of a refused handshake.
    """

    def __init__(self, code: str, message: str, close_code: int | None = None, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.close_code, self.status = code, close_code, status


class StreamClient:
    """One stream to a streamasr server: ``connect``, send audio, ``stop``, read results."""

    def __init__(self, url: str = DEFAULT_URL, start: Start | None = None, token: str | None = None,
                 open_timeout: float = 10.0) -> None:
        """
        Args:
            url: ``ws://host:port/v1/stream``.
            start: stream options (sample rate, encoding, partials, words, endpointing).
            token: bearer token, if the server requires one.
            open_timeout: seconds to wait for the handshake and the ``ready`` message.
        """
        self.url = url
        self.start = start or Start()
        self.token = token
        self.open_timeout = open_timeout
        self.ready: Ready | None = None
        self._ws: ClientConnection | None = None

    async def __aenter__(self) -> StreamClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def ws(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("StreamClient is not connected; call connect() or use 'async with'")
        return self._ws

    async def connect(self) -> Ready:
        """Open the websocket, send ``start`` and wait for ``ready``."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            self._ws = await connect(self.url, additional_headers=headers, open_timeout=self.open_timeout,
                                     compression=None, max_size=None)
        except InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body.decode(errors="replace").strip() if e.response.body else ""
            raise ServerError(f"http_{status}", body or f"handshake refused with HTTP {status}",
                              status=status) from e
        except (OSError, InvalidURI, TimeoutError) as e:
            raise ServerError("connect_failed", f"cannot connect to {self.url}: {e}") from e
        await self.ws.send(self.start.to_json())
        async with asyncio.timeout(self.open_timeout):
            message = await self._receive()
        if not isinstance(message, Ready):
            raise ServerError("protocol", f"expected 'ready' after 'start', got {message!r}")
        self.ready = message
        return message

    async def send_audio(self, pcm: np.ndarray | bytes) -> None:
        """Send samples: float32 in [-1, 1] (converted to the stream's encoding) or raw frame bytes."""
        data = pcm if isinstance(pcm, bytes) else protocol.encode_audio(pcm, self.start.encoding)
        await self.ws.send(data)

    async def flush(self) -> None:
        """End the current segment; its final comes back at once."""
        await self.ws.send(Flush().to_json())

    async def stop(self) -> None:
        """End of audio; the server sends the last final, then ``done``."""
        await self.ws.send(Stop().to_json())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def _receive(self) -> protocol.ServerMessage:
        try:
            frame = await self.ws.recv()
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            raise ServerError("connection_closed", f"server closed the stream (code {code}) "
                                                   "before 'done'", close_code=code) from e
        message = protocol.parse_server(frame)
        if isinstance(message, ErrorMessage):
            close_code = None
            try:
                await asyncio.wait_for(self.ws.wait_closed(), 5)
                close_code = self.ws.close_code
            except TimeoutError:
                pass
            raise ServerError(message.code, message.message, close_code=close_code)
        return message

    async def results(self) -> AsyncIterator[Result]:
        """Partials and finals until ``done``.

        Raises:
            ServerError: the server sent ``error`` or closed the connection before ``done``.
        """
        while True:
            message = await self._receive()
            if isinstance(message, Done):
                return
            if isinstance(message, Result):
                yield message

    async def stream(self, audio: np.ndarray | AsyncIterable[np.ndarray], chunk_seconds: float = 0.1,
                     realtime: bool = False) -> AsyncIterator[Result]:
        """Send ``audio`` (then ``stop``) while yielding results as they arrive.

        Args:
            audio: float32 samples at the stream's sample rate, or an async iterable of chunks.
            chunk_seconds: seconds per frame when ``audio`` is an array.
            realtime: pace an array at real time (as a live source would), not as fast as possible.
        """
        sender = asyncio.create_task(self._send_all(audio, chunk_seconds, realtime))
        try:
            async for result in self.results():
                yield result
            await sender
        finally:
            sender.cancel()

    async def _send_all(self, audio: np.ndarray | AsyncIterable[np.ndarray], chunk_seconds: float,
                        realtime: bool) -> None:
        if isinstance(audio, np.ndarray):
            step = max(1, int(chunk_seconds * self.start.sample_rate))
            began = time.monotonic()
            for offset in range(0, len(audio), step):
                await self.send_audio(audio[offset: offset + step])
                if realtime:
                    ahead = began + (offset + step) / self.start.sample_rate - time.monotonic()
                    await asyncio.sleep(max(0.0, ahead))
        else:
            async for chunk in audio:
                await self.send_audio(chunk)
        await self.stop()


class CaptionPrinter:
    """Shows results on a text stream: partials rewritten in place on a terminal, finals as lines.

    ``jsonl`` writes every result as one protocol JSON object per line (for programs).
    """

    def __init__(self, out: TextIO, fmt: Literal["text", "jsonl"] = "text", live: bool | None = None) -> None:
        self.out, self.fmt = out, fmt
        self.live = out.isatty() if live is None else live
        self._partial = ""

    def show(self, result: Result) -> None:
        if self.fmt == "jsonl":
            self.out.write(protocol.result_to_json(result) + "\n")
        elif result.is_final:
            self.out.write(("\r\x1b[K" if self._partial else "") + result.text + "\n")
            for other in result.alternatives[1:]:  # the n best texts after the final's own
                self.out.write(f"    {other.score:8.2f}  {other.text}\n")
            self._partial = ""
        elif self.live and result.text != self._partial:
            width = shutil.get_terminal_size().columns - 1
            self.out.write("\r\x1b[K" + result.text[-width:])
            self._partial = result.text
        self.out.flush()

    def close(self) -> None:
        if self._partial:
            self.out.write("\n")
            self._partial = ""
        self.out.flush()


def add_stream_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``client`` and ``mic``: output format, partials, words, endpointing, token."""
    from streamasr.options import add_dataclass_options
    from streamasr.engine.endpoint import EndpointConfig
    from streamasr.engine.hotwords import add_options as add_list_options

    parser.add_argument("--format", choices=("text", "jsonl"), default="text",
                        help="text: partials in place, finals as lines; jsonl: one JSON result per line")
    parser.add_argument("--partials", action=argparse.BooleanOptionalAction, default=True, help="default: True")
    parser.add_argument("--words", action=argparse.BooleanOptionalAction, default=True, help="default: True")
    parser.add_argument("--token", default=None, help="bearer token for the server (default: $STREAMASR_TOKEN)")
    parser.add_argument("--adapt", action=argparse.BooleanOptionalAction, default=True,
                        help="let the stream learn the speaker's voice where speaker adaptation is on "
                             "(--no-adapt for audio with several speakers; default: True)")
    parser.add_argument("--speaker", default=None, metavar="NAME",
                        help="the speaker's profile: with a server, its name there (serve --speakers DIR); "
                             "mic without --url: a file (with --adapt-lr). The stream starts from what the "
                             "speaker's earlier streams taught and keeps what it teaches when it ends")
    add_list_options(parser)  # --hotwords, --grammar
    parser.add_argument("--nbest", type=int, default=1, metavar="N",
                        help="finals carry the N best texts with their scores (jsonl: 'alternatives'; "
                             "text: indented under the final; default: 1, none)")
    add_dataclass_options(parser, EndpointConfig, prefix="endpoint-")


def start_from_args(args: argparse.Namespace, sample_rate: int, encoding: protocol.Encoding) -> Start:
    from streamasr.options import dataclass_from_args
    from streamasr.engine.endpoint import EndpointConfig
    from streamasr.engine.hotwords import read_hotwords, read_phrases

    return Start(sample_rate=sample_rate, encoding=encoding, partials=args.partials, words=args.words,
                 endpoint=dataclass_from_args(EndpointConfig, args, prefix="endpoint-"), adapt=args.adapt,
                 speaker=args.speaker, nbest=args.nbest,
                 hotwords=tuple(read_hotwords(args.hotwords)) if args.hotwords is not None else (),
                 grammar=tuple(read_phrases(args.grammar)) if args.grammar is not None else None)


def token_from_args(args: argparse.Namespace) -> str | None:
    import os

    return args.token or os.environ.get("STREAMASR_TOKEN") or None


def register(sub: Any) -> None:
    """Add the ``client`` subcommand."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "client", help="stream an audio file to a streamasr server",
        description="Stream FILE to a server at real-time pace (or --fast) and print the results.")
    parser.add_argument("file", metavar="FILE", help="audio file (wav, flac, ogg; others via ffmpeg)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server stream URL (default: {DEFAULT_URL})")
    parser.add_argument("--fast", action="store_true", help="send as fast as the server takes it")
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="ms of audio per frame (default: 100)")
    parser.add_argument("--encoding", choices=("pcm_f32le", "pcm_s16le"), default="pcm_f32le",
                        help="sample format on the wire (default: pcm_f32le, exact)")
    add_stream_options(parser)
    parser.set_defaults(func=_client_command)


def _client_command(args: argparse.Namespace) -> int:
    from streamasr.engine.audio import SAMPLE_RATE, load_audio

    if not 1 <= args.chunk_ms <= 10000:
        raise ValueError(f"--chunk-ms must be in [1, 10000] ms, got {args.chunk_ms}")
    audio = load_audio(args.file)
    start = start_from_args(args, SAMPLE_RATE, args.encoding)
    printer = CaptionPrinter(sys.stdout, args.format)

    async def main() -> None:
        async with StreamClient(args.url, start, token_from_args(args)) as client:
            async for result in client.stream(audio, args.chunk_ms / 1000, realtime=not args.fast):
                printer.show(result)

    try:
        asyncio.run(main())
    finally:
        printer.close()
    return 0

