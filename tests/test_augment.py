from __future__ import annotations

import numpy as np
import pytest
import torch

from streamasr import augment
from streamasr.audio import load_audio
from streamasr.augment import AugmentConfig


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:  # type: ignore[no-untyped-def]
    return load_audio(speech_wav)


def test_waveform_augmentation_is_seeded_and_finite(speech: np.ndarray) -> None:
    cfg = AugmentConfig()
    a = augment.augment_waveform(speech, cfg, np.random.default_rng([1, 2]), 1.0)
    b = augment.augment_waveform(speech, cfg, np.random.default_rng([1, 2]), 1.0)
    c = augment.augment_waveform(speech, cfg, np.random.default_rng([1, 3]), 1.0)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert np.abs(a).max() < 1.0


def test_each_waveform_transform_keeps_shape(speech: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    assert augment.reverb(speech, augment.room_response(rng, 0.5)).shape == speech.shape
    assert augment.band_limit(speech, rng).shape == speech.shape
    assert augment.telephone(speech).shape == speech.shape
    noisy = augment.add_noise(speech, augment.coloured_noise(rng, len(speech), 1.0), 10.0)
    snr = 10 * np.log10(np.mean(speech**2) / np.mean((noisy - speech) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)


@pytest.mark.parametrize("n", [1, 1000, 80123])  # 80123: a length with no small prime factors
def test_coloured_noise_length_level_and_slope(n: int) -> None:
    rng = np.random.default_rng(0)
    white, brown = augment.coloured_noise(rng, n, 0.0), augment.coloured_noise(rng, n, 2.0)
    assert len(white) == len(brown) == n and white.dtype == np.float32
    if n > 1:
        assert np.sqrt(np.mean(white**2)) == pytest.approx(1.0, rel=1e-3)
        low = [np.sum(np.abs(np.fft.rfft(x))[: n // 32] ** 2) / np.sum(np.abs(np.fft.rfft(x)) ** 2) for x in (white, brown)]
        assert low[0] < 0.1 < 0.5 < low[1]  # white: ~3 % of its power in the lowest 1/16 band; brown: most


def test_trim_leading_cuts_only_silence(speech: np.ndarray) -> None:
    padded = np.concatenate([np.zeros(3200, np.float32), speech])
    onset = int(np.flatnonzero(np.abs(padded) > np.abs(padded).max() * 10 ** (-50 / 20))[0])
    assert onset >= 3200
    np.testing.assert_array_equal(augment.trim_leading(padded, 1.0), padded)
    np.testing.assert_array_equal(augment.trim_leading(padded, 0.0), padded[onset:])
    half = augment.trim_leading(padded, 0.5)
    assert len(half) == len(padded) - (onset - onset // 2)
    np.testing.assert_array_equal(half[-len(speech):], speech)  # the speech itself is untouched
    silence = np.zeros(100, np.float32)
    assert augment.trim_leading(silence, 0.0) is silence


def test_speed_changes_duration(speech: np.ndarray) -> None:
    fast = augment.speed(speech, 1.14)
    assert len(fast) == pytest.approx(len(speech) / 1.14, rel=0.03)


def test_feature_augmentation_keeps_shape_and_is_seeded() -> None:
    feats = torch.randn(300, 80)
    cfg = AugmentConfig()
    a = augment.augment_features(feats, cfg, np.random.default_rng(5), 1.0)
    b = augment.augment_features(feats, cfg, np.random.default_rng(5), 1.0)
    assert a.shape == feats.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, feats)


def test_vtlp_identity_and_shift() -> None:
    feats = torch.zeros(1, 80)
    feats[0, 40] = 1.0
    assert torch.equal(augment.vtlp(feats, 1.0), feats)
    assert int(augment.vtlp(feats, 1.1).argmax()) > 40


def test_strength_ramps_up() -> None:
    cfg = AugmentConfig(warmup_steps=100)
    assert augment.strength_at(cfg, 0) == pytest.approx(0.3)
    assert augment.strength_at(cfg, 100) == 1.0


def test_config_error_names_field() -> None:
    with pytest.raises(ValueError, match=r"AugmentConfig.p_noise .* got 1.5"):
        AugmentConfig(p_noise=1.5)


def test_channel_eq_is_smooth_bounded_and_time_invariant() -> None:
    feats = torch.randn(50, 80)
    out = augment.channel_eq(feats, np.random.default_rng(3), 8.0)
    gain = out - feats
    # The same gain on every frame (a channel, not a time effect) ...
    assert torch.allclose(gain, gain[:1].expand_as(gain), atol=1e-5)
    # ... never more than 8 dB of power (ln(10)/10 nepers per dB) ...
    assert float(gain.abs().max()) <= 8.0 * np.log(10) / 10 + 1e-5
    # ... and smooth across neighbouring mel bins.
    assert float(gain[0].diff().abs().max()) < 0.2
    assert not torch.equal(out, feats)
