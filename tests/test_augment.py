from __future__ import annotations

import numpy as np
import pytest
import torch

from streamasr.training import augment
from streamasr.engine.audio import load_audio
from streamasr.training.augment import AugmentConfig
from streamasr.engine.features import FeatureConfig, FeatureExtractor


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:  # type: ignore[no-untyped-def]
    return load_audio(speech_wav)


FEATURES = FeatureConfig()


def augmented(speech: np.ndarray, seed: list[int], cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    audio, plan = augment.prepare(speech, cfg, np.random.default_rng(seed), 1.0, 80, FEATURES.num_frames)
    return augment.apply_waveform(audio, plan)


def test_waveform_augmentation_is_seeded_and_finite(speech: np.ndarray) -> None:
    a, b, c = augmented(speech, [1, 2]), augmented(speech, [1, 2]), augmented(speech, [1, 3])
    assert a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert np.abs(a).max() < 1.0


def test_each_waveform_transform_keeps_shape(speech: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    assert augment.reverb(speech, augment.room_response(rng, 0.5)).shape == speech.shape
    assert augment.band_limit(speech, 4000.0, 100.0).shape == speech.shape
    assert augment.telephone(speech).shape == speech.shape
    assert augment.telephone(speech[:-1]).shape == speech[:-1].shape  # odd lengths too
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
    samples = 400 + 299 * 160  # 300 frames
    plans = [augment.prepare(np.zeros(samples, np.float32), AugmentConfig(p_trim=0, p_speed=0),
                             np.random.default_rng(5), 1.0, 80, FEATURES.num_frames)[1] for _ in range(2)]
    assert plans[0].time_masks and all(start + width <= 300 for start, width in plans[0].time_masks)
    a, b = (augment.apply_features(feats, plan) for plan in plans)
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
    out = augment.apply_features(feats, augment.Plan(eq=augment.eq_curve(np.random.default_rng(3), 80, 8.0)))
    gain = out - feats
    # The same gain on every frame (a channel, not a time effect) ...
    assert torch.allclose(gain, gain[:1].expand_as(gain), atol=1e-5)
    # ... never more than 8 dB of power (ln(10)/10 nepers per dB) ...
    assert float(gain.abs().max()) <= 8.0 * np.log(10) / 10 + 1e-5
    # ... and smooth across neighbouring mel bins.
    assert float(gain[0].diff().abs().max()) < 0.2
    assert not torch.equal(out, feats)


def _batch(speech: np.ndarray, plans: list[augment.Plan]) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """Three utterances of different lengths (cut from ``speech``), padded as collate_waves does."""
    audios = [speech[: len(speech) - k * 3001] * 0.5 for k in range(len(plans))]  # no clipping anywhere
    waves = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(a) for a in audios], batch_first=True)
    return waves, torch.tensor([len(a) for a in audios]), audios


def test_batch_on_the_device_equals_the_per_utterance_path(speech: np.ndarray) -> None:
    """Everything but the noise: the same plan gives the same features batched as one at a time."""
    rng = np.random.default_rng(7)
    plans = [augment.Plan(rir=augment.room_response(rng, 0.4), band=(4200.0, 150.0), gain_db=3.0, vtlp=1.08,
                          eq=augment.eq_curve(rng, 80, 8.0), freq_masks=((10, 7),), time_masks=((30, 9), (200, 4))),
             augment.Plan(telephone=True, gain_db=-6.0, vtlp=0.9, time_masks=((5, 10),)),
             augment.Plan(band=(7000.0, 380.0), rir=augment.room_response(rng, 0.15))]
    waves, lengths, audios = _batch(speech, plans)
    extractor = FeatureExtractor(FEATURES)
    feats, feat_lens = augment.augment_batch(waves, lengths, plans, extractor)
    assert feats.shape == (3, FEATURES.num_frames(len(audios[0])), 80)
    for i, (audio, plan) in enumerate(zip(audios, plans)):
        one = augment.apply_features(extractor(torch.from_numpy(augment.apply_waveform(audio, plan))), plan)
        assert int(feat_lens[i]) == len(one)
        got = feats[i, : len(one)]
        # torchaudio's float32 biquad loop errs by ~1e-6 of the peak (the FFT product: 25x less against
        # a float64 filter), which log-mel magnifies in the bins the filter cuts; compare where there is signal
        loud = one > one.mean() - 3
        assert torch.allclose(got[loud], one[loud], atol=1e-2), float((got - one)[loud].abs().max())
        assert float((got - one).abs().mean()) < 1e-3


def test_batch_noise_has_the_planned_level_and_colour(speech: np.ndarray) -> None:
    plans = [augment.Plan(noise=(0.0, 10.0, 1)), augment.Plan(noise=(2.0, 20.0, 2)), augment.Plan()]
    waves, lengths, audios = _batch(speech, plans)

    class Raw:  # hands the waveforms back instead of log-mel
        cfg = FEATURES

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            self.x = x.clone()
            return torch.zeros(x.shape[0], FEATURES.num_frames(x.shape[1]), 80)

    raw = Raw()
    augment.augment_batch(waves, lengths, plans, raw)
    again = Raw()
    augment.augment_batch(waves, lengths, plans, again)
    assert torch.equal(raw.x, again.x)  # seeded
    for i, audio in enumerate(audios):
        out = raw.x[i, : len(audio)].numpy()
        assert not raw.x[i, len(audio):].any()  # nothing after the end
        scale = np.dot(out, audio) / np.dot(audio, audio)  # the peak-limited gain (the noise is independent)
        noise = out / scale - audio
        if plans[i].noise is None:
            assert np.abs(noise).max() < 1e-4
            continue
        snr = 10 * np.log10(np.mean(audio**2) / np.mean(noise**2))
        assert snr == pytest.approx(plans[i].noise[1], abs=0.3)
        spectrum = np.abs(np.fft.rfft(noise)) ** 2
        low = spectrum[: len(spectrum) // 16].sum() / spectrum.sum()
        assert (low < 0.15) if plans[i].noise[0] == 0.0 else (low > 0.5)  # white against brown


def test_prepare_keeps_the_worker_path_deterministic_and_complete(speech: np.ndarray) -> None:
    cfg = AugmentConfig(p_trim=1, p_speed=1, p_reverb=1, p_band=1, p_telephone=1, p_noise=1, p_vtlp=1, p_eq=1)
    audio, plan = augment.prepare(speech, cfg, np.random.default_rng(3), 1.0, 80, FEATURES.num_frames)
    assert plan.rir is not None and plan.band and plan.telephone and plan.noise and plan.vtlp and plan.eq is not None
    assert len(plan.freq_masks) == 2 and len(plan.time_masks) == int(FEATURES.num_frames(len(audio)) * 0.02)
    assert len(audio) != len(speech)  # trimmed and sped up or slowed down
    none, quiet = augment.prepare(speech, cfg, np.random.default_rng(3), 0.0, 80, FEATURES.num_frames)
    assert none is speech and quiet.rir is None and quiet.noise is None and not quiet.time_masks
