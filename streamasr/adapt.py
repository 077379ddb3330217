"""Unsupervised speaker adaptation: the model learns a speaker's voice from its own output.

A model trained on synthetic voices is unsure of itself on a person. After each recording of a
speaker has been recognised, one gradient step lowers the entropy of the model's output on that
recording (no transcript needed), moving only the gain and bias of the LayerNorm after the input
projection (1,024 numbers for the 512-wide model); the next recording of the same speaker is then
recognised with them. A recording is never recognised with what was learnt from itself, so results
arrive as before, and the shared model is never changed: each speaker has its own copy.

    adapter = SpeakerAdapter(rec, AdaptConfig(lr=3e-3))
    for audio in recordings_of_one_speaker:
        text = recognise(adapter.rec, audio)
        adapter.learn(audio)

Many steps or a large ``lr`` collapse the model towards confident nonsense (entropy minimisation
has a trivial optimum), hence one small step per recording, and none after the first 1,000
recordings of a speaker (README, "what we tried": the real voice's CER began to rise after ~1,500).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from streamasr.stream import Recognizer


@dataclass(frozen=True)
class AdaptConfig:
    lr: float = field(default=0.0, metadata={"help": "Adam step size for speaker adaptation (0: off; 0.003 "
                                                     "measured best: every recording of a voice teaches the next)"})
    steps: int = field(default=1, metadata={"help": "gradient steps per recording (default: %(default)s)"})
    max_seconds: float = field(default=30.0, metadata={"help": "learn from at most the first S seconds of each "
                                                               "recording (default: %(default)s)"})
    # Entropy minimisation drifts in the end: the real voice's CER rose from 27.7 to 29.5 % over its
    # fourth 551 recordings in a row (README); the copy stops learning after this many.
    max_recordings: int = field(default=1000, metadata={"help": "learn from at most the first N recordings "
                                                                "of a speaker (default: %(default)s)"})

    def __post_init__(self) -> None:
        if not isinstance(self.lr, (int, float)) or not 0.0 <= self.lr <= 0.1:
            raise ValueError(f"AdaptConfig.lr must be a step size in [0, 0.1], got {self.lr!r}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 100:
            raise ValueError(f"AdaptConfig.steps must be an integer in [1, 100], got {self.steps!r}")
        if not isinstance(self.max_seconds, (int, float)) or not 1.0 <= self.max_seconds <= 600.0:
            raise ValueError(f"AdaptConfig.max_seconds must be in [1, 600] s, got {self.max_seconds!r}")
        if not isinstance(self.max_recordings, int) or not 1 <= self.max_recordings <= 1_000_000:
            raise ValueError(f"AdaptConfig.max_recordings must be an integer in [1, 1e6], got {self.max_recordings!r}")

    @property
    def enabled(self) -> bool:
        return self.lr > 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class SpeakerAdapter:
    """One speaker's copy of the model and what it has learnt so far.

    ``rec`` is the recognizer to use for the speaker's next recording; it shares the front end,
    tokenizer and decoder (with its LM) of the recognizer it was made from.
    """

    def __init__(self, rec: Recognizer, cfg: AdaptConfig) -> None:
        if rec.meta.get("quantized"):
            raise ValueError(f"speaker adaptation needs the float model; {rec.name} is quantized "
                             "(drop --quantize)")
        self.cfg = cfg
        self.model = copy.deepcopy(rec.model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.params = [self.model.norm.weight, self.model.norm.bias]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)
        self.base = rec
        self.rec = rec
        self.recordings = 0  # how many recordings it has learnt from

    def entropy(self, audio: np.ndarray) -> torch.Tensor:
        """Mean per-frame entropy (nats) of the model's output on ``audio`` (float32 16 kHz mono),
        starting from a stream's initial state and followed by its tail of silence, as streams are."""
        return self._entropy(self._features(audio))

    def _features(self, audio: np.ndarray) -> torch.Tensor:
        """(1, frames, n_mels) log-mel of at most ``cfg.max_seconds`` of ``audio`` and the tail of silence."""
        rec = self.base
        audio = audio[: int(self.cfg.max_seconds * rec.feature_cfg.sample_rate)]
        padded = np.concatenate([audio, np.zeros(rec.tail_samples, np.float32)])
        return rec.features(torch.from_numpy(padded))[None]

    def _entropy(self, feats: torch.Tensor) -> torch.Tensor:
        log_probs, _ = self.model(feats, self.base.start_hidden[:, None].contiguous())
        return -(log_probs.exp() * log_probs).sum(-1).mean()

    def learn(self, audio: np.ndarray) -> None:
        """Take ``cfg.steps`` gradient steps on this recording (none once ``cfg.max_recordings``
        have taught it); ``rec`` then reflects them."""
        if not self.cfg.enabled or len(audio) == 0 or self.recordings >= self.cfg.max_recordings:
            return
        feats = self._features(audio)  # once: only the model changes between steps
        for p in self.params:
            p.requires_grad_(True)
        try:
            for _ in range(self.cfg.steps):
                loss = self._entropy(feats)
                self.optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                self.optimizer.step()
        finally:
            for p in self.params:
                p.requires_grad_(False)
        self.recordings += 1
        self.rec = self.base.with_model(self.model)
