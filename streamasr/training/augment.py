"""Training-time augmentation that makes a few synthetic voices look like many real speakers.

Waveform: leading-silence trimming, speed perturbation, reverberation, band limiting, telephone
codec, coloured noise, gain. Log-mel: vocal-tract-length warping, channel colouring and SpecAugment.
A data worker draws each utterance's ``Plan`` from an explicit ``numpy.random.Generator`` seeded by
(seed, step, utterance), so a batch always comes out the same, which is what makes resumed training
identical to uninterrupted training. The plan is applied in the worker or, batched, on the
training device (``augment_batch``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

from streamasr.engine.audio import SAMPLE_RATE


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


def band_limit(audio: np.ndarray, low_pass: float, high_pass: float) -> np.ndarray:
    """Low-pass at ``low_pass`` Hz, then high-pass at ``high_pass`` Hz (RBJ biquads, Q 0.707)."""
    x = torch.from_numpy(audio)
    x = AF.lowpass_biquad(x, SAMPLE_RATE, low_pass)
    x = AF.highpass_biquad(x, SAMPLE_RATE, high_pass)
    return x.numpy()


def telephone(audio: np.ndarray) -> np.ndarray:
    """Narrow-band telephone channel: 8 kHz, 8-bit mu-law, back to 16 kHz (same length)."""
    return telephone_channel(torch.from_numpy(audio)).numpy()


def telephone_channel(x: torch.Tensor) -> torch.Tensor:
    """``telephone`` of float32 (..., samples) on any device, rows alike."""
    t = AF.resample(x.clamp(-1, 1), SAMPLE_RATE, 8000)
    t = AF.mu_law_decoding(AF.mu_law_encoding(t.clamp(-1, 1), 256), 256)
    return AF.resample(t, 8000, SAMPLE_RATE)[..., : x.shape[-1]]


def eq_curve(rng: np.random.Generator, n: int, max_db: float) -> np.ndarray:
    """A random smooth gain curve across ``n`` mel bins, as log-power offsets (float32).

    TTS voices share one clean channel; real microphones, rooms and vocal tracts tilt and colour
    the spectrum. A sum of three low-order cosines, scaled so its largest |gain| is at most
    ``max_db``, imitates that without touching the timing.
    """
    pos = np.arange(n) / max(1, n - 1)
    curve = sum(rng.uniform(-1, 1) * np.cos(np.pi * k * pos) for k in (1, 2, 3))
    curve = curve / (np.abs(curve).max() + 1e-9) * rng.uniform(0, max_db)
    # log-mel is natural log of power: dB -> nepers of power is ln(10) / 10.
    return (curve * np.log(10) / 10).astype(np.float32)


def vtlp(feats: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """Warp the mel axis by ``factor`` (>1 moves energy to higher bins: a shorter vocal tract).

    Args:
        feats: float32 (frames, n_mels) log-mel with one factor, or (batch, frames, n_mels) with a
            (batch,) tensor of factors (1.0: unchanged).
    """
    rows = feats if feats.dim() == 3 else feats[None]
    factors = torch.as_tensor(factor, dtype=torch.float32, device=feats.device).reshape(-1, 1)
    n = rows.shape[2]
    src = torch.clamp(torch.arange(n, dtype=torch.float32, device=feats.device) / factors, 0, n - 1)
    lo = src.floor().long()
    hi = torch.clamp(lo + 1, max=n - 1)
    w = (src - lo)[:, None, :]
    frames = rows.shape[1]
    out = (torch.gather(rows, 2, lo[:, None, :].expand(-1, frames, -1)) * (1 - w)
           + torch.gather(rows, 2, hi[:, None, :].expand(-1, frames, -1)) * w)
    return out if feats.dim() == 3 else out[0]


@dataclass(frozen=True)
class Plan:
    """What augmentation does to one utterance after trimming and speed change.

    Drawn in the data worker (``prepare``), then applied either there, one utterance at a time
    (``apply_waveform``, ``apply_features``), or on the training device to a whole padded batch
    (``augment_batch``, ``train --augment-on device``), where the FFTs, the noise and the log-mel
    cost a GPU next to nothing and the workers only read, trim and resample.
    """

    rir: np.ndarray | None = None  # room impulse response to convolve with
    band: tuple[float, float] | None = None  # low-pass and high-pass cut-offs, Hz
    telephone: bool = False
    noise: tuple[float, float, int] | None = None  # spectral exponent, SNR in dB, seed of the noise
    gain_db: float = 0.0  # gain, limited so the peak stays below 0.99
    vtlp: float | None = None  # mel-axis warp factor
    eq: np.ndarray | None = None  # (n_mels,) log-power offsets
    freq_masks: tuple[tuple[int, int], ...] = ()  # (first bin, width)
    time_masks: tuple[tuple[int, int], ...] = ()  # (first frame, width)


def prepare(audio: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, strength: float,
            n_mels: int, frames_of: Callable[[int], int]) -> tuple[np.ndarray, Plan]:
    """Trim and speed-perturb ``audio``, then draw the rest of its augmentation.

    Each augmentation happens with its probability times ``strength`` (0..1). Trimming and speed
    change the length, so they are applied here; the masks need the frame count that follows.

    Args:
        audio: float32 (samples,) at 16 kHz.
        frames_of: log-mel frames of a signal of that many samples (``FeatureConfig.num_frames``).
    """
    if rng.random() < cfg.p_trim * strength:
        audio = trim_leading(audio, float(rng.uniform(0.0, 1.0)))
    if rng.random() < cfg.p_speed * strength:
        audio = speed(audio, float(rng.uniform(1 - cfg.speed_range, 1 + cfg.speed_range)))
    rir = room_response(rng, float(rng.uniform(0.15, cfg.rt60_max))) if rng.random() < cfg.p_reverb * strength else None
    band = ((float(rng.uniform(3000, 7500)), float(rng.uniform(60, 400)))
            if rng.random() < cfg.p_band * strength else None)
    phone = bool(rng.random() < cfg.p_telephone * strength)
    noise = ((float(rng.choice([0.0, 1.0, 2.0])), float(rng.uniform(*cfg.snr_range)), int(rng.integers(2**62)))
             if rng.random() < cfg.p_noise * strength else None)
    gain_db = float(rng.uniform(-cfg.gain_db, cfg.gain_db))
    warp = float(rng.uniform(1 - cfg.vtlp_range, 1 + cfg.vtlp_range)) if rng.random() < cfg.p_vtlp * strength else None
    eq = eq_curve(rng, n_mels, cfg.eq_db) if rng.random() < cfg.p_eq * strength else None
    # SpecAugment: frequency and time masks, filled with the utterance's mean at apply time.
    freq_masks = []
    for _ in range(cfg.freq_masks):
        width = int(rng.integers(0, int(cfg.freq_mask_width * strength) + 1))
        freq_masks.append((int(rng.integers(0, max(1, n_mels - width))), width))
    frames, time_masks = frames_of(len(audio)), []
    for _ in range(int(frames * cfg.time_mask_ratio * strength)):
        width = int(rng.integers(0, cfg.time_mask_width + 1))
        time_masks.append((int(rng.integers(0, max(1, frames - width))), width))
    return audio, Plan(rir, band, phone, noise, gain_db, warp, eq, tuple(freq_masks), tuple(time_masks))


def apply_waveform(audio: np.ndarray, plan: Plan) -> np.ndarray:
    """The waveform part of ``plan`` on one utterance: float32 (samples,) -> float32, same length."""
    if plan.rir is not None:
        audio = reverb(audio, plan.rir)
    if plan.band is not None:
        audio = band_limit(audio, *plan.band)
    if plan.telephone:
        audio = telephone(audio)
    if plan.noise is not None:
        exponent, snr_db, seed = plan.noise
        audio = add_noise(audio, coloured_noise(np.random.default_rng(seed), len(audio), exponent), snr_db)
    peak = float(np.abs(audio).max()) + 1e-9
    return (audio * min(10 ** (plan.gain_db / 20), 0.99 / peak)).astype(np.float32)


def apply_features(feats: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The log-mel part of ``plan`` on one utterance: float32 (frames, n_mels), same shape."""
    if plan.vtlp is not None:
        feats = vtlp(feats, plan.vtlp)
    if plan.eq is not None:
        feats = feats + torch.from_numpy(plan.eq)
    feats = feats.clone()
    fill = feats.mean()
    for start, width in plan.freq_masks:
        feats[:, start:start + width] = fill
    for start, width in plan.time_masks:
        feats[start:start + width] = fill
    return feats


# ---------------------------------------------------------------------------------------------
# A whole batch on the training device (the same plans, batched)

def biquad_response(size: int, cutoff: torch.Tensor, highpass: bool, q: float = 0.707) -> torch.Tensor:
    """Complex response at the ``rfft`` bins of ``size`` samples of the RBJ biquads ``band_limit`` runs.

    Args:
        cutoff: (rows,) Hz. Returns complex64 (rows, size // 2 + 1).
    """
    w0 = 2 * math.pi * cutoff.double()[:, None] / SAMPLE_RATE
    alpha, cos = torch.sin(w0) / (2 * q), torch.cos(w0)
    b0 = (1 + cos) / 2 if highpass else (1 - cos) / 2
    b1 = -2 * b0 if highpass else 2 * b0
    z = torch.exp(-1j * math.pi * torch.arange(size // 2 + 1, device=cutoff.device, dtype=torch.float64) / (size // 2))
    h = (b0 + b1 * z + b0 * z * z) / ((1 + alpha) - 2 * cos * z + (1 - alpha) * z * z)
    return h.to(torch.complex64)


@torch.no_grad()
def augment_batch(waves: torch.Tensor, lengths: torch.Tensor, plans: Sequence[Plan], features: Any,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``apply_waveform``, log-mel and ``apply_features`` for a padded batch, on its device.

    Equal to the per-utterance path up to float rounding (the biquads run as one FFT product, with
    reverberation, instead of a sample loop), except the noise: drawn here from torch's generator
    with the plans' seeds, so it is other noise of the same colour and level.

    Args:
        waves: float32 (batch, samples), zero after each utterance's length.
        lengths: int64 (batch,) samples.
        features: a ``FeatureExtractor`` whose transform lives on ``waves``' device.

    Returns:
        float32 (batch, frames, n_mels) log-mel and int64 (batch,) frame counts.
    """
    device, (batch, n) = waves.device, waves.shape
    lengths = lengths.to(device)
    valid = torch.arange(n, device=device)[None] < lengths[:, None]
    x = waves.float() * valid
    # Reverberation and band limiting are linear filters: one FFT product for both.
    reverbed = [i for i, p in enumerate(plans) if p.rir is not None]
    banded = [i for i, p in enumerate(plans) if p.band is not None]
    if reverbed or banded:
        longest = max((len(plans[i].rir) for i in reverbed), default=0)  # type: ignore[arg-type]
        # 0.1 s more lets the biquads' tails (< 50 ms to -100 dB at 60 Hz) die out before wrapping round.
        size = 1 << (n + longest + SAMPLE_RATE // 10 - 1).bit_length()
        response = torch.ones(batch, size // 2 + 1, dtype=torch.complex64, device=device)
        if reverbed:
            rirs = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(plans[i].rir) for i in reverbed],  # type: ignore[arg-type]
                                                   batch_first=True).to(device)
            response[reverbed] = torch.fft.rfft(rirs, size)
        if banded:
            cuts = torch.tensor([plans[i].band for i in banded], device=device)
            response[banded] *= biquad_response(size, cuts[:, 0], False) * biquad_response(size, cuts[:, 1], True)
        x = torch.fft.irfft(torch.fft.rfft(x, size) * response, size)[:, :n] * valid
    phoned = [i for i, p in enumerate(plans) if p.telephone]
    if phoned:
        x[phoned] = telephone_channel(x[phoned]) * valid[phoned]
    noisy = [i for i, p in enumerate(plans) if p.noise is not None]
    if noisy:
        params = torch.tensor([plans[i].noise[:2] for i in noisy], device=device)  # type: ignore[index]
        generator = torch.Generator(device=device)
        generator.manual_seed(plans[noisy[0]].noise[2])  # type: ignore[index]
        size = 1 << max(0, n - 1).bit_length()
        f = torch.arange(size // 2 + 1, device=device, dtype=torch.float32).clamp_min(1.0)
        spectrum = torch.complex(*(torch.randn(len(noisy), size // 2 + 1, generator=generator, device=device)
                                   for _ in range(2)))
        noise = torch.fft.irfft(spectrum / f ** (params[:, :1] / 2), size)[:, :n] * valid[noisy]
        count = lengths[noisy, None].clamp_min(1)
        noise /= torch.sqrt(noise.square().sum(1, keepdim=True) / count) + 1e-12
        power = x[noisy].square().sum(1, keepdim=True) / count + 1e-10
        x[noisy] += noise * torch.sqrt(power / 10 ** (params[:, 1:] / 10))
    gain = torch.tensor([10 ** (p.gain_db / 20) for p in plans], device=device)
    peak = x.abs().amax(1) + 1e-9
    x = x * torch.minimum(gain, 0.99 / peak)[:, None]

    feats = features(x)  # (batch, frames, n_mels)
    frames, bins = feats.shape[1], feats.shape[2]
    feat_lens = features.cfg.frame_counts(lengths)
    feats = vtlp(feats, torch.tensor([p.vtlp or 1.0 for p in plans]))
    eqs = [i for i, p in enumerate(plans) if p.eq is not None]
    if eqs:
        feats[eqs] += torch.from_numpy(np.stack([plans[i].eq for i in eqs])).to(device)[:, None, :]  # type: ignore[misc]
    mask = torch.zeros(batch, frames, bins, dtype=torch.bool)
    for i, p in enumerate(plans):
        for start, width in p.freq_masks:
            mask[i, :, start:start + width] = True
        for start, width in p.time_masks:
            mask[i, start:start + width] = True
    mask[torch.arange(frames)[None] >= feat_lens.cpu()[:, None]] = False  # nothing past the end
    in_use = (torch.arange(frames, device=device)[None] < feat_lens[:, None]).float()
    fill = (feats * in_use[:, :, None]).sum((1, 2)) / (feat_lens.clamp_min(1) * bins)
    feats = torch.where(mask.to(device), fill[:, None, None], feats)
    return feats, feat_lens


def strength_at(cfg: AugmentConfig, step: int) -> float:
    """Light augmentation early (CTC first has to find the alignment), full strength later."""
    return min(1.0, 0.3 + 0.7 * step / max(1, cfg.warmup_steps))
