"""Log-mel front end, whole-signal and streaming (the tail samples are carried between chunks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio

from streamasr.engine.audio import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = SAMPLE_RATE  # Hz of the PCM the front end receives
    n_mels: int = 80  # mel bins per frame
    win_length: int = 400  # samples per analysis window (25 ms at 16 kHz)
    hop_length: int = 160  # samples between frames (10 ms at 16 kHz)
    f_min: float = 20.0  # Hz, lowest mel filter edge
    f_max: float = 7600.0  # Hz, highest mel filter edge (below Nyquist)
    log_floor: float = 1e-6  # added to mel power before the log, avoids log(0)

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"FeatureConfig.sample_rate must be > 0, got {self.sample_rate}")
        if not 1 <= self.n_mels <= 256:
            raise ValueError(f"FeatureConfig.n_mels must be in [1, 256], got {self.n_mels}")
        if not 0 < self.hop_length <= self.win_length:
            raise ValueError(
                f"FeatureConfig.hop_length must be in (0, win_length={self.win_length}], got {self.hop_length}"
            )
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"FeatureConfig needs 0 <= f_min < f_max <= {self.sample_rate / 2}, "
                f"got f_min={self.f_min}, f_max={self.f_max}"
            )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def num_frames(self, samples: int) -> int:
        """Frames a signal of ``samples`` samples yields (no padding: every frame is causal)."""
        return 0 if samples < self.win_length else (samples - self.win_length) // self.hop_length + 1

    def frame_counts(self, samples: torch.Tensor) -> torch.Tensor:
        """``num_frames`` of each length in an int64 tensor (a padded batch's signals)."""
        return torch.where(samples >= self.win_length, (samples - self.win_length) // self.hop_length + 1, 0)


class FeatureExtractor:
    """Cached torchaudio MelSpectrogram; ``center=False`` so each frame sees only past samples."""

    def __init__(self, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.win_length, win_length=cfg.win_length,
            hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
            center=False, power=2.0,
        )

    def to(self, device: torch.device | str) -> FeatureExtractor:
        """Move the transform to ``device`` (log-mel of batches on the training GPU); returns self."""
        self.mel = self.mel.to(device)
        return self

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel of whole signals.

        Args:
            audio: float32 (samples,) or (batch, samples).

        Returns:
            float32 (frames, n_mels) or (batch, frames, n_mels).
        """
        if audio.shape[-1] < self.cfg.win_length:
            return torch.zeros(*audio.shape[:-1], 0, self.cfg.n_mels, device=audio.device)
        mel = self.mel(audio)  # (..., n_mels, frames)
        return torch.log(mel + self.cfg.log_floor).transpose(-1, -2).contiguous()

    def stream(self, tail: np.ndarray, pcm: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Frames for the samples that complete a window, carrying the rest.

        Args:
            tail: float32 (samples,) left over from the previous call.
            pcm: float32 (samples,) new audio at ``cfg.sample_rate``.

        Returns:
            (new tail, float32 frames of shape (frames, n_mels)); the frames equal those of the
            whole signal at the same positions.
        """
        tails, frames, _ = self.stream_many([tail], [pcm])
        return tails[0], torch.from_numpy(frames)

    @torch.no_grad()
    def stream_many(self, tails: Sequence[np.ndarray], pcms: Sequence[np.ndarray]
                    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """``stream`` for many streams at once: one FFT and one mel matmul for all their frames.

        The frames are cut from one flat buffer with a strided view (no per-stream tensor ops) and
        transformed as ``torchaudio.transforms.MelSpectrogram`` does it, so every frame equals the
        whole-signal result (``__call__``) up to float rounding (about 1e-7 relative).

        Args:
            tails: per stream, float32 (samples,) left over from its previous call.
            pcms: per stream, float32 (samples,) new audio at ``cfg.sample_rate``.

        Returns:
            New tails (fresh arrays, never views of the inputs), float32 frames (total, n_mels) of all
            streams in stream order, and int64 (streams,) frame counts per stream.
        """
        cfg = self.cfg
        # Always fresh arrays: a pcm may be read-only (np.frombuffer of wire bytes) or a buffer the
        # caller reuses, and the leftovers are kept in the stream states.
        flat = np.concatenate([a for pair in zip(tails, pcms, strict=True) for a in pair] or [np.zeros(0)],
                              dtype=np.float32)
        lengths = np.fromiter((len(t) + len(p) for t, p in zip(tails, pcms)), np.int64, len(tails))
        counts = np.where(lengths >= cfg.win_length, (lengths - cfg.win_length) // cfg.hop_length + 1, 0)
        offsets = np.cumsum(lengths) - lengths
        cut = (offsets + counts * cfg.hop_length).tolist()
        ends = (offsets + lengths).tolist()
        new_tails = [flat[a:b].copy() for a, b in zip(cut, ends)]
        total = int(counts.sum())
        if total == 0:
            return new_tails, np.zeros((0, cfg.n_mels), np.float32), counts
        first = np.cumsum(counts) - counts  # index of each stream's first frame in the output
        starts = np.repeat(offsets - first * cfg.hop_length, counts) + cfg.hop_length * np.arange(total)
        frames = np.lib.stride_tricks.sliding_window_view(flat, cfg.win_length)[starts]  # a copy
        return new_tails, self._log_mel(torch.from_numpy(frames)).numpy(), counts

    def _log_mel(self, frames: torch.Tensor) -> torch.Tensor:
        """float32 (frames, win_length) raw samples -> float32 (frames, n_mels) log-mel.

        The operations of torch.stft (center=False) + power 2 + MelScale, except that the power is
        re² + im² rather than |z|² through a square root, which is ~10x faster and differs in rounding only.
        """
        spectrogram = self.mel.spectrogram
        spec = torch.fft.rfft(frames * spectrogram.window, n=spectrogram.n_fft)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power, self.mel.mel_scale.fb)
        return torch.log(mel + self.cfg.log_floor)
