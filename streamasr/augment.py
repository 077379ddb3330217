"""Training-time augmentation that makes a few synthetic voices look like many real speakers.

Waveform: leading-silence trimming, speed perturbation, reverberation, band limiting, telephone
codec, coloured noise, gain. Log-mel: vocal-tract-length warping and SpecAugment. Every function takes an explicit
``numpy.random.Generator`` so that a (seed, step, utterance) triple always gives the same result,
which is what makes resumed training identical to uninterrupted training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from streamasr.audio import SAMPLE_RATE


@dataclass(frozen=True)
class AugmentConfig:
    # The corpus keeps 0.2 s of silence before every utterance; real streams often start with speech.
    p_trim: float = 0.5  # probability of cutting the leading silence to a random part of itself
    p_speed: float = 0.7  # probability of speed perturbation
    speed_range: float = 0.15  # speed factor drawn from [1 - r, 1 + r]
    p_reverb: float = 0.25  # probability of convolving with a synthetic room response
    rt60_max: float = 0.7  # seconds, longest reverberation time drawn
    p_band: float = 0.3  # probability of random low-pass / high-pass filtering
    p_telephone: float = 0.05  # probability of 8 kHz mu-law telephone simulation
    p_noise: float = 0.4  # probability of additive coloured noise
    snr_range: tuple[float, float] = (5.0, 35.0)  # dB, noise SNR drawn uniformly
    gain_db: float = 10.0  # random gain drawn from [-g, +g] dB
    p_vtlp: float = 0.7  # probability of mel-axis warping (vocal tract length)
    vtlp_range: float = 0.12  # warp factor drawn from [1 - r, 1 + r]
    p_eq: float = 0.5  # probability of a random smooth channel colouring (microphone, room, voice timbre)
    eq_db: float = 8.0  # dB, largest boost or cut of that colouring
    freq_masks: int = 2  # SpecAugment frequency masks
    freq_mask_width: int = 15  # mel bins, widest frequency mask
    time_mask_ratio: float = 0.02  # time masks per frame (0.02 -> 2 masks per second, ~10 % masked)
    time_mask_width: int = 10  # frames, widest time mask
    warmup_steps: int = 1500  # augmentation probabilities ramp from 30 % to 100 % over these steps

    def __post_init__(self) -> None:
        for name in ("p_trim", "p_speed", "p_reverb", "p_band", "p_telephone", "p_noise", "p_vtlp", "p_eq"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} is a probability in [0, 1], got {value}")
        for name in ("speed_range", "vtlp_range"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 0.5), got {value}")
        if self.snr_range[0] > self.snr_range[1]:
            raise ValueError(f"AugmentConfig.snr_range must be (low, high) with low <= high, got {self.snr_range}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def trim_leading(audio: np.ndarray, keep: float, floor_db: float = -50.0) -> np.ndarray:
    """Keep only the fraction ``keep`` (0..1) of the silence before the first sample above ``floor_db`` of the peak."""
    level = np.abs(audio)
    loud = np.flatnonzero(level > level.max() * 10 ** (floor_db / 20))
    if len(loud) == 0:
        return audio
    lead = int(loud[0])
    return audio[lead - int(lead * keep):]


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch and tempo both change), like sox ``speed``."""
    # Rates on a 1 kHz grid keep the resampling ratio small (16:17, 16:19...) and the kernel cheap.
    new_rate = int(round(SAMPLE_RATE / factor / 1000.0)) * 1000
    if new_rate == SAMPLE_RATE:
        return audio
    return AF.resample(torch.from_numpy(audio), SAMPLE_RATE, new_rate).numpy()


def room_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Synthetic room impulse response: a direct path plus exponentially decaying noise."""
    length = int(rt60 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.003 * SAMPLE_RATE)] = 0.0  # first reflections arrive a few ms after the direct path
    rir = tail * rng.uniform(0.1, 0.5) / (np.sqrt(np.sum(tail**2)) + 1e-9)
    rir[0] = 1.0
    return rir.astype(np.float32)


def reverb(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    n = len(audio) + len(rir) - 1
    size = 1 << (n - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[: len(audio)]
    return out.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    # A power-of-two FFT cut to length: an inverse FFT of an arbitrary length (e.g. a prime factor
    # near 10^4) took 11 ms instead of 0.7 ms for 5 s of audio, a tenth of a data worker's time.
    size = 1 << max(0, n - 1).bit_length()
    spectrum = rng.standard_normal(size // 2 + 1) + 1j * rng.standard_normal(size // 2 + 1)
    f = np.arange(size // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / f ** (exponent / 2), size)[:n]
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    power = float(np.mean(audio**2)) + 1e-10
    return audio + noise * np.sqrt(power / 10 ** (snr_db / 10)).astype(np.float32)


def band_limit(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = torch.from_numpy(audio)
    x = AF.lowpass_biquad(x, SAMPLE_RATE, float(rng.uniform(3000, 7500)))
    x = AF.highpass_biquad(x, SAMPLE_RATE, float(rng.uniform(60, 400)))
    return x.numpy()


def telephone(audio: np.ndarray) -> np.ndarray:
    """Narrow-band telephone channel: 8 kHz, 8-bit mu-law, back to 16 kHz."""
    x = AF.resample(torch.from_numpy(np.clip(audio, -1, 1)), SAMPLE_RATE, 8000)
    x = AF.mu_law_decoding(AF.mu_law_encoding(x.clamp(-1, 1), 256), 256)
    return AF.resample(x, 8000, SAMPLE_RATE).numpy()


def augment_waveform(audio: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Apply the waveform augmentations, each with its probability times ``strength`` (0..1).

    Args:
        audio: float32 (samples,) at 16 kHz.

    Returns:
        float32 (samples',) at 16 kHz; trimming and speed perturbation change the length.
    """
    if rng.random() < cfg.p_trim * strength:
        audio = trim_leading(audio, float(rng.uniform(0.0, 1.0)))
    if rng.random() < cfg.p_speed * strength:
        audio = speed(audio, float(rng.uniform(1 - cfg.speed_range, 1 + cfg.speed_range)))
    if rng.random() < cfg.p_reverb * strength:
        audio = reverb(audio, room_response(rng, float(rng.uniform(0.15, cfg.rt60_max))))
    if rng.random() < cfg.p_band * strength:
        audio = band_limit(audio, rng)
    if rng.random() < cfg.p_telephone * strength:
        audio = telephone(audio)
    if rng.random() < cfg.p_noise * strength:
        noise = coloured_noise(rng, len(audio), float(rng.choice([0.0, 1.0, 2.0])))
        audio = add_noise(audio, noise, float(rng.uniform(*cfg.snr_range)))
    gain = 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)
    peak = float(np.abs(audio).max()) + 1e-9
    return (audio * min(gain, 0.99 / peak)).astype(np.float32)


def vtlp(feats: torch.Tensor, factor: float) -> torch.Tensor:
    """Warp the mel axis by ``factor`` (>1 moves energy to higher bins: a shorter vocal tract).

    Args:
        feats: float32 (frames, n_mels) log-mel.
    """
    n = feats.shape[1]
    src = torch.clamp(torch.arange(n, dtype=torch.float32) / factor, 0, n - 1)
    lo = src.floor().long()
    hi = torch.clamp(lo + 1, max=n - 1)
    w = src - lo
    return feats[:, lo] * (1 - w) + feats[:, hi] * w


def channel_eq(feats: torch.Tensor, rng: np.random.Generator, max_db: float) -> torch.Tensor:
    """Add a random smooth gain curve across the mel axis (log domain).

    TTS voices share one clean channel; real microphones, rooms and vocal tracts tilt and colour
    the spectrum. A sum of three low-order cosines, scaled so its largest |gain| is at most
    ``max_db``, imitates that without touching the timing.
    """
    n = feats.shape[1]
    pos = np.arange(n) / max(1, n - 1)
    curve = sum(rng.uniform(-1, 1) * np.cos(np.pi * k * pos) for k in (1, 2, 3))
    curve = curve / (np.abs(curve).max() + 1e-9) * rng.uniform(0, max_db)
    # log-mel is natural log of power: dB -> nepers of power is ln(10) / 10.
    return feats + torch.from_numpy((curve * np.log(10) / 10).astype(np.float32))


def spec_augment(feats: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Frequency and time masks (filled with the utterance mean), SpecAugment style."""
    feats = feats.clone()
    frames, bins = feats.shape
    fill = feats.mean()
    for _ in range(cfg.freq_masks):
        width = int(rng.integers(0, int(cfg.freq_mask_width * strength) + 1))
        start = int(rng.integers(0, max(1, bins - width)))
        feats[:, start:start + width] = fill
    for _ in range(int(frames * cfg.time_mask_ratio * strength)):
        width = int(rng.integers(0, cfg.time_mask_width + 1))
        start = int(rng.integers(0, max(1, frames - width)))
        feats[start:start + width] = fill
    return feats


def augment_features(feats: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator, strength: float) -> torch.Tensor:
    if rng.random() < cfg.p_vtlp * strength:
        feats = vtlp(feats, float(rng.uniform(1 - cfg.vtlp_range, 1 + cfg.vtlp_range)))
    if rng.random() < cfg.p_eq * strength:
        feats = channel_eq(feats, rng, cfg.eq_db)
    return spec_augment(feats, cfg, rng, strength)


def strength_at(cfg: AugmentConfig, step: int) -> float:
    """Light augmentation early (CTC first has to find the alignment), full strength later."""
    return min(1.0, 0.3 + 0.7 * step / max(1, cfg.warmup_steps))
