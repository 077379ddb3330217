"""Offline files through the streaming engine, and the ``streamasr transcribe`` command.

A file is decoded to 16 kHz mono, fed to ``stream.step`` in chunks of ``chunk_ms`` exactly as a
live stream would be, and the finals are collected into a ``Transcript``. Because the engine
carries all of its state across chunks, the result does not depend on the chunk size.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamasr import formats

from streamasr.engine.run import pieces, run
from streamasr.engine import stream
from streamasr.engine.adapt import AdaptConfig, Speaker
from streamasr.engine.audio import SAMPLE_RATE, load_audio, pcm_to_float
from streamasr.engine.beam import DecoderConfig
from streamasr.options import add_dataclass_options, dataclass_from_args
from streamasr.engine.endpoint import EndpointConfig
from streamasr.engine.hotwords import Grammar, Hotwords
from streamasr.engine.hotwords import add_options as add_list_options
from streamasr.engine.hotwords import from_options as lists_from_options
from streamasr.errors import AudioError, StreamAsrError
from streamasr.results import Result, Segment, Transcript

# Called with (seconds of audio processed so far, seconds in total) after every chunk.
ProgressFn = Callable[[float, float], None]


def transcribe_audio(
    rec: stream.Recognizer,
    audio: np.ndarray,
    chunk_ms: float = 100.0,
    endpoint_cfg: EndpointConfig | None = None,
    sample_rate: int = SAMPLE_RATE,
    file: str = "",
    progress: ProgressFn | None = None,
    speaker: Speaker | None = None,
    hotwords: Hotwords | None = None,
    grammar: Grammar | None = None,
) -> Transcript:
    """Recognise a whole signal by streaming it through the engine chunk by chunk.

    Args:
        rec: the loaded recognizer (shared; this function owns only its stream state).
        audio: float32 (or int16) (samples,) mono PCM at ``sample_rate``.
        chunk_ms: milliseconds of audio per ``stream.step`` call; the result does not depend on it.
        endpoint_cfg: segmentation rules; ``EndpointConfig()`` when None.
        sample_rate: Hz of ``audio``; the engine resamples anything other than 16 kHz.
        file: the name recorded in the transcript.
        progress: called after every chunk with (seconds done, seconds in total).
        speaker: speaker adaptation (``streamasr.engine.adapt``): the stream starts from what the
            speaker's earlier streams taught, learns at each segment's end, and leaves what it
            learnt in ``speaker.adapt`` (the result does not depend on ``chunk_ms`` either, for
            chunks shorter than ``AdaptConfig.delay``).
        hotwords: words and phrases the beam search boosts (``Hotwords.compile``).
        grammar: a phrase list the text must be made of (``Grammar.compile``).

    Returns:
        The transcript: one segment per non-empty final.

    Raises:
        AudioError: the audio is empty, not 1-D, of an unsupported dtype or holds NaN/inf.
        ValueError: ``chunk_ms`` is not positive.
    """
    if not isinstance(chunk_ms, (int, float)) or not chunk_ms > 0:
        raise ValueError(f"chunk_ms must be a positive number of milliseconds, got {chunk_ms!r}")
    if not isinstance(audio, np.ndarray):
        raise AudioError(f"audio must be a numpy array of samples, got {type(audio).__name__}")
    audio = pcm_to_float(audio)  # validates dtype, shape and finiteness once, up front
    if audio.size == 0:
        raise AudioError("audio has 0 samples; expected at least some audio")
    state = rec.initial_state(sample_rate, endpoint_cfg, speaker.adapt if speaker is not None else None,
                              hotwords=hotwords, grammar=grammar)
    chunk = max(1, round(chunk_ms * sample_rate / 1000))
    total = len(audio) / sample_rate

    def report(state: stream.StreamState, _results: list[Result]) -> None:
        if progress is not None:
            progress(state.samples / sample_rate, total)

    state, results = run(rec, state, pieces(audio, chunk), on_chunk=report)
    finals = [r for r in results if r.is_final]
    if speaker is not None:  # its last segment teaches the next file
        stream.keep_speaker(rec, state, speaker)
    # An endpoint can close a segment that holds only spaces; it has no words to show.
    segments = tuple(Segment.from_result(r) for r in finals if r.text)
    return Transcript(file, " ".join(s.text for s in segments), round(total, 3), segments)


def transcribe_file(
    rec: stream.Recognizer,
    path: str | Path,
    chunk_ms: float = 100.0,
    endpoint_cfg: EndpointConfig | None = None,
    progress: ProgressFn | None = None,
    speaker: Speaker | None = None,
    hotwords: Hotwords | None = None,
    grammar: Grammar | None = None,
) -> Transcript:
    """Decode an audio file (any format soundfile or ffmpeg reads) and transcribe it.

    With ``speaker`` (``streamasr.engine.adapt``), the file is recognised with what that speaker's
    earlier files taught, and teaches it too (``transcribe_audio``).

    Raises:
        AudioError: the file is missing, empty, truncated, corrupt or unreadable, or holds
            NaN/inf samples; the message starts with the path.
    """
    try:
        audio = load_audio(path)
        return transcribe_audio(rec, audio, chunk_ms, endpoint_cfg, file=str(path), progress=progress,
                                speaker=speaker, hotwords=hotwords, grammar=grammar)
    except AudioError as e:
        if str(e).startswith((str(path), str(Path(path)))):  # load_audio names Path(path)
            raise
        raise AudioError(f"{path}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``streamasr transcribe`` to the CLI."""
    p = subparsers.add_parser(
        "transcribe", help="transcribe audio files (wav, flac, ogg, mp3, m4a, ...)",
        description="Transcribe audio files with the streaming engine. Results go to stdout (or one "
                    "file per input with -o), progress and errors to stderr; the exit code is 1 when "
                    "any file failed.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files, any sample rate, mono or stereo")
    p.add_argument("--model", metavar="PATH", help="checkpoint (default: the bundled model)")
    p.add_argument("--quantize", action="store_true", help="int8 dynamic quantisation of the model (faster; "
                                                           "see docs/benchmarks.md for the accuracy change)")
    p.add_argument("--format", choices=list(formats.WRITERS), default="txt",
                   help="txt: the text, one line per file; json: a list of objects (with -o: one object "
                        "per file); jsonl: one object per line; srt/vtt: subtitles (default: txt)")
    p.add_argument("--chunk-ms", type=float, default=100.0, metavar="MS",
                   help="milliseconds of audio per engine step; does not change the result (default: 100)")
    p.add_argument("-o", "--output-dir", type=Path, metavar="DIR",
                   help="write one file per input into DIR, named after it, instead of stdout")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: only when stderr is a terminal)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads (default: 1; one stream gains little from more, and extra threads "
                        "slow down badly when another process holds a core)")
    add_dataclass_options(p, EndpointConfig)  # --silence-after-speech, --silence-no-speech, --max-segment
    add_dataclass_options(p, DecoderConfig)  # --method, --beam-size, --lm-weight, --insertion-bonus, ...
    # --adapt-lr, --adapt-steps, --adapt-max-seconds, ...: the files are one speaker, in the order given
    add_dataclass_options(p, AdaptConfig, prefix="adapt_")
    p.add_argument("--adapt-passes", type=int, default=1, metavar="N",
                   help="with --adapt-lr: hear the files N times and write the last pass, which the earlier "
                        "ones have taught the voice (2: the real voice's 551 prompts 31.0 -> 27.4 %% WER; "
                        "N times the time; default: 1)")
    add_list_options(p)  # --hotwords, --grammar
    p.add_argument("--speaker", type=Path, default=None, metavar="FILE",
                   help="with --adapt-lr: a speaker profile; start from what FILE holds, if it exists, and "
                        "keep in it what this run taught, so the voice's next files start from there")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    endpoint_cfg = dataclass_from_args(EndpointConfig, args)
    decoder = dataclass_from_args(DecoderConfig, args)
    adapt = dataclass_from_args(AdaptConfig, args, prefix="adapt_")
    adapt.check_float(args.quantize)
    adapt.check_passes(args.adapt_passes)
    adapt.check_profile(args.speaker)
    if not args.chunk_ms > 0:
        raise ValueError(f"--chunk-ms must be a positive number of milliseconds, got {args.chunk_ms}")
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.format in ("srt", "vtt") and len(args.files) > 1 and args.output_dir is None:
        raise ValueError(f"--format {args.format} writes one subtitle file per input; with "
                         f"{len(args.files)} input files give -o DIR")
    for name in ("hotwords", "grammar"):
        if getattr(args, name) is not None and decoder.method != "beam":
            raise ValueError(f"--{name} works in the beam search; drop --method greedy")
    rec = stream.Recognizer.load(args.model, args.quantize, decoder)
    args.hotwords, args.grammar = lists_from_options(args, rec.tokenizer)
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        speaker = rec.speaker(adapt, args.speaker) if adapt.enabled else None
        for n in range(1, args.adapt_passes):  # only to learn the voice: the last pass is written
            _transcribe_files(rec, args, endpoint_cfg, speaker, f"learning the voice, pass {n} of {args.adapt_passes}")
        done = _transcribe_files(rec, args, endpoint_cfg, speaker)
        if speaker is not None and args.speaker is not None:
            kept = rec.save_speaker(speaker, args.speaker)
            print(f"streamasr transcribe: speaker profile {args.speaker}: {kept.segments} segments learnt "
                  f"in all", file=sys.stderr)
    finally:
        torch.set_num_threads(old_threads)  # main() may run in-process (tests, scripts)
    if args.format == "json" and args.output_dir is None:
        sys.stdout.write(formats.to_json_list(done))
    failed = len(args.files) - len(done)
    if failed:
        print(f"streamasr transcribe: {failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


def _transcribe_files(rec: stream.Recognizer, args: argparse.Namespace, endpoint_cfg: EndpointConfig,
                      speaker: Speaker | None, learning: str = "") -> list[Transcript]:
    """Transcribe and write each file; report failures on stderr and go on. Returns the successes.

    With ``learning`` (the progress bar's label), nothing is written and failures are left for
    the pass that writes to report: the pass only teaches ``speaker``.
    """
    show = sys.stderr.isatty() if args.progress is None else args.progress
    done: list[Transcript] = []
    names: set[str] = set()
    with _Progress(len(args.files), show, learning or "files") as bars:
        for path in args.files:
            try:
                transcript = transcribe_file(rec, path, args.chunk_ms, endpoint_cfg, bars.seconds, speaker,
                                             args.hotwords, args.grammar)
                if not learning:
                    _write(transcript, args.format, args.output_dir, names)
                done.append(transcript)
            except BrokenPipeError:
                raise  # stdout closed (e.g. piped into head): not this file's fault
            except (StreamAsrError, OSError) as e:  # OSError: unreadable input or unwritable output
                if not learning:
                    bars.message(f"streamasr transcribe: error: {e}")
            bars.next_file()
    return done


def _write(transcript: Transcript, fmt: formats.Format, out_dir: Path | None, names: set[str]) -> None:
    """Print a result, or write it to ``out_dir`` under a name not yet used in this run."""
    if out_dir is None:
        if fmt != "json":  # json is one document for all files, printed at the end
            sys.stdout.write(formats.WRITERS[fmt](transcript))
            sys.stdout.flush()
        return
    src, ext = Path(transcript.file), formats.EXTENSIONS[fmt]
    # a.wav and a.mp3, or dir1/a.wav and dir2/a.wav, must not overwrite each other.
    candidates = [src.stem + ext, src.name + ext, *(f"{src.name}.{n}{ext}" for n in range(2, 10_000))]
    name = next(c for c in candidates if c not in names)
    names.add(name)
    (out_dir / name).write_text(formats.WRITERS[fmt](transcript), encoding="utf-8")


class _Progress:
    """tqdm bars on stderr: files done, and audio seconds of the current file."""

    def __init__(self, files: int, enabled: bool, label: str = "files") -> None:
        self.enabled = enabled
        self.out = sys.stderr
        self.files: Any = None
        self.audio: Any = None
        if enabled:
            from tqdm import tqdm  # imported only when bars are shown

            self._tqdm = tqdm
            self.files = tqdm(total=files, unit="file", desc=label, file=self.out, position=0)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.audio is not None:
            self.audio.close()
        if self.files is not None:
            self.files.close()

    def seconds(self, done: float, total: float) -> None:
        if not self.enabled:
            return
        if self.audio is None:
            self.audio = self._tqdm(total=round(total, 2), unit="s", desc="audio", file=self.out,
                                    position=1, leave=False)
        self.audio.update(round(done - self.audio.n, 3))  # update() throttles redraws; n= would not

    def next_file(self) -> None:
        if self.audio is not None:
            self.audio.close()
            self.audio = None
        if self.files is not None:
            self.files.update(1)

    def message(self, text: str) -> None:
        if self.enabled:
            self._tqdm.write(text, file=self.out)
        else:
            print(text, file=self.out)
