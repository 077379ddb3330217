"""Benchmarks: ``streamasr bench KIND``, one function (and one ``_register_KIND``) per kind.

``engine`` measures the real-time factor of one stream through the whole engine (front end, model,
decoder) on one thread and on all threads, and how that time splits between the stages. ``server``
is a load test of a real ``streamasr serve`` process (``streamasr.bench.loadtest``): N concurrent
websocket streams at real-time pace, stepped up until the service no longer keeps up, with a JSON
report and a plot. ``data`` times the training data pipeline (what one DataLoader worker does per
utterance): how many workers keep a trainer fed. To add a kind, write ``bench_KIND`` plus ``_register_KIND`` and list it in ``KINDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamasr.engine.run import pieces, run
from streamasr.results import Result
from streamasr.engine import stream
from streamasr.engine.audio import SAMPLE_RATE, load_audio
from streamasr.engine.beam import DecoderConfig, by_length
from streamasr.engine.adapt import AdaptConfig
from streamasr.options import add_dataclass_options, dataclass_argv, dataclass_from_args
from streamasr.engine.endpoint import EndpointConfig

# Engine stages timed by ``bench_engine``: report name -> function name in streamasr.engine.stream.
STAGES = {"front_end": "_front_end", "model": "_run_model", "decoder": "_decode_all", "adapt": "_learn"}


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
    state_bytes: int = 0  # largest StreamState seen during one run (``state_bytes``)

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
def _timed(patches: list[tuple[Any, str, str]]) -> Iterator[dict[str, float]]:
    """Wrap each ``(object, attribute, stage)`` function with a timer for the duration of the block.

    The code under test looks these up at call time (module globals, instance attributes), so
    swapping them there times the real code path without changing it. Yields seconds per stage.
    """
    totals = dict.fromkeys((stage for _, _, stage in patches), 0.0)
    originals = [getattr(obj, attr) for obj, attr, _ in patches]

    def timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[stage] += time.perf_counter() - t0
        return wrapper

    try:
        for (obj, attr, stage), fn in zip(patches, originals):
            setattr(obj, attr, timed(stage, fn))
        yield totals
    finally:
        for (obj, attr, _), fn in zip(patches, originals):
            setattr(obj, attr, fn)


def _timed_stages() -> contextlib.AbstractContextManager[dict[str, float]]:
    """Timers on the stage functions of ``streamasr.engine.stream`` (``step_many`` calls them as module
    globals). Not for use while other threads run streams."""
    return _timed([(stream, attr, name) for name, attr in STAGES.items()])


def _run_stream(rec: stream.Recognizer, audio: np.ndarray, chunk: int, endpoint_cfg: EndpointConfig,
                measure: bool = False, adapt: AdaptConfig | None = None) -> int:
    """One stream over ``audio``; returns the largest state size seen (when ``measure``) or 0."""
    largest = 0

    def size(state: stream.StreamState, _results: list[Result]) -> None:
        nonlocal largest
        largest = max(largest, state_bytes(state))

    run(rec, rec.initial_state(SAMPLE_RATE, endpoint_cfg, adapt), pieces(audio, chunk),
        on_chunk=size if measure else None)
    return largest


def state_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Memory held by a stream state: array and tensor buffers plus every Python object, in bytes.

    Objects reachable twice count once; interned small ints and strings count too (an overestimate).
    """
    import dataclasses

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return sys.getsizeof(obj) + (obj.nbytes if obj.base is not None else 0)  # getsizeof counts owned data
    if isinstance(obj, torch.Tensor):
        return sys.getsizeof(obj) + obj.untyped_storage().nbytes()
    if isinstance(obj, (tuple, list)):
        return sys.getsizeof(obj) + sum(state_bytes(x, seen) for x in obj)
    if dataclasses.is_dataclass(obj):
        return sys.getsizeof(obj) + sum(state_bytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    return sys.getsizeof(obj)


def bench_engine(rec: stream.Recognizer, audio: np.ndarray, chunk_ms: float = 100.0, repeat: int = 5,
                 threads: int = 1, name: str = "audio", adapt: AdaptConfig | None = None) -> EngineBench:
    """Time single-stream recognition of ``audio``, fed in ``chunk_ms`` chunks, ``repeat`` times.

    Args:
        audio: float32 (samples,) mono PCM at 16 kHz.
        threads: torch intra-op threads during the run (restored afterwards).
        name: what ``audio`` is, for the report.
        adapt: speaker adaptation for each run's stream (a new speaker each time); its learning
            steps are the stage "adapt".

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
        _run_stream(rec, audio, chunk, endpoint_cfg, adapt=adapt)  # warm-up: first calls build caches
        wall: list[float] = []
        with _timed_stages() as totals:
            for _ in range(repeat):
                t0 = time.perf_counter()
                _run_stream(rec, audio, chunk, endpoint_cfg, adapt=adapt)
                wall.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    stages = {**totals, "other": max(0.0, sum(wall) - sum(totals.values()))}
    largest = _run_stream(rec, audio, chunk, endpoint_cfg, measure=True, adapt=adapt)
    return EngineBench(rec.name, name, len(audio) / SAMPLE_RATE, chunk_ms, threads, tuple(wall), stages, largest)


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
    lines.append(f"largest stream state {result.state_bytes / 1024:.1f} KB")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Training data pipeline (what one DataLoader worker does per utterance)

DATA_STAGES = ("read", "prepare", "waveform_aug", "features", "feature_aug")


@dataclass(frozen=True)
class DataBench:
    """Result of ``bench_data``; times are seconds, summed over repeats."""

    manifest: str
    utterances: int
    audio_seconds: float  # one pass over the utterances, before augmentation
    step: int  # training step the augmentation strength is taken from
    wall: tuple[float, ...]  # seconds per pass of one worker
    stages: dict[str, float]
    # ``on_device``: the worker only reads and prepares; the rest runs batched on ``device``
    device: str = ""
    device_wall: tuple[float, ...] = ()  # seconds per pass of ``augment_batch`` over the same audio

    @property
    def rate(self) -> float:
        """Audio seconds one worker prepares per second of its time (median pass)."""
        return self.audio_seconds / statistics.median(self.wall)

    @property
    def device_rate(self) -> float | None:
        """Audio seconds the device augments and turns into log-mel per second (median pass)."""
        return self.audio_seconds / statistics.median(self.device_wall) if self.device_wall else None

    def to_dict(self) -> dict[str, Any]:
        per_second = {k: 1000 * t / len(self.wall) / self.audio_seconds for k, t in self.stages.items()}
        return {**asdict(self), "audio_seconds_per_second": self.rate, "ms_per_audio_second": per_second,
                "device_audio_seconds_per_second": self.device_rate}


def bench_data(items: list[Any], name: str, aug: Any, step: int = 10**6, repeat: int = 3,
               device: str | None = None, batch_seconds: float = 120.0) -> DataBench:
    """Time ``SpeechDataset`` (read, prepare, waveform augmentation, log-mel, feature augmentation) on one thread.

    The rate says how many data workers a trainer needs: a GPU step that eats 4,000 audio seconds
    per second needs 4,000 / rate of them. ``aug`` None times the pipeline without augmentation.
    With ``device`` (``train --augment-on device``) the workers only read and prepare, and the
    rest is timed as ``augment_batch`` on that device, over batches of ``batch_seconds``.
    """
    from streamasr.training import augment, data
    from streamasr.engine.features import FeatureConfig, FeatureExtractor
    from streamasr.engine.text import Tokenizer

    if not items or repeat < 1:
        raise ValueError(f"need at least one utterance and repeat >= 1; got {len(items)} and repeat={repeat}")
    if device is not None and aug is None:
        raise ValueError("a device bench needs augmentation (there is nothing to time on the device without it)")
    dataset = data.SpeechDataset(items, FeatureConfig(), Tokenizer(), aug, on_device=device is not None)
    # SpeechDataset looks these up at call time, so the real code path is timed unchanged.
    patches = [(data, "read_pcm", "read"), (augment, "prepare", "prepare"), (augment, "apply_waveform", "waveform_aug"),
               (dataset, "features", "features"), (augment, "apply_features", "feature_aug")]  # DATA_STAGES
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker runs on one thread
    try:
        dataset[0, step]  # warm-up: first calls build filter banks and caches
        wall: list[float] = []
        with _timed(patches) as totals:
            for _ in range(repeat):
                t0 = time.perf_counter()
                prepared = [dataset[i, step] for i in range(len(items))]
                wall.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    seconds = sum(u.duration for u in items)
    stages = {**totals, "other": max(0.0, sum(wall) - sum(totals.values()))}
    if device is None:
        return DataBench(name, len(items), seconds, step, tuple(wall), stages)
    # The device's part, over duration-sorted batches as the trainer gets them; the trainer's threads.
    order = data.bucket_batches([u.duration for u in items], batch_seconds, 0, 0)
    batches = [data.collate_waves([prepared[i] for i in batch]) for batch in order]
    features = FeatureExtractor(FeatureConfig()).to(device)

    def run_device() -> float:
        t0 = time.perf_counter()
        for b in batches:
            augment.augment_batch(b["waves"].to(device), b["wave_lens"], b["plans"], features)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    run_device()  # warm-up: kernels, FFT plans
    device_wall = tuple(run_device() for _ in range(repeat))
    return DataBench(name, len(items), seconds, step, tuple(wall), stages, device, device_wall)


def format_data(result: DataBench) -> str:
    d = result.to_dict()
    lines = [f"data bench: {result.utterances} utterances of {result.manifest} ({result.audio_seconds:.0f} s), "
             f"augmentation of step {result.step}, one thread, {len(result.wall)} passes",
             f"{'stage':<13} {'ms/audio s':>11}   (mean over passes)"]
    lines += [f"{stage:<13} {ms:>11.3f}" for stage, ms in d["ms_per_audio_second"].items()]
    lines.append(f"one worker prepares {result.rate:.0f} audio seconds per second (median pass)")
    if result.device_rate is not None:
        lines.append(f"augmentation and log-mel on {result.device} ({torch.get_num_threads()} threads): "
                     f"{result.device_rate:.0f} audio seconds per second (median pass)")
    return "\n".join(lines) + "\n"


def _register_data(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser("data", help="training data pipeline: audio seconds one data worker prepares per second",
                         description="Time what one training data worker does per utterance (read, waveform "
                                     "augmentation, log-mel, feature augmentation) on a random sample of a "
                                     "manifest, one thread: how many workers keep a trainer fed.")
    p.add_argument("--manifest", type=Path, required=True, metavar="PATH", help="JSON-lines manifest")
    p.add_argument("--utterances", type=int, default=200, metavar="N", help="random sample size (default: 200)")
    p.add_argument("--step", type=int, default=10**6,
                   help="training step whose augmentation strength to use (default: full strength)")
    p.add_argument("--no-augment", action="store_true", help="time reading and features only")
    p.add_argument("--augment-on-device", metavar="DEVICE",
                   help="as 'train --augment-on device' does it: workers only read and prepare; time the "
                        "rest batched on DEVICE (cpu, cuda)")
    p.add_argument("--batch-seconds", type=float, default=120.0,
                   help="audio per batch on the device (default: 120)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes; the median is reported (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="sample seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.set_defaults(func=_data_command)


def _data_command(args: argparse.Namespace) -> int:
    import random

    from streamasr.training.augment import AugmentConfig
    from streamasr.manifest import read_manifest

    if args.utterances < 1:
        raise ValueError(f"--utterances must be at least 1, got {args.utterances}")
    device = args.augment_on_device
    if device is not None and device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--augment-on-device takes cpu or cuda[:N], got {device!r}")
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--augment-on-device {device}: torch {torch.__version__} sees no CUDA GPU")
    items = read_manifest(args.manifest)
    items = random.Random(args.seed).sample(items, min(args.utterances, len(items)))
    result = bench_data(items, str(args.manifest), None if args.no_augment else AugmentConfig(),
                        args.step, args.repeat, device, args.batch_seconds)
    sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n" if args.json else format_data(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Command line


def _thread_counts(text: str) -> list[int]:
    """``"1,all"`` -> [1, os.cpu_count()]."""
    counts = []
    for part in text.split(","):
        part = part.strip()
        count = (os.cpu_count() or 1) if part == "all" else int(part) if part.isdigit() else 0
        if count < 1:
            raise ValueError(f"--threads takes thread counts >= 1 or 'all', comma-separated; got {text!r}")
        counts.append(count)
    return counts


def _register_engine(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser("engine", help="single-stream real-time factor of front end + model + decoder",
                         description="Real-time factor of one stream on one thread and on all threads, with "
                                     "the share of time in the front end, the model and the decoder.")
    p.add_argument("--model", metavar="PATH", help="checkpoint (default: the bundled model)")
    p.add_argument("--quantize", action="store_true", help="int8 dynamic quantisation of the model")
    p.add_argument("--file", type=Path, metavar="PATH", help="audio file (default: 10 s synthetic signal)")
    p.add_argument("--threads", default="1,all", metavar="N,...",
                   help="torch thread counts to measure, 'all' = every CPU (default: 1,all)")
    p.add_argument("--chunk-ms", type=float, default=100.0, metavar="MS", help="chunk size (default: 100)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs; the median is reported (default: 5)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    add_dataclass_options(p, DecoderConfig)  # --method, --beam-size, ...
    add_dataclass_options(p, AdaptConfig, prefix="adapt_")  # --adapt-lr, ...: time speaker adaptation too
    p.set_defaults(func=_engine_command)


def _engine_command(args: argparse.Namespace) -> int:
    threads = _thread_counts(args.threads)
    adapt = dataclass_from_args(AdaptConfig, args, prefix="adapt_")
    adapt.check_float(args.quantize)
    rec = stream.Recognizer.load(args.model, args.quantize, dataclass_from_args(DecoderConfig, args))
    if args.file is None:
        audio, name = synthetic_audio(), "synthetic signal"
    else:
        audio, name = load_audio(args.file), str(args.file)
    results = [bench_engine(rec, audio, args.chunk_ms, args.repeat, n, name, adapt) for n in threads]
    if args.json:
        sys.stdout.write(json.dumps({"runs": [r.to_dict() for r in results]}, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(format_engine(r) for r in results))
    return 0


# ---------------------------------------------------------------------------------------------
# The beam search alone, batched across streams


def bench_decoder(rec: stream.Recognizer, signals: list[np.ndarray], streams: int, repeat: int = 3) -> dict[str, Any]:
    """CPU seconds of the beam search per audio second per stream, ``streams`` streams decoded
    together a frame at a time (as a server worker does), on the model's log-probabilities of
    ``signals`` (16 kHz; cycled to fill the streams). The first pass warms the LM context table
    and is not counted; the median of ``repeat`` passes is reported."""
    dec = rec.beam
    if dec is None:
        raise ValueError("bench decoder times the beam search; drop --method greedy")
    if streams < 1 or repeat < 1:
        raise ValueError(f"need streams >= 1 and repeat >= 1, got {streams} and {repeat}")
    outputs = []
    for audio in signals[:streams]:
        state = rec.initial_state()
        _, frames = stream._front_end(rec, [state], [audio], True)
        outputs.append(stream._run_model(rec, [state], frames)[0][0].astype(np.float64))
    _, lengths, padded = by_length([outputs[i % len(outputs)] for i in range(streams)], outputs[0].shape[1])

    def one_pass() -> float:
        began = time.process_time()
        batch = dec.batch([dec.initial() for _ in range(streams)])
        for t in range(padded.shape[1]):
            m = int(np.count_nonzero(lengths > t))
            dec.step(batch, padded[:m, t], np.full(m, t))
        dec.split(batch)
        return time.process_time() - began

    one_pass()
    seconds = float(np.median([one_pass() for _ in range(repeat)]))
    audio_seconds = float(lengths.sum()) * rec.frame_seconds
    return {"streams": streams, "beam_size": rec.decoder.beam_size, "audio_seconds_per_stream":
            round(audio_seconds / streams, 2), "cpu_seconds": round(seconds, 3),
            "cpu_s_per_audio_s_per_stream": round(seconds / audio_seconds, 5),
            "ms_per_frame": round(1000 * seconds / padded.shape[1], 2)}


def _register_decoder(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser("decoder", help="the beam search alone: CPU per audio second, N streams batched",
                         description="Time the batched beam search (with the LMs) on the model's output for "
                                     "speech files, 1 to N streams decoded together as a server worker does.")
    p.add_argument("--manifest", type=Path, help="JSON-lines manifest of speech (default: the assets/ samples)")
    p.add_argument("--streams", default="1,10,100", metavar="N,...", help="streams decoded together (default: 1,10,100)")
    p.add_argument("--model", metavar="PATH", help="checkpoint (default: the bundled model)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes; the median is reported (default: 3)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    add_dataclass_options(p, DecoderConfig)  # --beam-size, --lm-weight, ...
    p.set_defaults(func=_decoder_command)


def _decoder_command(args: argparse.Namespace) -> int:
    from streamasr.manifest import read_manifest

    counts = [int(n) for n in args.streams.split(",") if n.strip().isdigit()]
    if not counts or min(counts) < 1:
        raise ValueError(f"--streams takes stream counts >= 1, comma-separated; got {args.streams!r}")
    torch.set_num_threads(1)
    rec = stream.Recognizer.load(args.model, decoder=dataclass_from_args(DecoderConfig, args))
    paths = ([u.audio for u in read_manifest(args.manifest)] if args.manifest else
             sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "assets").glob("*.[fw][la][av]*")))
    signals = [load_audio(p) for p in paths[:max(counts)]]
    rows = [bench_decoder(rec, signals, n, args.repeat) for n in counts]
    if args.json:
        sys.stdout.write(json.dumps({"model": rec.name, "runs": rows}, indent=2) + "\n")
    else:
        sys.stdout.write(f"{'streams':>8} {'beam':>5} {'CPU-s per audio s per stream':>29} {'ms per frame':>13}\n")
        for r in rows:
            sys.stdout.write(f"{r['streams']:>8} {r['beam_size']:>5} {r['cpu_s_per_audio_s_per_stream']:>29.5f} "
                             f"{r['ms_per_frame']:>13.2f}\n")
    return 0


# ---------------------------------------------------------------------------------------------
# Server load test (the load generator is streamasr.bench.loadtest)

DEFAULT_LEVELS = "1,10,50,100,200,300,400,500,600,800,1000"


def _register_server(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from streamasr.bench.loadtest import LoadConfig

    p = kinds.add_parser("server", help="load test: N concurrent real-time websocket streams, stepped up",
                         description="Start a real server (or target --url) and stream real speech at real-time "
                                     "pace from N concurrent websocket clients, stepping N up until a stream "
                                     "falls behind. Reports latency, CPU, memory and text checks per N.")
    p.add_argument("--url", help="target a running server instead of starting one (no CPU/RSS unless --server-pid)")
    p.add_argument("--server-pid", type=int, help="process of the --url server, for its CPU and memory")
    p.add_argument("--model", metavar="PATH", help="checkpoint for the server and the references (default: bundled)")
    p.add_argument("--quantize", action="store_true", help="int8 model, in the server and the references")
    p.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for 'streamasr serve', repeatable (e.g. --serve-arg=--workers=2)")
    p.add_argument("--levels", default=DEFAULT_LEVELS, help=f"concurrent streams per step (default: {DEFAULT_LEVELS})")
    p.add_argument("--keep-going", action="store_true", help="run every level even after one fell behind")
    p.add_argument("--manifest", type=Path, help="JSON-lines manifest of speech files (default: assets/ samples)")
    p.add_argument("--repeat", type=int, default=1, help="sweeps, each on a fresh server; medians reported")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--plot", type=Path, help="write the PNG plot here")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                   help="no test: merge the runs of earlier reports into --out / --plot")
    add_dataclass_options(p, LoadConfig)
    add_dataclass_options(p, DecoderConfig)  # for the server and the references alike
    add_dataclass_options(p, AdaptConfig, prefix="adapt_")  # --adapt-lr, ...: likewise
    p.set_defaults(func=_server_command)


def _server_command(args: argparse.Namespace) -> int:
    import importlib.util

    from streamasr.bench import loadrun
    from streamasr.errors import StreamAsrError
    from streamasr.bench.loadtest import LoadConfig

    for module, needed in (("psutil", not args.merge), ("matplotlib", args.plot)):
        if needed and importlib.util.find_spec(module) is None:
            raise StreamAsrError(f"streamasr bench server needs {module}; install it with: "
                                 "pip install 'streamasr[bench]'")

    if args.merge:
        reports = [json.loads(path.read_text()) for path in args.merge]
        report = {**reports[0], "runs": [run for r in reports for run in r["runs"]]}
    else:
        cfg = dataclass_from_args(LoadConfig, args)
        levels = [int(n) for n in args.levels.split(",")]
        if not levels or min(levels) < 1 or args.repeat < 1:
            raise ValueError(f"need --levels of positive integers and --repeat >= 1, "
                             f"got {args.levels!r}, {args.repeat}")
        report = bench_server(args, cfg, levels)
    report["summary"] = loadrun.summarise_runs(report["runs"])
    sys.stdout.write(loadrun.format_server(report["summary"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        flags = [a for a in report["server"]["args"] if a.startswith("--workers") or a == "--quantize"]
        title = (f"streamasr serve {' '.join(flags)} (model {report['model']}, {report['decoder']['method']}) on "
                 f"{report['machine']['vcpus']} vCPU {report['machine']['cpu']}; "
                 f"medians of {len(report['runs'])} run(s)")
        if report["config"]["duration"]:
            loadrun.plot_memory(report["runs"][0][-1], args.plot, title)
        else:
            loadrun.plot_server(report["summary"], args.plot, title)
    return 0


def bench_server(args: argparse.Namespace, cfg: Any, levels: list[int]) -> dict[str, Any]:
    """References for the programs, then ``--repeat`` sweeps (each on a fresh server unless ``--url``)."""
    import asyncio
    import tempfile

    from streamasr.bench import loadrun, loadtest
    from streamasr.manifest import read_manifest

    torch.set_num_threads(1)  # the load generator shares the machine with the server
    decoder = dataclass_from_args(DecoderConfig, args)
    adapt = dataclass_from_args(AdaptConfig, args, prefix="adapt_")
    rec = stream.Recognizer.load(args.model, args.quantize, decoder)
    if args.manifest:
        paths = [u.audio for u in read_manifest(args.manifest)]
    else:
        paths = sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "assets").glob("*.[fw][la][av]*"))
    chunk = round(cfg.chunk_ms * SAMPLE_RATE / 1000)
    signals = loadtest.join_files(paths, cfg.seconds, cfg.programs, cfg.seed, load_audio, cfg.gap)
    programs = [loadtest.make_program(rec, audio, chunk, name, adapt) for name, audio in signals]
    serve_args = ["--max-connections", "100000", "--idle-timeout", "120", *args.serve_arg]
    serve_args += dataclass_argv(decoder)
    if adapt.enabled:
        serve_args += dataclass_argv(adapt, prefix="adapt_")
    if args.model:
        serve_args += ["--model", str(args.model)]
    if args.quantize:
        serve_args.append("--quantize")
    report: dict[str, Any] = {
        "kind": "server", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": loadrun.machine(),
        "command": "streamasr " + " ".join(sys.argv[1:]), "model": rec.name, "config": asdict(cfg),
        "decoder": decoder.to_dict(), "adapt": adapt.to_dict(),
        "server": {"url": args.url, "args": serve_args if not args.url else []},
        "programs": [{"name": p.name, "seconds": round(p.seconds, 2), "finals": len(p.finals),
                      "words": sum(len(w) for w in p.words)} for p in programs],
        "runs": []}

    def save(levels_done: list[dict[str, Any]]) -> None:  # keep what was measured if the run is cut short
        if args.out:
            args.out.write_text(json.dumps({**report, "runs": [*report["runs"], levels_done]}, indent=1) + "\n")

    for _ in range(args.repeat):
        with contextlib.ExitStack() as stack:
            if args.url:
                url, pid = args.url, args.server_pid
            else:
                log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "serve.log"
                pid, url = stack.enter_context(loadrun.serve_process(serve_args, log))
            report["runs"].append(asyncio.run(loadrun.sweep(url, programs, levels, cfg, pid,
                                                             not args.keep_going, save)))
    return report


KINDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _register_engine, _register_decoder, _register_server, _register_data)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``streamasr bench KIND`` to the CLI, one sub-subcommand per entry of ``KINDS``."""
    # Import first: a missing dependency (websockets) must fail before "bench" is half-registered,
    # so that the CLI can put an "unavailable" placeholder in its place.
    import streamasr.bench.loadtest  # noqa: F401

    p = subparsers.add_parser("bench", help="benchmarks (engine real-time factor, server load test, training data pipeline)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for add in KINDS:
        add(kinds)
