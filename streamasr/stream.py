"""The streaming engine: a shared immutable Recognizer and explicit per-stream state.

``step(rec, state, pcm) -> (state, results)`` and ``finish(rec, state) -> (state, results)``;
``step_many`` runs many streams through one batched model call. The state is plain data
(arrays, tensors, tuples), so it can be copied, batched and serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamasr import ctc, endpoint
from streamasr.audio import SAMPLE_RATE, Resampler, ResamplerState, pcm_to_float
from streamasr.checkpoint import load_checkpoint
from streamasr.endpoint import EndpointConfig
from streamasr.errors import AudioError
from streamasr.features import FeatureConfig, FeatureExtractor
from streamasr.model import AcousticModel
from streamasr.results import Result
from streamasr.text import Tokenizer


class Recognizer:
    """Model, front end and tokenizer shared by every stream; never mutated after loading."""

    def __init__(self, model: AcousticModel, feature_cfg: FeatureConfig, tokenizer: Tokenizer,
                 meta: dict[str, Any] | None = None, name: str = "model") -> None:
        if model.cfg.n_mels != feature_cfg.n_mels:
            raise ValueError(f"model expects {model.cfg.n_mels} mel bins, features give {feature_cfg.n_mels}")
        self.model = model.eval()
        self.feature_cfg = feature_cfg
        self.features = FeatureExtractor(feature_cfg)
        self.tokenizer = tokenizer
        self.meta = meta or {}
        self.name = name
        # Seconds per model output frame (hop x stack: 40 ms by default).
        self.frame_seconds = feature_cfg.hop_length * model.cfg.stack / feature_cfg.sample_rate
        self._resamplers: dict[int, Resampler] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> Recognizer:
        """Load a checkpoint (the bundled default model when ``path`` is None)."""
        model, feature_cfg, tokenizer, meta = load_checkpoint(path)
        name = str(meta.get("name", Path(path).stem if path else "default"))
        return cls(model, feature_cfg, tokenizer, meta, name)

    def resampler(self, rate: int) -> Resampler:
        if rate not in self._resamplers:
            self._resamplers[rate] = Resampler(rate, self.feature_cfg.sample_rate)
        return self._resamplers[rate]

    def initial_state(self, sample_rate: int = SAMPLE_RATE, endpoint_cfg: EndpointConfig | None = None) -> StreamState:
        """A fresh stream that accepts PCM at ``sample_rate``."""
        if not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384000:
            raise AudioError(f"sample rate {sample_rate!r} is not supported; expected an integer in [1000, 384000] Hz")
        resampler = None if sample_rate == self.feature_cfg.sample_rate else self.resampler(sample_rate).initial_state()
        return StreamState(
            sample_rate=sample_rate,
            endpoint=endpoint_cfg or EndpointConfig(),
            resampler=resampler,
            hidden=torch.zeros(self.model.cfg.layers, self.model.cfg.hidden),
        )


@dataclass(frozen=True, eq=False)
class StreamState:
    """Everything one stream owns. Replace, never mutate (``dataclasses.replace``)."""

    sample_rate: int  # Hz of the PCM this stream receives
    endpoint: EndpointConfig
    resampler: ResamplerState | None  # None when the input is already at the model rate
    hidden: torch.Tensor  # float32 (layers, hidden) GRU state
    feature_tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # samples not yet framed
    pending: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))  # (frames, n_mels) not yet stacked
    frame: int = 0  # model frames processed so far
    last_id: int = 0  # argmax id of the last model frame (for collapse across chunks)
    tokens: tuple[ctc.Token, ...] = ()  # tokens of the current segment
    segment: int = 0  # index of the current segment
    segment_start: int = 0  # first model frame of the current segment
    samples: int = 0  # input samples received (at sample_rate)
    finished: bool = False


def _front_end(rec: Recognizer, state: StreamState, pcm: np.ndarray, flush: bool) -> tuple[StreamState, torch.Tensor]:
    """Resample and frame new PCM; returns the state and the frames ready to stack."""
    audio = pcm
    resampler = state.resampler
    if resampler is not None:
        r = rec.resampler(state.sample_rate)
        resampler, audio = r.process(resampler, pcm)
        if flush:
            resampler, rest = r.flush(resampler)
            audio = np.concatenate([audio, rest])
    tail, frames = rec.features.stream(state.feature_tail, audio)
    if state.pending.numel():
        frames = torch.cat([state.pending, frames])
    usable = (len(frames) // rec.model.cfg.stack) * rec.model.cfg.stack
    state = replace(state, resampler=resampler, feature_tail=tail, pending=frames[usable:],
                    samples=state.samples + len(pcm))
    return state, frames[:usable]


@torch.no_grad()
def _run_model(rec: Recognizer, states: list[StreamState], frames: list[torch.Tensor]) -> list[tuple[np.ndarray, torch.Tensor]]:
    """One batched model call for all streams with new frames; returns (log_probs, hidden) each."""
    out: list[tuple[np.ndarray, torch.Tensor]] = [(np.zeros((0, 0), np.float32), s.hidden) for s in states]
    active = [i for i, f in enumerate(frames) if len(f)]
    if not active:
        return out
    lengths = [len(frames[i]) for i in active]
    batch = torch.nn.utils.rnn.pad_sequence([frames[i] for i in active], batch_first=True)
    hidden = torch.stack([states[i].hidden for i in active], dim=1)
    stack = rec.model.cfg.stack
    steps = torch.tensor([n // stack for n in lengths])
    # Packing is only needed when rows differ in length; equal rows take the plain path.
    log_probs, hidden = rec.model(batch, hidden, None if len(set(lengths)) == 1 else steps)
    lp = log_probs.numpy()
    for row, i in enumerate(active):
        out[i] = (lp[row, : int(steps[row])], hidden[:, row].clone())
    return out


def _decode(rec: Recognizer, state: StreamState, log_probs: np.ndarray) -> tuple[StreamState, list[Result]]:
    """Greedy CTC over new frames with per-frame endpoint checks."""
    new_tokens, last_id = ctc.greedy(log_probs, state.last_id, state.frame, rec.tokenizer.blank)
    tokens, segment, seg_start = list(state.tokens), state.segment, state.segment_start
    results: list[Result] = []
    space, pos = rec.tokenizer.space, 0
    last_speech = next((t.frame for t in reversed(tokens) if t.id != space), None)
    for frame in range(state.frame, state.frame + len(log_probs)):
        while pos < len(new_tokens) and new_tokens[pos].frame == frame:
            tokens.append(new_tokens[pos])
            if new_tokens[pos].id != space:
                last_speech = frame
            pos += 1
        decision = endpoint.check(state.endpoint, frame, seg_start, last_speech, rec.frame_seconds)
        if decision == "final":
            results.append(_result(rec, "final", segment, tokens, seg_start))
            segment += 1
        if decision != "none":
            tokens, seg_start, last_speech = [], frame + 1, None
    state = replace(state, frame=state.frame + len(log_probs), last_id=last_id, tokens=tuple(tokens),
                    segment=segment, segment_start=seg_start)
    return state, results


def _result(rec: Recognizer, kind: str, segment: int, tokens: list[ctc.Token] | tuple[ctc.Token, ...],
            seg_start: int) -> Result:
    words = ctc.words_from_tokens(tokens, rec.tokenizer.vocab, rec.tokenizer.space, rec.frame_seconds)
    start = words[0].start if words else round(seg_start * rec.frame_seconds, 3)
    end = words[-1].end if words else start
    return Result(kind, segment, " ".join(w.word for w in words), start, end, tuple(words))  # type: ignore[arg-type]


def step_many(rec: Recognizer, states: list[StreamState], pcms: list[np.ndarray | bytes],
              encoding: str = "pcm_f32le", flush: bool = False) -> list[tuple[StreamState, list[Result]]]:
    """Advance many streams by one chunk each, batching their model work into one call.

    Args:
        pcms: per stream, float32/int16 samples or little-endian bytes in ``encoding``.
        flush: end of audio: drain the resampler too (used by ``finish``).

    Returns:
        Per stream: the new state and its results (finals for ended segments, then one partial
        for the open segment when it has text).
    """
    staged: list[StreamState] = []
    frames: list[torch.Tensor] = []
    for state, pcm in zip(states, pcms, strict=True):
        if state.finished:
            raise AudioError("audio after finish(); start a new stream")
        state, f = _front_end(rec, state, pcm_to_float(pcm, encoding), flush)
        staged.append(state)
        frames.append(f)
    outputs = _run_model(rec, staged, frames)
    done: list[tuple[StreamState, list[Result]]] = []
    for state, (log_probs, hidden) in zip(staged, outputs):
        state, results = _decode(rec, replace(state, hidden=hidden), log_probs)
        if state.tokens and not flush:
            results.append(_result(rec, "partial", state.segment, state.tokens, state.segment_start))
        done.append((state, results))
    return done


def step(rec: Recognizer, state: StreamState, pcm: np.ndarray | bytes,
         encoding: str = "pcm_f32le") -> tuple[StreamState, list[Result]]:
    """Advance one stream by one chunk of PCM at the stream's sample rate."""
    return step_many(rec, [state], [pcm], encoding)[0]


def flush_segment(rec: Recognizer, state: StreamState) -> tuple[StreamState, list[Result]]:
    """End the current segment now (client ``flush``): a final with whatever it holds."""
    if not state.tokens:
        return replace(state, segment_start=state.frame), []
    final = _result(rec, "final", state.segment, state.tokens, state.segment_start)
    return replace(state, tokens=(), segment=state.segment + 1, segment_start=state.frame), [final]


def finish(rec: Recognizer, state: StreamState) -> tuple[StreamState, list[Result]]:
    """End of audio: drain every buffer and emit the last final. The state accepts no more audio."""
    state, results = step_many(rec, [state], [np.zeros(0, np.float32)], flush=True)[0]
    state, last = flush_segment(rec, state)
    return replace(state, finished=True), results + last
