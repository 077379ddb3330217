"""Load test for ``streamasr serve``: N concurrent real-time websocket streams on loopback, stepped up.

Every stream sends a real speech signal (``Program``) at real-time pace in fixed chunks of int16 PCM
and records when each chunk left and when each message came back. The reference for each program is
the engine run offline over the very same chunks, which gives the final texts every stream must
reproduce and, for each word, the chunk after which the engine first has it:

- partial latency of a word: from sending the chunk that completes it (the first chunk after which
  the offline engine's hypothesis holds the word at that position) to receiving the first message
  (partial or final) that holds it there;
- final latency: from sending the chunk after which the offline engine ends the segment (or the
  ``stop`` message, for the segment that the end of audio closes) to receiving its ``final``.

A stream *kept up* when every one of those latencies stayed within ``lag_limit`` and it got ``done``;
a level is *exact* when every stream's final texts equal the reference (no stream starved or mixed
up; words that never match count as missing). The load generator runs in one asyncio process with
pre-encoded chunks; its own CPU use is reported next to the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from streamasr.engine.run import run
from streamasr.engine.adapt import AdaptConfig
from streamasr.engine.audio import SAMPLE_RATE
from streamasr.service.protocol import Start, Stop
from streamasr.engine.stream import Recognizer, StreamState
from streamasr.results import Result


@dataclass(frozen=True)
class LoadConfig:
    seconds: float = 20.0  # seconds of audio per stream pass (speech files joined, the last one cut)
    duration: float = 0.0  # seconds per level; 0: one pass per stream, more: streams reconnect and repeat (soak)
    chunk_ms: float = 100.0  # milliseconds of audio per websocket frame
    ramp: float = 2.0  # seconds over which the streams of a level start (evenly spread)
    programs: int = 16  # distinct audio signals; stream i sends signal i mod programs
    lag_limit: float = 1.0  # seconds: a later partial, final or done means the stream fell behind
    sample_every: float = 0.5  # seconds between CPU / memory samples of the server
    seed: int = 0  # picks the speech files of each signal
    gap: float = 0.0  # seconds of silence between the joined files (pauses that end segments)

    def __post_init__(self) -> None:
        checks = (("seconds", 1, 3600), ("duration", 0, 86400), ("chunk_ms", 10, 2000), ("ramp", 0, 600),
                  ("programs", 1, 10000), ("lag_limit", 0.05, 60), ("sample_every", 0.05, 60), ("gap", 0, 60))
        for name, low, high in checks:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"LoadConfig.{name} must be in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class Program:
    """One signal as the streams send it, with the offline engine's results over the same chunks."""

    name: str  # the files joined
    chunks: tuple[bytes, ...]  # int16 little-endian PCM frames
    finals: tuple[tuple[str, int], ...]  # per segment: (final text, chunk after which it ends; len(chunks) = stop)
    words: tuple[tuple[tuple[str, int], ...], ...]  # per segment: (word, chunk that completes it)

    @property
    def seconds(self) -> float:
        return sum(len(c) for c in self.chunks) / 2 / SAMPLE_RATE


def make_program(rec: Recognizer, audio: np.ndarray, chunk: int, name: str,
                 adapt: AdaptConfig | None = None) -> Program:
    """Cut ``audio`` (float32 at 16 kHz) into int16 chunks and run the engine over them offline
    (with ``adapt``, as a server with that speaker adaptation runs each stream)."""
    pcm = (np.clip(audio, -1.0, 32767 / 32768) * 32768).astype("<i2")
    chunks = tuple(pcm[i:i + chunk].tobytes() for i in range(0, len(pcm), chunk))
    state = rec.initial_state(adapt=adapt)
    timeline: list[tuple[int, str, int, str]] = []  # (chunk, kind, segment, text)
    fed = 0

    def note(_state: StreamState, results: list[Result]) -> None:
        nonlocal fed
        timeline.extend((fed, r.kind, r.segment, r.text) for r in results)
        fed += 1

    _, results = run(rec, state, chunks, "pcm_s16le", on_chunk=note)
    timeline += [(len(chunks), r.kind, r.segment, r.text) for r in results[len(timeline):]]
    finals = [(text, k) for k, kind, _, text in timeline if kind == "final"]
    words: list[list[tuple[str, int]]] = [[] for _ in finals]
    for k, _, segment, text in timeline:  # the first chunk whose hypothesis holds each word
        if segment < len(finals):
            seg_words, final_words = text.split(), finals[segment][0].split()
            done = words[segment]
            while len(done) < len(final_words) and len(done) < len(seg_words) \
                    and seg_words[len(done)] == final_words[len(done)]:
                done.append((final_words[len(done)], k))
    return Program(name, chunks, tuple(finals), tuple(tuple(w) for w in words))


def join_files(paths: Sequence[str], seconds: float, count: int, seed: int,
               load: Any, gap: float = 0.0) -> list[tuple[str, np.ndarray]]:
    """``count`` signals of ``seconds`` each: files joined in a seeded random order, the last one cut.

    Args:
        load: ``path -> float32 samples at 16 kHz`` (``audio.load_audio``).
        gap: seconds of digital silence after each file.
    """
    rng = random.Random(seed)
    cache: dict[str, np.ndarray] = {}
    signals: list[tuple[str, np.ndarray]] = []
    for _ in range(count):
        parts: list[str] = []
        pause = np.zeros(round(gap * SAMPLE_RATE), np.float32)
        while sum(len(cache[p]) + len(pause) for p in parts) < seconds * SAMPLE_RATE:
            path = rng.choice(list(paths))
            if path not in cache:
                cache[path] = load(path)
            parts.append(path)
        audio = np.concatenate([x for p in parts for x in (cache[p], pause)])[: round(seconds * SAMPLE_RATE)]
        signals.append(("+".join(p.rsplit("/", 1)[-1] for p in parts), audio))
    return signals


@dataclass
class StreamLog:
    """What one stream pass saw: send times per chunk, and every message with its arrival time."""

    program: Program
    sent: list[float] = field(default_factory=list)  # perf_counter of each chunk's send, then of 'stop'
    late: float = 0.0  # seconds the load generator sent its worst chunk behind schedule
    received: list[tuple[float, str]] = field(default_factory=list)
    error: str = ""  # why the pass failed ("" if it got 'done')


async def run_stream(url: str, program: Program, chunk_s: float, begin: float, lag_limit: float) -> StreamLog:
    """One stream pass: connect at ``begin`` (perf_counter), send at real time, collect until 'done'."""
    log = StreamLog(program)
    await asyncio.sleep(max(0.0, begin - time.perf_counter()))
    try:
        async with connect(url, compression=None, max_size=None, open_timeout=30, ping_interval=None,
                           close_timeout=2) as ws:
            await ws.send(Start(encoding="pcm_s16le").to_json())
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                log.error = f"expected 'ready', got {ready}"
                return log
            receiver = asyncio.create_task(_receive(ws, log))
            try:
                t0 = time.perf_counter()
                for k, data in enumerate(program.chunks):
                    delay = t0 + k * chunk_s - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    else:
                        log.late = max(log.late, -delay)
                    log.sent.append(time.perf_counter())
                    await ws.send(data)
                await asyncio.sleep(max(0.0, t0 + len(program.chunks) * chunk_s - time.perf_counter()))
                log.sent.append(time.perf_counter())
                await ws.send(Stop().to_json())
                async with asyncio.timeout(max(10.0, 3 * lag_limit)):
                    await asyncio.shield(receiver)
            finally:
                receiver.cancel()
            if not any(text.startswith('{"type":"done"') for _, text in log.received):
                log.error = "closed without 'done'"
    except TimeoutError:
        log.error = "no 'done' in time"
    except (OSError, WebSocketException) as e:
        log.error = f"{type(e).__name__}: {e}"
    return log


async def _receive(ws: Any, log: StreamLog) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            log.received.append((time.perf_counter(), message))
            if message.startswith('{"type":"done"'):
                return


@dataclass(frozen=True)
class StreamScore:
    """Latencies (seconds) and checks of one stream pass."""

    partial: list[float]  # one per reference word
    final: list[float]  # one per reference final
    done: float | None  # 'stop' sent -> 'done' received
    missing: int  # reference words or finals never received
    mismatch: bool  # final texts differ from the reference
    error: str


def score_stream(log: StreamLog) -> StreamScore:
    """Match a stream's messages against its program's reference (see the module docstring)."""
    program = log.program
    partial: list[float] = []
    final: list[float] = []
    seen = [0] * len(program.words)  # words of each segment already found
    texts: list[str] = []
    done = None
    for at, text in log.received:
        message = json.loads(text)
        kind = message.get("type")
        if kind == "done" and log.sent:
            done = at - log.sent[-1]
        if kind not in ("partial", "final"):
            continue
        segment = int(message["segment"])
        if kind == "final":
            texts.append(message["text"])
            if segment < len(program.finals):
                final.append(at - log.sent[min(program.finals[segment][1], len(log.sent) - 1)])
        if segment >= len(program.words):
            continue
        got, want = message["text"].split(), program.words[segment]
        while seen[segment] < min(len(got), len(want)) and got[seen[segment]] == want[seen[segment]][0]:
            partial.append(at - log.sent[min(want[seen[segment]][1], len(log.sent) - 1)])
            seen[segment] += 1
    missing = sum(len(w) for w in program.words) - len(partial) + len(program.finals) - len(final)
    mismatch = texts != [text for text, _ in program.finals]
    return StreamScore(partial, final, done, missing, mismatch and not log.error, log.error)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50 / p95 / p99 / max in milliseconds (None without values)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    q = np.percentile(np.asarray(values), [50, 95, 99, 100])
    return {name: round(float(v) * 1000, 1) for name, v in zip(("p50", "p95", "p99", "max"), q)}


def summarise(logs: list[StreamLog], lag_limit: float) -> dict[str, Any]:
    """Level result from its stream passes: kept-up count, latency percentiles, text checks."""
    scores = [score_stream(log) for log in logs]

    def kept_up(s: StreamScore) -> bool:
        worst = max(s.partial + s.final + [s.done if s.done is not None else float("inf")])
        return not s.error and worst <= lag_limit

    errors: dict[str, int] = {}
    for s in scores:
        if s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    behind = sum(not kept_up(s) for s in scores)
    return {
        "passes": len(scores),
        "behind": behind,
        "realtime": behind == 0,
        "mismatched": sum(s.mismatch for s in scores),
        "missing": sum(s.missing for s in scores if not s.error),
        "exact": not any(s.mismatch or s.missing for s in scores if not s.error),
        "errors": errors,
        "words": sum(len(s.partial) for s in scores),
        "partial_ms": percentiles([x for s in scores for x in s.partial]),
        "final_ms": percentiles([x for s in scores for x in s.final]),
        "done_ms": percentiles([s.done for s in scores if s.done is not None]),
        "send_late_ms": round(max((log.late for log in logs), default=0.0) * 1000, 1),
    }


def iter_schedule(streams: int, ramp: float) -> Iterator[float]:
    """Start offsets (seconds) of a level's streams, evenly spread over ``ramp``."""
    for i in range(streams):
        yield ramp * i / streams
