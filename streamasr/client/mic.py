"""Live captions from the microphone: ``streamasr mic``, locally (no server) or through a server.

The sounddevice callback runs on PortAudio's thread and only hands each block to the event loop
(``loop.call_soon_threadsafe`` -> ``asyncio.Queue``). Audio sources are injectable: anything with a
``sample_rate`` and a ``chunks()`` async iterator, e.g. ``FileSource`` in tests and demos.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from streamasr.client import CaptionPrinter, StreamClient, add_stream_options, start_from_args, token_from_args
from streamasr.errors import AudioError
from streamasr.service.protocol import Start
from streamasr.results import Result

OnResult = Callable[[Result], None]


class AudioSource(Protocol):
    """Mono float32 audio in chunks, as a live source delivers it."""

    sample_rate: int  # Hz of the chunks

    def chunks(self) -> AsyncIterator[np.ndarray]:
        """float32 (samples,) chunks in [-1, 1] until the source ends."""
        ...


def load_sounddevice() -> ModuleType:
    """Import sounddevice, or raise AudioError saying how to get it working."""
    try:
        import sounddevice
    except ModuleNotFoundError as e:
        raise AudioError("the mic command needs sounddevice: pip install 'streamasr[mic]'") from e
    except OSError as e:  # the wheel is there but the PortAudio library is not
        raise AudioError(f"sounddevice cannot load PortAudio ({e}); install it, e.g. "
                         "'apt-get install libportaudio2' or 'brew install portaudio'") from e
    return sounddevice


def input_devices() -> list[dict[str, Any]]:
    """Audio input devices: index, name, channels, default sample rate."""
    sd = load_sounddevice()
    return [{"index": i, "name": d["name"], "channels": d["max_input_channels"],
             "sample_rate": int(d["default_samplerate"])}
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


class MicSource:
    """The microphone via sounddevice; blocks arrive through a queue on the event loop."""

    def __init__(self, device: int | str | None = None, sample_rate: int | None = None,
                 block_seconds: float = 0.1) -> None:
        self.sd = load_sounddevice()
        if not input_devices():
            raise AudioError("no audio input device found: connect a microphone (list devices with "
                             "'streamasr mic --list-devices') or stream a file with 'streamasr client'")
        try:
            info = self.sd.query_devices(device, kind="input")
        except (ValueError, self.sd.PortAudioError) as e:
            raise AudioError(f"input device {device!r} not usable ({e}); see 'streamasr mic --list-devices'") from e
        self.device = device
        self.sample_rate = int(sample_rate or info["default_samplerate"])
        self.block = max(1, int(block_seconds * self.sample_rate))
        self.overflows = 0  # blocks PortAudio dropped because we were too slow

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()

        queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue()

        def hand_over(block: np.ndarray | None) -> None:  # runs on PortAudio's thread
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, block)

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.input_overflow:
                self.overflows += 1
            hand_over(indata[:, 0].copy())

        try:
            stream = self.sd.InputStream(device=self.device, channels=1, samplerate=self.sample_rate,
                                         dtype="float32", blocksize=self.block, callback=callback,
                                         finished_callback=lambda: hand_over(None))
        except self.sd.PortAudioError as e:
            raise AudioError(f"cannot open input device {self.device!r} at {self.sample_rate} Hz: {e}") from e
        with stream:
            while True:
                blocks = [await queue.get()]
                while not queue.empty():  # fell behind: catch up in one step
                    blocks.append(queue.get_nowait())
                ended = blocks[-1] is None  # the stream stopped (device gone)
                audio = [b for b in blocks if b is not None]
                if audio:
                    yield np.concatenate(audio)
                if ended:
                    return


class FileSource:
    """An audio file played as if it were a microphone (real-time pace unless ``realtime=False``)."""

    def __init__(self, path: str | Path, block_seconds: float = 0.1, realtime: bool = True) -> None:
        from streamasr.engine.audio import SAMPLE_RATE, load_audio

        self.audio = load_audio(path)
        self.sample_rate = SAMPLE_RATE
        self.block = max(1, int(block_seconds * self.sample_rate))
        self.realtime = realtime

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        began = time.monotonic()
        for offset in range(0, len(self.audio), self.block):
            if self.realtime:
                await asyncio.sleep(max(0.0, began + offset / self.sample_rate - time.monotonic()))
            yield self.audio[offset: offset + self.block]


async def until(chunks: AsyncIterator[np.ndarray], stop: asyncio.Event | None) -> AsyncIterator[np.ndarray]:
    """``chunks`` until they end or ``stop`` is set (e.g. by Ctrl-C), closing the source either way."""
    stopped = asyncio.ensure_future(stop.wait() if stop else asyncio.get_running_loop().create_future())
    try:
        while True:
            following = asyncio.ensure_future(anext(chunks))
            await asyncio.wait((following, stopped), return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            try:
                yield following.result()
            except StopAsyncIteration:
                return
    finally:
        stopped.cancel()
        aclose = getattr(chunks, "aclose", None)  # async generators: run their cleanup now
        if aclose is not None:
            await aclose()


async def run_local(source: AudioSource, rec: Any, on_result: OnResult, endpoint: Any = None,
                    stop: asyncio.Event | None = None, adapt: Any = None, nbest: int = 1,
                    hotwords: Sequence[str | tuple[str, float]] = (), grammar: Sequence[str] | None = None) -> Any:
    """Recognise ``source`` in this process; model work runs in a thread, off the event loop.

    Args:
        rec: a ``streamasr.engine.stream.Recognizer``.
        endpoint: an ``EndpointConfig`` (default rules when None).
        nbest, hotwords, grammar: as ``Recognizer.initial_state`` takes them.
        adapt: an ``AdaptConfig``, or an ``AdaptState`` to go on from (a speaker profile): the
            stream learns its speaker's voice at each segment's end, on a thread of its own
            (``adapt.Learner``), so captions never wait for it.

    Returns:
        the finished ``StreamState``.
    """
    from functools import partial

    from streamasr.engine.stream import finish, step_many

    loop = asyncio.get_running_loop()
    state = rec.initial_state(source.sample_rate, endpoint, adapt, nbest, list(hotwords) or None,
                              list(grammar) if grammar is not None else None)
    learner = rec.learner() if state.adapt is not None else None
    try:
        async for chunk in until(source.chunks(), stop):
            [(state, results)] = await loop.run_in_executor(None, partial(step_many, rec, [state], [chunk],
                                                                          learner=learner))
            for result in results:
                on_result(result)
        state, results = await loop.run_in_executor(None, finish, rec, state)
        for result in results:
            on_result(result)
        return state
    finally:
        if learner is not None:
            await loop.run_in_executor(None, learner.close)


async def run_remote(source: AudioSource, url: str, start: Start, on_result: OnResult,
                     token: str | None = None, stop: asyncio.Event | None = None) -> None:
    """Stream ``source`` to a server and hand every result to ``on_result``."""
    from dataclasses import replace

    start = replace(start, sample_rate=source.sample_rate, encoding="pcm_f32le")
    async with StreamClient(url, start, token) as client:
        async for result in client.stream(until(source.chunks(), stop)):
            on_result(result)


def _keep_speaker(rec: Any, state: Any, speaker: Any, profile: Path) -> None:
    """Learn from the session's last segment and keep the voice in ``profile`` for the next one."""
    from streamasr.engine.stream import keep_speaker

    kept = rec.save_speaker(keep_speaker(rec, state, speaker), profile)
    print(f"streamasr mic: speaker profile {profile}: {kept.segments} segments learnt in all", file=sys.stderr)


def _finals_only(on_result: OnResult) -> OnResult:
    def show(result: Result) -> None:
        if result.is_final:
            on_result(result)
    return show


def register(sub: Any) -> None:
    """Add the ``mic`` subcommand."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "mic", help="live captions from the microphone",
        description="Caption the microphone live, in this process or through a server (--url). Ctrl-C ends.")
    parser.add_argument("--url", default=None, help="stream to this server (ws://HOST:PORT/v1/stream) "
                                                    "instead of recognising locally")
    parser.add_argument("--model", default=None, help="checkpoint for local mode (default: the bundled model)")
    parser.add_argument("--device", default=None, help="input device index or name (default: the system's)")
    parser.add_argument("--sample-rate", type=int, default=None, help="capture rate in Hz (default: the device's)")
    parser.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    parser.add_argument("--from-file", default=None, metavar="FILE",
                        help="play FILE at real-time pace instead of the microphone (demos, tests)")
    add_stream_options(parser)
    from streamasr.engine.beam import DecoderConfig
    from streamasr.options import add_dataclass_options

    add_dataclass_options(parser, DecoderConfig)  # local mode: --method, --beam-size, --lm-weight, ...
    from streamasr.engine.adapt import AdaptConfig

    add_dataclass_options(parser, AdaptConfig, prefix="adapt_")  # local mode: --adapt-lr, --adapt-steps, ...
    parser.set_defaults(func=_mic_command)


def _mic_command(args: argparse.Namespace) -> int:
    if args.list_devices:
        devices = input_devices()
        if not devices:
            print("no audio input devices found")
        for d in devices:
            print(f"{d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['sample_rate']} Hz)")
        return 0
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    source: AudioSource = FileSource(args.from_file) if args.from_file else MicSource(device, args.sample_rate)
    start = start_from_args(args, source.sample_rate, "pcm_f32le")
    from streamasr.engine.beam import DecoderConfig
    from streamasr.options import dataclass_from_args

    decoder = dataclass_from_args(DecoderConfig, args)
    from streamasr.engine.adapt import AdaptConfig

    adapt = dataclass_from_args(AdaptConfig, args, prefix="adapt_")
    if adapt.enabled and args.url:
        raise ValueError("--adapt-lr is for local recognition; with --url the server's own --adapt-lr decides "
                         "(and --no-adapt declines it)")
    profile = None if args.url or args.speaker is None else Path(args.speaker)  # local mode: a file
    adapt.check_profile(profile)
    if args.speaker is not None and not args.adapt:
        raise ValueError(f"--speaker {args.speaker} keeps what the voice taught: drop --no-adapt")
    printer = CaptionPrinter(sys.stdout, args.format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_interrupt() -> None:  # first Ctrl-C: finish the segment and exit; a second one aborts
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        with contextlib.suppress(NotImplementedError):  # no loop signal handlers on Windows
            loop.add_signal_handler(signal.SIGINT, on_interrupt)
        try:
            if args.url:
                await run_remote(source, args.url, start, printer.show, token_from_args(args), stop)
            else:
                from streamasr.engine.stream import Recognizer

                rec = await loop.run_in_executor(None, Recognizer.load, args.model, False, decoder)
                shown = printer.show if args.partials else _finals_only(printer.show)
                speaker = rec.speaker(adapt, profile) if adapt.enabled and args.adapt else None
                state = await run_local(source, rec, shown, start.endpoint, stop,
                                        speaker.adapt if speaker is not None else None, start.nbest, start.hotwords,
                                        start.grammar)
                if speaker is not None and profile is not None:
                    await loop.run_in_executor(None, _keep_speaker, rec, state, speaker, profile)
        finally:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signal.SIGINT)

    try:
        asyncio.run(main())
    finally:
        printer.close()
    return 0
