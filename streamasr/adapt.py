"""Unsupervised speaker adaptation: a stream learns its speaker's voice from its own output.

A model trained on synthetic voices is unsure of itself on a person. Each time a stream's segment
ends, one gradient step lowers the entropy of the model's output on the audio since the last step
(no transcript needed), moving only the gain and bias of the LayerNorm after the input projection
(1,024 numbers for the 512-wide model); the stream's later audio is recognised with them. They
live in the stream's state (``AdaptState``), so the shared model is never changed, streams batch
together as before (the model call takes a LayerNorm per row), and a speaker's next stream can
start from what their last one learnt.

    state = rec.initial_state(adapt=AdaptConfig(lr=3e-3))
    ... step / finish as usual ...
    next_state = rec.initial_state(adapt=state.adapt)  # the same speaker again

Many steps or a large ``lr`` collapse the model towards confident nonsense (entropy minimisation
has a trivial optimum), hence one small step per segment, and none after a speaker's first 1,000
segments (README, "what we tried": the real voice's CER began to rise after ~1,500).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from streamasr.model import AcousticModel

# torch.optim.Adam's defaults; the update below is its algorithm, one row per stream.
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class AdaptConfig:
    lr: float = field(default=0.0, metadata={"help": "Adam step size for speaker adaptation (0: off; 0.003 "
                                                     "measured best: every segment of a speaker teaches the next)"})
    steps: int = field(default=1, metadata={"help": "gradient steps per segment (default: %(default)s)"})
    max_seconds: float = field(default=30.0, metadata={"help": "learn from at most the first S seconds of each "
                                                               "segment (default: %(default)s)"})
    # Entropy minimisation drifts in the end: the real voice's CER rose from 27.7 to 29.5 % over its
    # fourth 551 recordings in a row (README); a speaker's copy stops learning after this many.
    max_segments: int = field(default=1000, metadata={"help": "learn from at most the first N segments of a "
                                                              "speaker (default: %(default)s)"})
    # Measured on the real voice (README): with beam search, "both" 31.1 % WER against 33.8 % for
    # entropy alone; with greedy decoding, whose finals no LM has corrected, entropy is best.
    target: Literal["auto", "entropy", "transcript", "both"] = field(default="auto", metadata={
        "help": "what a speaker learns towards: 'transcript', CTC towards the stream's own finals (the beam "
                "search and its LM correct the model); 'entropy', the model's surety of itself; 'both', the "
                "sum; 'auto', 'both' with beam search and 'entropy' with greedy decoding (default: %(default)s)"})
    pull: float = field(default=0.0, metadata={"help": "after each step, the share of its distance from the "
                                                       "model's own LayerNorm a speaker's loses (default: "
                                                       "%(default)s)"})

    def __post_init__(self) -> None:
        if not isinstance(self.lr, (int, float)) or not 0.0 <= self.lr <= 0.1:
            raise ValueError(f"AdaptConfig.lr must be a step size in [0, 0.1], got {self.lr!r}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 100:
            raise ValueError(f"AdaptConfig.steps must be an integer in [1, 100], got {self.steps!r}")
        if not isinstance(self.max_seconds, (int, float)) or not 1.0 <= self.max_seconds <= 600.0:
            raise ValueError(f"AdaptConfig.max_seconds must be in [1, 600] s, got {self.max_seconds!r}")
        if not isinstance(self.max_segments, int) or not 1 <= self.max_segments <= 1_000_000:
            raise ValueError(f"AdaptConfig.max_segments must be an integer in [1, 1e6], got {self.max_segments!r}")
        if self.target not in ("auto", "entropy", "transcript", "both"):
            raise ValueError(f"AdaptConfig.target must be 'auto', 'entropy', 'transcript' or 'both', "
                             f"got {self.target!r}")
        if not isinstance(self.pull, (int, float)) or not 0.0 <= self.pull <= 1.0:
            raise ValueError(f"AdaptConfig.pull must be a share in [0, 1], got {self.pull!r}")

    @property
    def enabled(self) -> bool:
        return self.lr > 0

    def check_float(self, quantize: bool) -> None:
        """Refuse ``--quantize`` with adaptation on, before any model is loaded (learning needs the
        float model's gradients)."""
        if self.enabled and quantize:
            raise ValueError("--adapt-lr needs the float model: drop --quantize")

    def for_decoder(self, method: str) -> AdaptConfig:
        """This config with target "auto" made what it means for decoder ``method`` ("beam", "greedy")."""
        if self.target != "auto":
            return self
        return replace(self, target="both" if method == "beam" else "entropy")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class AdaptState:
    """One speaker's LayerNorm, its optimiser state, and the model input it has not learnt from yet."""

    cfg: AdaptConfig
    weight: torch.Tensor  # float32 (hidden,) LayerNorm gain used for this stream
    bias: torch.Tensor  # float32 (hidden,) LayerNorm bias
    moments: torch.Tensor  # float32 (4, hidden) Adam's running mean of the gradient (gain, bias), then of its square
    hidden: torch.Tensor  # float32 (layers, hidden) GRU state before ``frames``
    frames: np.ndarray  # float32 (frames, n_mels) model input since the last step, whole stacks, capped
    text: str = ""  # the stream's finals since ``frames`` began (what targets "transcript" and "both" learn towards)
    segment: int = 0  # the stream's segment when ``frames`` began: a later one means a segment has ended
    steps: int = 0  # Adam steps taken
    segments: int = 0  # segments learnt from

    def restart(self, hidden: torch.Tensor) -> AdaptState:
        """This speaker at the start of a new stream from GRU state ``hidden``: what was learnt is kept."""
        return replace(self, hidden=hidden, frames=self.frames[:0], text="", segment=0)


def initial(model: AcousticModel, cfg: AdaptConfig, hidden: torch.Tensor) -> AdaptState:
    """A speaker the model has not heard yet, at the start of a stream from GRU state ``hidden``
    (``cfg.target`` must not be "auto": ``AdaptConfig.for_decoder`` first)."""
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"adapt must be an AdaptConfig or an AdaptState, got {type(cfg).__name__}")
    if cfg.target == "auto":
        raise ValueError("AdaptConfig.target 'auto' depends on the decoder: resolve it with for_decoder(method)")
    weight, bias = model.norm.weight.detach(), model.norm.bias.detach()
    if weight.dtype != torch.float32:
        raise ValueError(f"speaker adaptation needs a float32 model, got a LayerNorm of {weight.dtype}")
    return AdaptState(cfg, weight.clone(), bias.clone(), weight.new_zeros(4, len(weight)), hidden,
                      np.zeros((0, model.cfg.n_mels), np.float32))


def collect(state: AdaptState, frames: np.ndarray, limit: int) -> AdaptState:
    """``state`` with ``frames`` (whole stacks the model has just run) added, keeping at most ``limit``."""
    room = limit - len(state.frames)
    if room <= 0 or not len(frames) or state.segments >= state.cfg.max_segments:
        return state
    return replace(state, frames=np.concatenate([state.frames, frames[:room]]))


def _log_probs(model: AcousticModel, states: list[AdaptState], weight: torch.Tensor | None,
               bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's log-probs (streams, steps, vocab) on each state's frames, and each row's steps."""
    stack = model.cfg.stack
    steps = [model.output_steps(len(s.frames)) for s in states]
    if min(steps) == 0:
        raise ValueError(f"every stream needs at least {stack * (1 + model.cfg.lookahead)} frames to learn from, "
                         f"got {[len(s.frames) for s in states]}")
    width = max(len(s.frames) for s in states)
    batch = np.zeros((len(states), width, model.cfg.n_mels), np.float32)
    for row, s in enumerate(states):
        batch[row, : len(s.frames)] = s.frames
    lengths = torch.tensor(steps)
    hidden = torch.stack([s.hidden for s in states], dim=1)
    if weight is None or bias is None:
        weight, bias = torch.stack([s.weight for s in states]), torch.stack([s.bias for s in states])
    log_probs, _ = model(torch.from_numpy(batch), hidden, lengths if min(steps) != max(steps) else None,
                         norm=(weight, bias))
    return log_probs, lengths


def entropy(model: AcousticModel, states: list[AdaptState],
            weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-frame entropy (nats) of the model's output on each state's frames: float32 (streams,).

    ``weight`` and ``bias`` (streams, hidden) replace the states' own LayerNorms (for gradients).
    """
    log_probs, lengths = _log_probs(model, states, weight, bias)
    per_frame = -(log_probs.exp() * log_probs).sum(-1)  # (streams, steps)
    valid = torch.arange(per_frame.shape[1])[None] < lengths[:, None]
    return (per_frame * valid).sum(1) / lengths


def transcript_loss(model: AcousticModel, states: list[AdaptState], targets: list[list[int]], blank: int,
                    weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """CTC loss per frame of each state's frames against ``targets`` (its final text, as token ids,
    without blanks): float32 (streams,). ``weight`` and ``bias`` as in ``entropy``."""
    log_probs, lengths = _log_probs(model, states, weight, bias)
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), torch.tensor([t for ids in targets for t in ids]), lengths,
        torch.tensor([len(ids) for ids in targets]), blank=blank, reduction="none", zero_infinity=True) / lengths


def learn_many(model: AcousticModel, states: list[AdaptState], hiddens: list[torch.Tensor],
               segments: list[int], encode: Callable[[str], list[int]] | None = None,
               blank: int = 0) -> list[AdaptState]:
    """Take each state's ``cfg.steps`` Adam steps on its frames, all streams in one batched call.

    Each stream's loss is its own (``cfg.target``: the entropy of the model's output, CTC towards
    the text of its finals (``encode``d), or their sum), and its LayerNorm reaches only its own row, so one
    backward pass gives every stream its own gradient. A state with too little audio, without
    text to learn towards, or whose speaker has taught it ``max_segments`` times, only drops what
    it holds. Afterwards each state collects anew from GRU state ``hiddens[i]`` in stream segment
    ``segments[i]``.
    """
    out = [replace(s, hidden=h, frames=s.frames[:0], text="", segment=seg)
           for s, h, seg in zip(states, hiddens, segments)]
    targets: dict[int, list[int]] = {}
    for i, s in enumerate(states):
        if s.cfg.target != "entropy":
            if encode is None:
                raise ValueError("learning towards the transcript needs the tokenizer's encode")
            targets[i] = encode(s.text.strip())
    ready = [i for i, s in enumerate(states) if s.cfg.enabled and s.segments < s.cfg.max_segments
             and model.output_steps(len(s.frames)) > 0 and (i not in targets or targets[i])]
    by_cfg: dict[AdaptConfig, list[int]] = {}
    for i in ready:
        by_cfg.setdefault(states[i].cfg, []).append(i)
    for cfg, rows in by_cfg.items():
        group = [states[i] for i in rows]
        weight = torch.stack([s.weight for s in group])
        bias = torch.stack([s.bias for s in group])
        moments = torch.stack([s.moments for s in group])  # (streams, 4, hidden)
        taken = torch.tensor([float(s.steps) for s in group])[:, None]
        for _ in range(cfg.steps):
            weight.requires_grad_(True)
            bias.requires_grad_(True)
            with torch.enable_grad():
                loss = torch.zeros(())
                if cfg.target != "entropy":
                    loss = loss + transcript_loss(model, group, [targets[i] for i in rows], blank, weight, bias).sum()
                if cfg.target != "transcript":
                    loss = loss + entropy(model, group, weight, bias).sum()
                grads = torch.autograd.grad(loss, (weight, bias))
            with torch.no_grad():
                weight, bias, moments, taken = _adam(cfg.lr, (weight.detach(), bias.detach()), grads, moments, taken)
                if cfg.pull:
                    weight = torch.lerp(weight, model.norm.weight.detach()[None], cfg.pull)
                    bias = torch.lerp(bias, model.norm.bias.detach()[None], cfg.pull)
        for row, i in enumerate(rows):
            out[i] = replace(out[i], weight=weight[row].clone(), bias=bias[row].clone(),
                             moments=moments[row].clone(), steps=int(taken[row]), segments=states[i].segments + 1)
    return out


def _adam(lr: float, params: tuple[torch.Tensor, torch.Tensor], grads: tuple[torch.Tensor, ...],
          moments: torch.Tensor, taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of Adam (torch.optim.Adam's update, default betas and eps) for rows of parameters,
    each row with its own step count ``taken`` (streams, 1)."""
    grad = torch.stack(grads, dim=1)  # (streams, 2, hidden)
    mean = moments[:, :2] * _BETA1 + grad * (1 - _BETA1)
    square = moments[:, 2:] * _BETA2 + grad * grad * (1 - _BETA2)
    taken = taken + 1
    step_size = (lr / (1 - _BETA1 ** taken))[:, :, None]
    denom = square.sqrt() / (1 - _BETA2 ** taken).sqrt()[:, :, None] + _EPS
    new = torch.stack(params, dim=1) - step_size * mean / denom
    return new[:, 0], new[:, 1], torch.cat([mean, square], dim=1), taken


@dataclass
class Speaker:
    """One speaker across streams: where each next stream of theirs starts from.

    Deliberately mutable: ``transcribe_audio``, ``transcribe_file`` and ``evaluate`` start a stream
    from ``adapt`` and store the stream's final ``AdaptState`` back, so the next file of the same
    speaker is recognised with what the earlier ones taught.
    """

    adapt: AdaptConfig | AdaptState
