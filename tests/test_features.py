"""Log-mel front end: streamed frames equal whole-signal frames; config errors are readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamasr.engine.audio import load_audio
from streamasr.engine.features import FeatureConfig, FeatureExtractor


@pytest.fixture(scope="module")
def audio(speech_wav: Path) -> np.ndarray:
    return load_audio(speech_wav)


@pytest.mark.parametrize("chunk_ms", [10, 37, 100, 1000])
def test_streamed_frames_equal_whole_signal(audio: np.ndarray, chunk_ms: int) -> None:
    fe = FeatureExtractor(FeatureConfig())
    whole = fe(torch.from_numpy(audio))
    chunk = 16 * chunk_ms
    tail, frames = np.zeros(0, np.float32), []
    for start in range(0, len(audio), chunk):
        tail, f = fe.stream(tail, audio[start:start + chunk])
        frames.append(f)
    streamed = torch.cat(frames)
    assert streamed.shape == whole.shape == (FeatureConfig().num_frames(len(audio)), 80)
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=0)
    assert len(tail) < FeatureConfig().win_length


def test_whole_signal_shapes_and_short_input() -> None:
    fe = FeatureExtractor(FeatureConfig())
    assert fe(torch.zeros(399)).shape == (0, 80)
    assert fe(torch.zeros(400)).shape == (1, 80)
    assert fe(torch.zeros(3, 1600)).shape == (3, 8, 80)
    assert FeatureConfig().num_frames(560) == 2


def test_stream_does_not_keep_the_callers_buffer() -> None:
    """The leftover must be a copy: callers reuse buffers, and wire bytes are read-only."""
    fe = FeatureExtractor(FeatureConfig())
    buf = np.ones(100, np.float32)
    tail, frames = fe.stream(np.zeros(0, np.float32), buf)
    buf[:] = 0
    assert len(frames) == 0 and tail.tolist() == [1.0] * 100
    readonly = np.frombuffer(np.ones(800, np.float32).tobytes(), np.float32)
    _, frames = fe.stream(np.zeros(0, np.float32), readonly)  # filterwarnings=error: no torch warning
    assert frames.shape == (3, 80)


@pytest.mark.parametrize("kwargs, message", [
    ({"sample_rate": 0}, "FeatureConfig.sample_rate must be > 0, got 0"),
    ({"n_mels": 0}, r"FeatureConfig.n_mels must be in \[1, 256\], got 0"),
    ({"hop_length": 500}, r"FeatureConfig.hop_length must be in \(0, win_length=400\], got 500"),
    ({"f_max": 9000.0}, "FeatureConfig needs 0 <= f_min < f_max <= 8000.0, got f_min=20.0, f_max=9000.0"),
])
def test_config_error_text(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trips_through_dict() -> None:
    cfg = FeatureConfig(n_mels=40)
    assert FeatureConfig(**cfg.to_dict()) == cfg  # type: ignore[arg-type]


def test_stream_many_equals_each_stream_alone() -> None:
    """One batched call over ragged streams gives each stream's frames and tails as if alone."""
    fe = FeatureExtractor(FeatureConfig())
    rng = np.random.default_rng(1)
    tails = [rng.standard_normal(n).astype(np.float32) for n in (0, 399, 0, 150, 7, 0)]
    pcms = [rng.standard_normal(n).astype(np.float32) for n in (1600, 1, 0, 5000, 393, 10)]
    new_tails, frames, counts = fe.stream_many(tails, pcms)
    assert frames.dtype == np.float32 and frames.shape == (int(counts.sum()), 80)
    assert counts.tolist() == [8, 1, 0, 30, 1, 0]
    offset = 0
    for tail, pcm, new_tail, count in zip(tails, pcms, new_tails, counts):
        alone_tail, alone = fe.stream(tail, pcm)
        whole = fe(torch.from_numpy(np.concatenate([tail, pcm])))
        np.testing.assert_array_equal(new_tail, alone_tail)
        torch.testing.assert_close(torch.from_numpy(frames[offset:offset + count]), alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(alone, whole, atol=1e-4, rtol=0)
        offset += count
    tails, frames, counts = fe.stream_many([], [])
    assert tails == [] and frames.shape == (0, 80) and counts.shape == (0,)


def test_stream_many_tails_are_fresh_arrays() -> None:
    fe = FeatureExtractor(FeatureConfig())
    pcm = np.ones(500, np.float32)
    tails, _, _ = fe.stream_many([np.zeros(0, np.float32)], [pcm])
    pcm[:] = 0
    assert tails[0].tolist() == [1.0] * 340 and tails[0].base is None
