"""Audio input: file decoding, PCM conversion and (streaming) resampling to 16 kHz."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torchaudio.functional.functional import _get_sinc_resample_kernel

from streamasr.errors import AudioError

SAMPLE_RATE = 16000  # Hz, the rate every model in this project runs at
ENCODINGS = ("pcm_s16le", "pcm_f32le")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``.

    soundfile reads wav/flac/ogg; anything else goes through the ffmpeg CLI.

    Returns:
        float32 array of shape (samples,), values in [-1, 1].

    Raises:
        AudioError: the file is missing, empty, corrupt, silent-length or holds NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file (expected a readable audio file)")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); expected audio data")
    try:
        with sf.SoundFile(str(path)) as f:
            rate, announced, fmt, log = f.samplerate, f.frames, f.format, f.extra_info
            data = f.read(dtype="float32", always_2d=True)
        audio = data.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        audio, rate = _load_with_ffmpeg(path, sample_rate), sample_rate
    else:
        _check_complete(path, fmt, announced, len(data), log)
    if audio.size == 0:
        raise AudioError(f"{path}: decoded to 0 samples; expected at least some audio")
    audio = check_finite(np.ascontiguousarray(audio, dtype=np.float32), str(path))
    return resample(audio, rate, sample_rate)


def _check_complete(path: Path, fmt: str, announced: int, decoded: int, log: str) -> None:
    """Raise AudioError for a file cut short, which libsndfile would silently read as shorter."""
    # WAV: libsndfile clamps the data chunk to the file and logs "data : <header> (should be <real>)".
    # A header of 0 or 0xFFFFFFFF is a stream written without seeking back, not a truncation.
    match = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", log, re.MULTILINE)
    if match and int(match[1]) not in (0, 0xFFFFFFFF) and int(match[2]) < int(match[1]):
        raise AudioError(f"{path}: truncated: the header announces {match[1]} bytes of audio data but "
                         f"the file holds {match[2]}; expected a complete file")
    # FLAC headers give the exact sample count (MP3 counts are only estimates, so they are not checked).
    if fmt == "FLAC" and 0 < decoded < announced:
        raise AudioError(f"{path}: truncated: decoded {decoded} of the {announced} samples the header "
                         "announces; expected a complete file")


def _load_with_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: soundfile cannot read this format and ffmpeg is not installed")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
           "-ar", str(sample_rate), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    reason = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        raise AudioError(f"{path}: not a readable audio file ({reason[-1] if reason else 'ffmpeg failed'})")
    if reason:
        # ffmpeg skips undecodable packets and still exits 0; at -v error any message means damage.
        raise AudioError(f"{path}: corrupt or truncated audio data ({reason[-1]}); expected a complete file")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def check_finite(audio: np.ndarray, what: str = "audio") -> np.ndarray:
    """Return ``audio`` unchanged, or raise AudioError if it holds NaN or inf samples."""
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise AudioError(f"{what}: {bad} of {audio.size} samples are NaN or inf; expected finite PCM")
    return audio


def pcm_to_float(pcm: np.ndarray | bytes, encoding: str = "pcm_f32le") -> np.ndarray:
    """Convert int16 or float32 PCM (array or little-endian bytes) to float32 in [-1, 1].

    Raises:
        AudioError: unknown encoding, a byte count that is not a whole number of samples,
            an unsupported dtype, or NaN/inf samples.
    """
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if encoding not in ENCODINGS:
            raise AudioError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
        width = 2 if encoding == "pcm_s16le" else 4
        if len(pcm) % width:
            raise AudioError(f"{len(pcm)} bytes is not a whole number of {width}-byte {encoding} samples")
        pcm = np.frombuffer(pcm, dtype="<i2" if width == 2 else "<f4")
    if pcm.ndim != 1:
        raise AudioError(f"PCM must be 1-D (mono samples), got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    if pcm.dtype in (np.float32, np.float64):
        return check_finite(pcm.astype(np.float32, copy=False), "PCM")
    raise AudioError(f"PCM dtype {pcm.dtype} is not supported; expected int16 or float32")


def resample(audio: np.ndarray, orig_rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Whole-signal resampling with torchaudio (windowed sinc, Hann)."""
    if orig_rate == new_rate:
        return audio
    out = AF.resample(torch.from_numpy(audio), orig_rate, new_rate)
    return out.numpy().astype(np.float32, copy=False)


@dataclass(frozen=True)
class ResamplerState:
    """Input samples not yet fully used and the number of output samples produced so far."""

    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (samples,) at orig rate
    consumed: int = 0  # input samples received in total
    produced: int = 0  # output samples emitted in total


MAX_KERNEL = 1 << 20  # taps (4 MB) a resampler's kernel may hold


def _kernel_taps(orig_rate: int, new_rate: int) -> int:
    """Taps of torchaudio's sinc kernel from ``orig_rate`` to ``new_rate`` (lowpass width 6, rolloff 0.99)."""
    gcd = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // gcd, new_rate // gcd
    width = math.ceil(6 * orig / (min(orig, new) * 0.99))
    return new * (2 * width + orig)


class Resampler:
    """Streaming version of ``torchaudio.functional.resample`` with identical output.

    torchaudio pads ``width`` zeros on the left, convolves with one sinc kernel per output phase
    at stride ``orig``, then trims to ``ceil(new * n / orig)`` samples. Here the same kernel is
    applied to whatever blocks are complete; the rest waits in the state's tail.
    """

    def __init__(self, orig_rate: int, new_rate: int = SAMPLE_RATE) -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise AudioError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
        self.orig_rate, self.new_rate = orig_rate, new_rate
        # The kernel has new x (orig + 2 width) taps for the ratio in lowest terms: ~160 x 470 from
        # 44.1 kHz, but 16,000 x 8,030 (514 MB) from 8,009 Hz. A rate whose exact kernel would pass
        # MAX_KERNEL taps is read as the nearest rate, in steps of 10, 20, 40, ... Hz, whose kernel
        # does not (8,009 Hz as 8,000: 0.1 % slow), so no rate a client names costs more memory.
        rate = orig_rate
        for step in (10, 20, 40, 80, 160, 320, 640):
            if _kernel_taps(rate, new_rate) <= MAX_KERNEL:
                break
            rate = max(step, round(orig_rate / step) * step)
        self.read_rate = rate  # the rate the input is resampled as (orig_rate but for odd rates)
        gcd = math.gcd(rate, new_rate)
        self.orig, self.new = rate // gcd, new_rate // gcd
        kernel, self.width = _get_sinc_resample_kernel(rate, new_rate, gcd, dtype=torch.float32)
        self.kernel = kernel  # (new, 1, 2 * width + orig)

    def initial_state(self) -> ResamplerState:
        return ResamplerState(tail=np.zeros(self.width, np.float32))

    def _blocks(self, buf: np.ndarray) -> np.ndarray:
        if len(buf) < self.kernel.shape[-1]:
            return np.zeros(0, np.float32)
        x = torch.from_numpy(buf)[None, None]
        y = torch.nn.functional.conv1d(x, self.kernel, stride=self.orig)  # (1, new, blocks)
        return y[0].transpose(0, 1).reshape(-1).numpy()

    def process(self, state: ResamplerState, audio: np.ndarray) -> tuple[ResamplerState, np.ndarray]:
        """Resample the next chunk; returns the new state and the output now available."""
        if self.orig == self.new:
            return state, audio
        buf = np.concatenate([state.tail, audio])
        out = self._blocks(buf)
        used = (len(out) // self.new) * self.orig
        state = ResamplerState(buf[used:].copy(), state.consumed + len(audio), state.produced + len(out))
        return state, out

    def flush(self, state: ResamplerState) -> tuple[ResamplerState, np.ndarray]:
        """Emit the last samples (right zero padding as torchaudio does)."""
        if self.orig == self.new:
            return state, np.zeros(0, np.float32)
        buf = np.concatenate([state.tail, np.zeros(self.width + self.orig, np.float32)])
        out = self._blocks(buf)
        total = math.ceil(self.new * state.consumed / self.orig)
        out = out[: max(0, total - state.produced)]
        return ResamplerState(np.zeros(0, np.float32), state.consumed, state.produced + len(out)), out
