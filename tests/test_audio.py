"""Audio input: every asset format, PCM conversion, bad files, and the streaming resampler."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from streamasr.engine.audio import SAMPLE_RATE, Resampler, check_finite, load_audio, pcm_to_float, resample
from streamasr.errors import AudioError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")


@pytest.mark.parametrize("name, seconds", [
    ("sample_flite_rms.wav", 3.765),
    ("sample_allison_real.flac", 3.159),
    ("sample_allison_weasels.mp3", 2.951),
    ("sample_espeak_stereo_22k.flac", 3.660),  # 22.05 kHz stereo: mixed down and resampled
])
def test_load_assets(name: str, seconds: float) -> None:
    audio = load_audio(ASSETS / name)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / SAMPLE_RATE == pytest.approx(seconds, abs=0.01)
    assert 0.01 < np.abs(audio).max() <= 1.0


def test_stereo_22k_is_mixed_then_resampled() -> None:
    data, rate = sf.read(ASSETS / "sample_espeak_stereo_22k.flac", dtype="float32")
    assert rate == 22050 and data.shape[1] == 2
    expected = resample(data.mean(axis=1), rate, SAMPLE_RATE)
    np.testing.assert_allclose(load_audio(ASSETS / "sample_espeak_stereo_22k.flac"), expected, atol=1e-6)


@needs_ffmpeg
def test_mp3_through_ffmpeg_matches_soundfile(tmp_path: Path) -> None:
    """libsndfile decodes mp3 itself; the ffmpeg fallback must give the same signal."""
    from streamasr.engine.audio import _load_with_ffmpeg

    via_ffmpeg = _load_with_ffmpeg(ASSETS / "sample_allison_weasels.mp3", SAMPLE_RATE)
    via_soundfile = load_audio(ASSETS / "sample_allison_weasels.mp3")
    # Decoders differ in their priming delay by a few samples; the bulk of the signal agrees.
    assert abs(len(via_ffmpeg) - len(via_soundfile)) < 2000
    assert np.abs(via_ffmpeg).max() == pytest.approx(np.abs(via_soundfile).max(), rel=0.05)


@needs_ffmpeg
@pytest.mark.parametrize("codec, suffix", [("aac", ".m4a"), ("libopus", ".opus")])
def test_formats_only_ffmpeg_reads(tmp_path: Path, codec: str, suffix: str) -> None:
    out = tmp_path / ("speech" + suffix)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(ASSETS / "sample_allison_real.flac"),
                    "-c:a", codec, str(out)], check=True)
    audio = load_audio(out)
    assert len(audio) / SAMPLE_RATE == pytest.approx(3.159, abs=0.1)


def test_int16_and_float32_conversion() -> None:
    ints = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    np.testing.assert_array_equal(pcm_to_float(ints), [0.0, 0.5, -1.0, 32767 / 32768])
    assert pcm_to_float(ints.tobytes(), "pcm_s16le").tolist() == pcm_to_float(ints).tolist()
    floats = np.array([0.25, -0.5], dtype=np.float32)
    assert pcm_to_float(floats.astype("<f4").tobytes(), "pcm_f32le").tolist() == [0.25, -0.5]
    assert pcm_to_float(floats.astype(np.float64)).dtype == np.float32


@pytest.mark.parametrize("pcm, encoding, message", [
    (b"\x00\x01\x02", "pcm_s16le", "3 bytes is not a whole number of 2-byte pcm_s16le samples"),
    (b"\x00" * 6, "pcm_f32le", "6 bytes is not a whole number of 4-byte"),
    (b"\x00" * 4, "pcm_u8", "unknown encoding 'pcm_u8'"),
    (np.zeros(4, np.int32), "pcm_f32le", "dtype int32 is not supported; expected int16 or float32"),
    (np.zeros((2, 4), np.float32), "pcm_f32le", "must be 1-D"),
    (np.array([0.0, np.nan], np.float32), "pcm_f32le", "1 of 2 samples are NaN or inf"),
    (np.array([np.inf, 0.0]), "pcm_f32le", "NaN or inf"),
])
def test_bad_pcm(pcm: np.ndarray | bytes, encoding: str, message: str) -> None:
    with pytest.raises(AudioError, match=message.replace("(", r"\(")):
        pcm_to_float(pcm, encoding)


def test_check_finite_names_the_source() -> None:
    with pytest.raises(AudioError, match="clip.wav: 2 of 3 samples"):
        check_finite(np.array([np.nan, 1.0, -np.inf], np.float32), "clip.wav")


def _wav_bytes() -> bytes:
    return (ASSETS / "sample_flite_rms.wav").read_bytes()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.wav", "no such file"),
    (lambda d: _write(d, "empty.wav", b""), "file is empty"),
    (lambda d: _write(d, "garbage.wav", np.random.default_rng(0).bytes(4000)), "not a readable audio file"),
    (lambda d: _write(d, "notes.txt", b"hello world\n" * 50), "not a readable audio file"),
    (lambda d: _write(d, "cut.wav", _wav_bytes()[:30000]), "truncated"),
    (lambda d: _write(d, "cut.flac", (ASSETS / "sample_allison_real.flac").read_bytes()[:30000]),
     "truncated"),
    (lambda d: d, "no such file"),  # a directory
])
def test_bad_files(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_zero_length_and_non_finite_files(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="zero.wav: decoded to 0 samples"):
        load_audio(tmp_path / "zero.wav")
    for bad in (np.nan, np.inf, -np.inf):
        audio = np.zeros(800, np.float32)
        audio[10] = bad
        sf.write(tmp_path / "bad.wav", audio, 16000, subtype="FLOAT")
        with pytest.raises(AudioError, match="bad.wav: 1 of 800 samples are NaN or inf"):
            load_audio(tmp_path / "bad.wav")


def test_streamed_wav_header_is_not_truncation(tmp_path: Path) -> None:
    """A WAV written to a pipe has 0xFFFFFFFF as its data size; that is valid, not truncated."""
    data = bytearray(_wav_bytes())
    pos = data.index(b"data") + 4
    data[pos:pos + 4] = b"\xff\xff\xff\xff"
    assert len(load_audio(_write(tmp_path, "piped.wav", bytes(data)))) == 60240


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_streaming_resampler_equals_torchaudio(rate: int) -> None:
    rng = np.random.default_rng(rate)
    audio = (0.3 * rng.standard_normal(rate + 1234)).astype(np.float32)
    expected = AF.resample(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy()
    resampler = Resampler(rate)
    for trial in range(3):
        state, pieces, pos = resampler.initial_state(), [], 0
        while pos < len(audio):
            size = int(rng.integers(1, 3000 if trial else 50))  # tiny chunks too: below one block
            state, out = resampler.process(state, audio[pos:pos + size])
            pieces.append(out)
            pos += size
        state, rest = resampler.flush(state)
        got = np.concatenate([*pieces, rest])
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_resampler_rejects_bad_rates() -> None:
    with pytest.raises(AudioError, match="sample rates must be positive, got 0 -> 16000"):
        Resampler(0)


def test_odd_sample_rates_cost_bounded_memory() -> None:
    """A rate coprime with 16 kHz would need a kernel of 16,000 x 8,030 taps (514 MB) from 8,009 Hz:
    it is read as the nearest rate with a small kernel instead (issue 33, finding 5)."""
    from streamasr.engine.audio import MAX_KERNEL

    for rate in (8009, 11027, 44101, 1001, 383999, 12345):
        resampler = Resampler(rate)
        assert resampler.kernel.numel() <= MAX_KERNEL
        assert abs(resampler.read_rate - rate) / rate < 0.002 or abs(resampler.read_rate - rate) <= 640
        audio = np.zeros(rate, np.float32)  # one second in: one second out, within the rate's rounding
        state, out = resampler.process(resampler.initial_state(), audio)
        _, rest = resampler.flush(state)
        assert abs(len(out) + len(rest) - SAMPLE_RATE) <= SAMPLE_RATE * abs(resampler.read_rate - rate) / rate + 2
    for rate in (8000, 11025, 22050, 44100, 48000):  # the usual rates stay exact (the test above)
        assert Resampler(rate).read_rate == rate
