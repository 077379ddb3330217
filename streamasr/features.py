"""Log-mel front end, whole-signal and streaming (the tail samples are carried between chunks)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio

from streamasr.audio import SAMPLE_RATE


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


class FeatureExtractor:
    """Cached torchaudio MelSpectrogram; ``center=False`` so each frame sees only past samples."""

    def __init__(self, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.win_length, win_length=cfg.win_length,
            hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
            center=False, power=2.0,
        )

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel of whole signals.

        Args:
            audio: float32 (samples,) or (batch, samples).

        Returns:
            float32 (frames, n_mels) or (batch, frames, n_mels).
        """
        if audio.shape[-1] < self.cfg.win_length:
            return torch.zeros(*audio.shape[:-1], 0, self.cfg.n_mels)
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
        # Always a fresh array: ``pcm`` may be read-only (np.frombuffer of wire bytes, which torch
        # warns about) or a buffer the caller reuses, and the leftover is kept in the state.
        buf = np.concatenate([tail, pcm])
        n = self.cfg.num_frames(len(buf))
        if n == 0:
            return buf, torch.zeros(0, self.cfg.n_mels)
        used = (n - 1) * self.cfg.hop_length + self.cfg.win_length
        frames = self(torch.from_numpy(np.ascontiguousarray(buf[:used])))
        return buf[n * self.cfg.hop_length:].copy(), frames
