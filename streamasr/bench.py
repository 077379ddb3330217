"""Benchmarks: ``streamasr bench KIND``, one function (and one ``_register_KIND``) per kind.

``engine`` measures the real-time factor of one stream on one thread through the whole engine
(front end, model, decoder) and how that time splits between the stages. To add a kind (e.g. a
``server`` load test), write ``bench_KIND`` plus ``_register_KIND`` and list it in ``KINDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamasr import stream
from streamasr.audio import SAMPLE_RATE, load_audio
from streamasr.endpoint import EndpointConfig

# Engine stages timed by ``bench_engine``: report name -> function name in streamasr.stream.
STAGES = {"front_end": "_front_end", "model": "_run_model", "decoder": "_decode"}


@dataclass(frozen=True)
class EngineBench:
    """Result of ``bench_engine``; times are seconds."""

    model: str  # recognizer name
    audio: str  # file name, or a description of the synthetic signal
    audio_seconds: float  # length of the signal
    chunk_ms: float  # milliseconds per step() call
    threads: int  # torch intra-op threads
    wall: tuple[float, ...]  # seconds per repeat (one fresh stream each)
    stages: dict[str, float]  # seconds per stage, summed over repeats; "other" is Python glue

    @property
    def rtf(self) -> float:
        """Real-time factor: median processing seconds per audio second (< 1 is faster than real time)."""
        return statistics.median(self.wall) / self.audio_seconds

    def shares(self) -> dict[str, float]:
        """Fraction of the total time spent in each stage."""
        total = sum(self.stages.values()) or 1.0
        return {name: t / total for name, t in self.stages.items()}

    def to_dict(self) -> dict[str, Any]:
        per_second = {k: 1000 * t / len(self.wall) / self.audio_seconds for k, t in self.stages.items()}
        return {**asdict(self), "rtf": self.rtf, "shares": self.shares(), "ms_per_audio_second": per_second}


@contextlib.contextmanager
def _timed_stages() -> Iterator[dict[str, float]]:
    """Wrap the stage functions of ``streamasr.stream`` with timers for the duration of the block.

    ``step_many`` looks the stages up as module globals at call time, so swapping them there
    times the real code path without changing it. Not for use while other threads run streams.
    """
    totals = dict.fromkeys(STAGES, 0.0)
    originals = {name: getattr(stream, attr) for name, attr in STAGES.items()}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - t0
        return wrapper

    try:
        for name, attr in STAGES.items():
            setattr(stream, attr, timed(name, originals[name]))
        yield totals
    finally:
        for name, attr in STAGES.items():
            setattr(stream, attr, originals[name])


def _run_stream(rec: stream.Recognizer, audio: np.ndarray, chunk: int, endpoint_cfg: EndpointConfig) -> None:
    state = rec.initial_state(SAMPLE_RATE, endpoint_cfg)
    for start in range(0, len(audio), chunk):
        state, _ = stream.step(rec, state, audio[start:start + chunk])
    stream.finish(rec, state)


def bench_engine(rec: stream.Recognizer, audio: np.ndarray, chunk_ms: float = 100.0, repeat: int = 5,
                 threads: int = 1, name: str = "audio") -> EngineBench:
    """Time single-stream recognition of ``audio``, fed in ``chunk_ms`` chunks, ``repeat`` times.

    Args:
        audio: float32 (samples,) mono PCM at 16 kHz.
        threads: torch intra-op threads during the run (restored afterwards).
        name: what ``audio`` is, for the report.

    Raises:
        ValueError: ``chunk_ms``, ``repeat`` or ``threads`` out of range, or empty audio.
    """
    if not chunk_ms > 0 or repeat < 1 or threads < 1:
        raise ValueError(f"need chunk_ms > 0, repeat >= 1 and threads >= 1; got chunk_ms={chunk_ms}, "
                         f"repeat={repeat}, threads={threads}")
    if len(audio) == 0:
        raise ValueError("bench audio has 0 samples; expected at least some audio")
    chunk = max(1, round(chunk_ms * SAMPLE_RATE / 1000))
    endpoint_cfg = EndpointConfig()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _run_stream(rec, audio, chunk, endpoint_cfg)  # warm-up: first calls build caches
        wall: list[float] = []
        with _timed_stages() as totals:
            for _ in range(repeat):
                t0 = time.perf_counter()
                _run_stream(rec, audio, chunk, endpoint_cfg)
                wall.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    stages = {**totals, "other": max(0.0, sum(wall) - sum(totals.values()))}
    return EngineBench(rec.name, name, len(audio) / SAMPLE_RATE, chunk_ms, threads, tuple(wall), stages)


def synthetic_audio(seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Deterministic speech-like test signal: float32 (samples,) of noise bursts and harmonics."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float64)  # ~170 ms syllables and pauses
    return (0.05 * envelope * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def format_engine(result: EngineBench) -> str:
    """A plain-text table of an ``EngineBench``."""
    d = result.to_dict()
    lines = [
        f"engine bench: model {result.model}, {result.audio} ({result.audio_seconds:.2f} s), "
        f"chunk {result.chunk_ms:g} ms, {result.threads} thread(s), {len(result.wall)} repeats",
        f"{'stage':<10} {'ms/audio s':>11} {'share':>7}   (mean over repeats)",
    ]
    for stage, ms in d["ms_per_audio_second"].items():
        lines.append(f"{stage:<10} {ms:>11.2f} {100 * d['shares'][stage]:>6.1f}%")
    lines.append(f"{'total':<10} {1000 * sum(result.stages.values()) / len(result.wall) / result.audio_seconds:>11.2f}")
    lines.append(f"real-time factor {result.rtf:.4f} (median of {len(result.wall)}; "
                 f"{1 / result.rtf:.0f}x faster than real time)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Command line


def _register_engine(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser("engine", help="single-stream real-time factor of front end + model + decoder",
                         description="Real-time factor of one stream on one thread, with the share of "
                                     "time in the front end, the model and the decoder.")
    p.add_argument("--model", metavar="PATH", help="checkpoint (default: the bundled model)")
    p.add_argument("--file", type=Path, metavar="PATH", help="audio file (default: 10 s synthetic signal)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--chunk-ms", type=float, default=100.0, metavar="MS", help="chunk size (default: 100)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs; the median is reported (default: 5)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.set_defaults(func=_engine_command)


def _engine_command(args: argparse.Namespace) -> int:
    from streamasr.transcribe import load_recognizer  # the same clear error for a missing default model

    rec = load_recognizer(args.model)
    if args.file is None:
        audio, name = synthetic_audio(), "synthetic signal"
    else:
        audio, name = load_audio(args.file), str(args.file)
    result = bench_engine(rec, audio, args.chunk_ms, args.repeat, args.threads, name)
    sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n" if args.json else format_engine(result))
    return 0


KINDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (_register_engine,)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``streamasr bench KIND`` to the CLI, one sub-subcommand per entry of ``KINDS``."""
    p = subparsers.add_parser("bench", help="benchmarks (engine real-time factor, ...)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for add in KINDS:
        add(kinds)
