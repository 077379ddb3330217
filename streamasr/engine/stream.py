"""The streaming engine: a shared immutable Recognizer and explicit per-stream state.

``step(rec, state, pcm) -> (state, results)`` and ``finish(rec, state) -> (state, results)``;
``step_many`` runs many streams through one batched model call. The state is plain data
(arrays, tensors, tuples), so it can be copied, batched and serialised.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from streamasr.engine import beam, ctc, endpoint
from streamasr.engine.adapt import AdaptConfig, AdaptState, Learner, Speaker, collect, learn_now, load_profile, save_profile
from streamasr.engine.adapt import initial as adapt_initial
from streamasr.engine.audio import SAMPLE_RATE, Resampler, ResamplerState, pcm_to_float
from streamasr.engine.checkpoint import load_checkpoint
from streamasr.engine.endpoint import EndpointConfig
from streamasr.errors import AudioError
from streamasr.engine.features import FeatureConfig, FeatureExtractor
from streamasr.engine.hotwords import Grammar, Hotwords
from streamasr.engine.lm import CharLM, WordLM
from streamasr.engine.model import AcousticModel
from streamasr.engine.model import quantize as quantize_model
from streamasr.results import MAX_NBEST, Alternative, Result, Word
from streamasr.engine.text import Tokenizer


RESAMPLERS = 16  # input sample rates whose resamplers a Recognizer keeps


class Recognizer:
    """Model, front end, tokenizer and decoder shared by every stream; never mutated after loading."""

    def __init__(self, model: AcousticModel, feature_cfg: FeatureConfig, tokenizer: Tokenizer,
                 meta: dict[str, Any] | None = None, name: str = "model",
                 decoder: beam.DecoderConfig | None = None) -> None:
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
        # Digital silence appended at the end of a stream, so its last frames get their lookahead.
        self.lookahead_samples = feature_cfg.hop_length * model.cfg.stack * model.cfg.lookahead
        self._resamplers: dict[int, Resampler] = {}
        self._resamplers_lock = threading.Lock()  # the server's event loop and worker thread both ask
        self.decoder = decoder or beam.DecoderConfig()
        self.start_hidden = self._hidden_after_silence(self.decoder.prime_seconds)
        # Digital silence after a stream's last audio (decoder.tail_seconds, plus the lookahead's).
        self.tail_samples = self.lookahead_samples + int(round(self.decoder.tail_seconds * feature_cfg.sample_rate))
        # The beam decoder (with its LM, loaded once here) exists only for method "beam".
        self.beam: beam.BeamDecoder | None = None
        if self.decoder.method == "beam":
            use_lm = self.decoder.lm_weight > 0 or (self.decoder.oov_penalty or 0) > 0  # the file holds the word list
            lm = CharLM.load(self.decoder.lm) if use_lm else None
            words = WordLM.load(self.decoder.word_lm) if self.decoder.word_weight > 0 else None
            self.beam = beam.BeamDecoder(self.decoder, tokenizer, lm, words)

    @classmethod
    def load(cls, path: str | Path | None = None, quantize: bool = False,
             decoder: beam.DecoderConfig | None = None) -> Recognizer:
        """Load a checkpoint (the bundled default model when ``path`` is None).

        Args:
            quantize: int8 dynamic quantisation of the GRU and linear layers (``model.quantize``):
                faster, results close to but not bit-equal with the float model; the name gets "-int8".
            decoder: greedy or beam search (with the LM); ``DecoderConfig()`` when None.
        """
        model, feature_cfg, tokenizer, meta = load_checkpoint(path)
        name = str(meta.get("name", Path(path).stem if path else "default"))
        if quantize:
            model, name, meta = quantize_model(model), f"{name}-int8", {**meta, "quantized": "int8-dynamic"}
        return cls(model, feature_cfg, tokenizer, meta, name, decoder)

    def _hidden_after_silence(self, seconds: float) -> torch.Tensor:
        """GRU state (layers, hidden) after ``seconds`` of digital silence from zeros: where streams start.

        Training utterances begin with 0.2 s of silence; real streams often begin mid-breath. For a
        model trained only on such utterances, starting from the state silence leaves cut the
        real-voice dev set's greedy WER by ~3 points; for one also trained on trimmed onsets it
        changes little (README, "what we tried").
        """
        hidden = self.model.initial_hidden(1)
        samples = int(round(seconds * self.feature_cfg.sample_rate))
        if samples:  # plus the silence the last of those steps looks ahead into
            samples += self.lookahead_samples
            with torch.no_grad():
                _, hidden = self.model(self.features(torch.zeros(samples))[None], hidden)
        return hidden[:, 0].clone()

    def resampler(self, rate: int) -> Resampler:
        """The resampler from ``rate``, from a cache of the ``RESAMPLERS`` most recently used rates
        (each at most ``audio.MAX_KERNEL`` taps), so no sequence of sample rates grows memory."""
        with self._resamplers_lock:
            found = self._resamplers.pop(rate, None)
            if found is None:
                found = Resampler(rate, self.feature_cfg.sample_rate)
            self._resamplers[rate] = found  # the most recently used last
            while len(self._resamplers) > RESAMPLERS:
                del self._resamplers[next(iter(self._resamplers))]
            return found

    def initial_state(self, sample_rate: int = SAMPLE_RATE, endpoint_cfg: EndpointConfig | None = None,
                      adapt: AdaptConfig | AdaptState | None = None, nbest: int = 1,
                      hotwords: Hotwords | Sequence[str | tuple[str, float]] | None = None,
                      grammar: Grammar | Sequence[str] | None = None) -> StreamState:
        """A fresh stream that accepts PCM at ``sample_rate``.

        ``nbest``: finals carry this many best texts (``Result.alternatives``) when above 1, at most ``MAX_NBEST``.
        ``hotwords``: words and phrases to boost, alone or with a boost in nats per character
        (``engine.hotwords``); the beam search uses them, the greedy decoder cannot.
        ``grammar``: a phrase list (``Grammar``): each segment's text becomes a sequence of listed
        phrases, or nothing (beam search only).

        Args:
            adapt: speaker adaptation (``streamasr.engine.adapt``): an ``AdaptConfig`` to start learning a
                new speaker, or the ``adapt`` of the speaker's last stream to go on from what it
                learnt; None (or a config with ``lr`` 0) leaves the stream unadapted.
        """
        if not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384000:
            raise AudioError(f"sample rate {sample_rate!r} is not supported; expected an integer in [1000, 384000] Hz")
        if isinstance(nbest, bool) or not isinstance(nbest, int) or not 1 <= nbest <= MAX_NBEST:
            raise ValueError(f"nbest must be an integer in [1, {MAX_NBEST}], got {nbest!r}")
        if hotwords is not None and not isinstance(hotwords, Hotwords):
            hotwords = Hotwords.compile(hotwords, self.tokenizer) if hotwords else None
        if grammar is not None and not isinstance(grammar, Grammar):
            grammar = Grammar.compile(grammar, self.tokenizer)
        if grammar is not None and self.beam is None:
            raise ValueError("a phrase list (grammar) needs the beam search; the recognizer decodes greedily")
        speaker: AdaptState | None = None
        if isinstance(adapt, AdaptState) or (adapt is not None and adapt.enabled):
            self.check_adaptable()
            speaker = adapt.restart(self.start_hidden) if isinstance(adapt, AdaptState) \
                else adapt_initial(self.model, adapt.for_decoder(self.decoder.method), self.start_hidden)
        resampler = None if sample_rate == self.feature_cfg.sample_rate else self.resampler(sample_rate).initial_state()
        return StreamState(
            sample_rate=sample_rate,
            endpoint=endpoint_cfg or EndpointConfig(),
            resampler=resampler,
            hidden=self.start_hidden,
            beams=self.beam.initial() if self.beam is not None else None,
            adapt=speaker,
            nbest=nbest,
            hotwords=hotwords,
            grammar=grammar,
        )

    def check_adaptable(self) -> None:
        """ValueError unless streams can adapt to their speakers here (learning needs the float model)."""
        if self.meta.get("quantized"):
            raise ValueError(f"speaker adaptation needs the float model; {self.name} is quantized (drop --quantize)")

    def adapt_limit(self, cfg: AdaptConfig) -> int:
        """Frames of model input a stream keeps to learn from: ``cfg.max_seconds``, in whole stacks."""
        frames = int(cfg.max_seconds * self.feature_cfg.sample_rate / self.feature_cfg.hop_length)
        return frames - frames % self.model.cfg.stack

    def learner(self) -> Learner:
        """A thread that learns this model's speaker adaptation off the caller's (``adapt.Learner``)."""
        return Learner(self.model, self.tokenizer.encode, self.tokenizer.blank)

    def speaker(self, cfg: AdaptConfig, profile: str | Path | None = None) -> Speaker:
        """A speaker to adapt to, learning with ``cfg``: new, or as the file ``profile`` kept them
        (``save_speaker``) when it exists."""
        self.check_adaptable()
        if profile is None or not Path(profile).exists():
            return Speaker(cfg)
        return Speaker(load_profile(profile, self.model, cfg.for_decoder(self.decoder.method), self.start_hidden))

    def save_speaker(self, speaker: Speaker, profile: str | Path) -> AdaptState:
        """Keep what ``speaker`` has learnt in the file ``profile`` for a later run; returns it."""
        state = speaker.adapt if isinstance(speaker.adapt, AdaptState) \
            else adapt_initial(self.model, speaker.adapt.for_decoder(self.decoder.method), self.start_hidden)
        save_profile(profile, state, self.model)
        return state

    def adapt_delay(self, cfg: AdaptConfig) -> int:
        """Model frames of a stream after a segment ends before its lesson is used: ``cfg.delay``, rounded up."""
        return math.ceil(round(cfg.delay / self.frame_seconds, 6))


@dataclass(frozen=True, eq=False)
class StreamState:
    """Everything one stream owns. Replace, never mutate (``dataclasses.replace``)."""

    sample_rate: int  # Hz of the PCM this stream receives
    endpoint: EndpointConfig
    resampler: ResamplerState | None  # None when the input is already at the model rate
    hidden: torch.Tensor  # float32 (layers, hidden) GRU state
    feature_tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # samples not yet framed
    pending: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (frames, n_mels) not yet stacked
    frame: int = 0  # model frames processed so far
    last_id: int = 0  # argmax id of the last model frame (for collapse across chunks)
    tokens: tuple[ctc.Token, ...] = ()  # tokens of the current segment
    words: tuple[Word, ...] = ()  # words of the current segment that a space has ended
    settled: int = 0  # how many of ``tokens`` those words cover (the rest is the word being spoken)
    beams: beam.Beams | None = None  # beam search only: the current segment's prefixes, best first
    segment: int = 0  # index of the current segment
    segment_start: int = 0  # first model frame of the current segment
    samples: int = 0  # input samples received (at sample_rate)
    finished: bool = False
    adapt: AdaptState | None = None  # speaker adaptation: this stream's LayerNorm and what it learns from
    nbest: int = 1  # texts a final carries as alternatives when above 1
    hotwords: Hotwords | None = None  # words and phrases the beam search boosts for this stream
    grammar: Grammar | None = None  # the phrases this stream's text must be made of (beam search only)


class _Staged(NamedTuple):
    """The front end's part of a stream's next state."""

    resampler: ResamplerState | None
    tail: np.ndarray  # float32 (samples,) not yet framed
    pending: np.ndarray  # float32 (frames, n_mels) not yet stacked
    samples: int  # input samples received in total


class _Decoded(NamedTuple):
    """The decoder's part of a stream's next state, and the results it produced."""

    frame: int
    last_id: int
    tokens: tuple[ctc.Token, ...]
    words: tuple[Word, ...]
    settled: int
    segment: int
    segment_start: int
    results: list[Result]
    beams: beam.Beams | None = None
    ended: int | None = None  # the model frame where the last segment ending in this step ended


def _front_end(rec: Recognizer, states: list[StreamState], pcms: list[np.ndarray],
               flush: bool) -> tuple[list[_Staged], list[np.ndarray]]:
    """Resample and frame the new PCM of every stream with one batched log-mel call.

    Returns:
        Per stream, the updated front-end buffers and the float32 (frames, n_mels) frames ready
        for the model (a whole number of stacks, possibly none). With a lookahead, the frames of
        the last ``lookahead`` stacks are also kept as pending: they are the next output's input.
    """
    audios: list[np.ndarray] = []
    resamplers: list[ResamplerState | None] = []
    for state, pcm in zip(states, pcms):
        audio, resampler = pcm, state.resampler
        if resampler is not None:
            r = rec.resampler(state.sample_rate)
            resampler, audio = r.process(resampler, pcm)
            if flush:
                resampler, rest = r.flush(resampler)
                audio = np.concatenate([audio, rest])
        if flush and rec.tail_samples:
            audio = np.concatenate([audio, np.zeros(rec.tail_samples, np.float32)])
        audios.append(audio)
        resamplers.append(resampler)
    tails, frames, counts = rec.features.stream_many([s.feature_tail for s in states], audios)
    stack, offset = rec.model.cfg.stack, 0
    look = stack * rec.model.cfg.lookahead
    staged: list[_Staged] = []
    ready: list[np.ndarray] = []
    for state, pcm, resampler, tail, count in zip(states, pcms, resamplers, tails, counts.tolist()):
        new = frames[offset:offset + count]
        offset += count
        if len(state.pending):
            new = np.concatenate([state.pending, new])
        used = rec.model.output_steps(len(new)) * stack  # frames whose outputs come now
        # A copy, so that a state never holds a view of the whole batch's frames.
        staged.append(_Staged(resampler, tail, new[used:].copy(), state.samples + len(pcm)))
        ready.append(new[:used + look] if used else new[:0])
    return staged, ready


_NO_FRAMES = np.zeros((0, 0), np.float32)


@torch.no_grad()
def _run_model(rec: Recognizer, states: list[StreamState],
               frames: list[np.ndarray]) -> list[tuple[np.ndarray, torch.Tensor]]:
    """One batched model call for all streams with new frames; returns (log_probs, hidden) each."""
    out: list[tuple[np.ndarray, torch.Tensor]] = [(_NO_FRAMES, s.hidden) for s in states]
    active = [i for i, f in enumerate(frames) if len(f)]
    if not active:
        return out
    steps = [rec.model.output_steps(len(frames[i])) for i in active]
    if min(steps) == max(steps):  # equal rows take the plain path; packing is only for ragged ones
        batch = np.stack([frames[i] for i in active])
        lengths = None
    else:
        width = max(len(frames[i]) for i in active)
        batch = np.zeros((len(active), width, frames[active[0]].shape[1]), np.float32)
        for row, i in enumerate(active):
            batch[row, : len(frames[i])] = frames[i]
        lengths = torch.tensor(steps)
    hidden = torch.stack([states[i].hidden for i in active], dim=1)
    norm = None
    if any(states[i].adapt is not None for i in active):  # a LayerNorm per row: the adapted streams' own
        rows = [states[i].adapt for i in active]
        norm = (torch.stack([a.weight if a else rec.model.norm.weight for a in rows]),
                torch.stack([a.bias if a else rec.model.norm.bias for a in rows]))
    log_probs, hidden = rec.model(torch.from_numpy(batch), hidden, lengths, norm)
    lp = log_probs.numpy()
    # Clones, so that a state never holds a view of the whole batch's hidden state.
    for row, (i, h) in enumerate(zip(active, hidden.unbind(1))):
        out[i] = (lp[row, : steps[row]], h.clone())
    return out


def _run_with_lessons(rec: Recognizer, states: list[StreamState], frames: list[np.ndarray]
                      ) -> tuple[list[StreamState], list[tuple[np.ndarray, torch.Tensor]]]:
    """``_run_model``, where a stream whose speaker's lesson comes due within its new frames runs
    in two parts: up to the due frame with the LayerNorm it had, then with the lesson's. So the
    lesson is used from the same frame however the audio was cut into chunks.

    Returns the states (with those lessons settled) and the model's outputs.
    """
    stack, look = rec.model.cfg.stack, rec.model.cfg.stack * rec.model.cfg.lookahead
    split: dict[int, tuple[int, AdaptState]] = {}  # stream: (outputs before its lesson comes due, its speaker)
    for i, (state, f) in enumerate(zip(states, frames, strict=True)):
        speaker = state.adapt
        if speaker is not None and speaker.lesson is not None \
                and 0 < speaker.due - state.frame < rec.model.output_steps(len(f)):
            split[i] = (speaker.due - state.frame, speaker)
    if not split:
        return states, _run_model(rec, states, frames)
    outputs = _run_model(rec, states, [f[: split[i][0] * stack + look] if i in split else f
                                       for i, f in enumerate(frames)])
    states = list(states)
    for i, (_, speaker) in split.items():
        states[i] = replace(states[i], adapt=speaker.settle())
    rest = _run_model(rec, [replace(states[i], hidden=outputs[i][1]) for i in split],
                      [frames[i][cut * stack:] for i, (cut, _) in split.items()])
    for i, (log_probs, hidden) in zip(split, rest, strict=True):
        outputs[i] = (np.concatenate([outputs[i][0], log_probs]), hidden)
    return states, outputs


def _decode_all(rec: Recognizer, states: list[StreamState], log_probs: list[np.ndarray], partial: bool
                ) -> list[_Decoded]:
    """Every stream's new frames: the beam search for all of them at once, or greedy stream by stream."""
    if rec.beam is not None:
        return _decode_beams(rec, rec.beam, states, log_probs, partial)
    return [_decode(rec, state, lp, partial) for state, lp in zip(states, log_probs)]


def _decode(rec: Recognizer, state: StreamState, log_probs: np.ndarray, partial: bool) -> _Decoded:
    """Greedy CTC over new frames with per-frame endpoint checks.

    Ends with a partial (if ``partial``) when the open segment got new tokens: an unchanged
    hypothesis is not rebuilt, and words once ended by a space are kept in the state rather
    than rebuilt for every partial, which keeps per-stream work small with many streams.
    """
    tokens, words, settled = state.tokens, state.words, state.settled
    segment, seg_start = state.segment, state.segment_start
    results: list[Result] = []
    ended: int | None = None
    added = False  # whether the open segment got new tokens in this step
    last_id = state.last_id
    if len(log_probs):
        new_tokens, last_id = ctc.greedy(log_probs, state.last_id, state.frame, rec.tokenizer.blank)
        growing = list(tokens)
        space, pos = rec.tokenizer.space, 0
        last_speech = next((t.frame for t in reversed(growing) if t.id != space), None)
        for frame in range(state.frame, state.frame + len(log_probs)):
            while pos < len(new_tokens) and new_tokens[pos].frame == frame:
                growing.append(new_tokens[pos])
                added = True
                if new_tokens[pos].id != space:
                    last_speech = frame
                pos += 1
            decision = endpoint.check(state.endpoint, frame, seg_start, last_speech, rec.frame_seconds)
            if decision == "final":
                words, settled = _settle(rec, growing, words, settled)
                results.append(_result(rec, "final", segment, growing, seg_start, words, settled, state.nbest))
                segment, ended = segment + 1, frame + 1
            if decision != "none":
                growing, words, settled, seg_start, last_speech, added = [], (), 0, frame + 1, None, False
        tokens = tuple(growing)
    if tokens and added and partial:
        words, settled = _settle(rec, tokens, words, settled)
        results.append(_result(rec, "partial", segment, tokens, seg_start, words, settled))
    return _Decoded(state.frame + len(log_probs), last_id, tokens, words, settled, segment, seg_start, results,
                    ended=ended)


def _decode_beams(rec: Recognizer, dec: beam.BeamDecoder, states: list[StreamState], log_probs: list[np.ndarray],
                  partial: bool) -> list[_Decoded]:
    """Prefix beam search over every stream's new frames, all streams a frame at a time in one
    batch, with per-frame endpoint checks on each stream's best prefix.

    At a segment end the best prefix (counting the LMs' sentence end) becomes the final and the
    stream's beams restart from the empty prefix. Each stream ends with a partial (if
    ``partial``) when its best prefix differs from the one its state held.
    """
    order, lengths, padded = beam.by_length(log_probs, len(rec.tokenizer.vocab))
    batch = dec.batch([b if b is not None else dec.initial() for b in (states[i].beams for i in order)],
                      [states[i].hotwords for i in order], [states[i].grammar for i in order])
    first = np.array([states[i].frame for i in order])
    segment = [states[i].segment for i in order]
    seg_start = [states[i].segment_start for i in order]
    results: list[list[Result]] = [[] for _ in order]
    ended: list[int | None] = [None] * len(order)
    for t in range(padded.shape[1]):
        m = int(np.count_nonzero(lengths > t))
        dec.step(batch, padded[:m, t], first[:m] + t)
        speech = batch.speech[:m, 0].tolist()
        for row in range(m):
            frame = int(first[row]) + t
            i = order[row]
            decision = endpoint.check(states[i].endpoint, frame, seg_start[row],
                                      None if speech[row] < 0 else speech[row], rec.frame_seconds)
            if decision == "none":
                continue
            chosen, alternatives = dec.best(batch.row(row), states[i].nbest, states[i].hotwords, states[i].grammar)
            if decision == "final":
                results[row].append(_result(rec, "final", segment[row], chosen.tokens, seg_start[row], (), 0,
                                            states[i].nbest, alternatives))
                segment[row], ended[row] = segment[row] + 1, frame + 1
            batch.set_row(row, dec.restart(chosen))
            seg_start[row] = frame + 1
    out: dict[int, _Decoded] = {}
    for row, (i, beams) in enumerate(zip(order, dec.split(batch))):
        state = states[i]
        same_segment = seg_start[row] == state.segment_start and state.beams is not None
        known = (state.beams, state.tokens) if same_segment and state.beams is not None else None
        tokens = beams.tokens(0, known)
        # The words of the state's best prefix that a space had ended stay, if the new best shares them.
        words, settled = state.words, state.settled
        if not same_segment or tokens[:settled] != state.tokens[:settled]:
            words, settled = (), 0
        if tokens and partial and tokens != state.tokens:
            words, settled = _settle(rec, tokens, words, settled)
            results[row].append(_result(rec, "partial", segment[row], tokens, seg_start[row], words, settled))
        out[i] = _Decoded(state.frame + len(log_probs[i]), state.last_id, tokens, words, settled, segment[row],
                          seg_start[row], results[row], beams, ended[row])
    return [out[i] for i in range(len(states))]


def _settle(rec: Recognizer, tokens: list[ctc.Token] | tuple[ctc.Token, ...], words: tuple[Word, ...],
            settled: int) -> tuple[tuple[Word, ...], int]:
    """Extend the settled words with those that new space tokens have ended."""
    new, settled = ctc.settle_words(tokens, settled, rec.tokenizer.vocab, rec.tokenizer.space, rec.frame_seconds)
    return (words + tuple(new) if new else words), settled


def _result(rec: Recognizer, kind: Literal["partial", "final"], segment: int,
            tokens: list[ctc.Token] | tuple[ctc.Token, ...], seg_start: int, words: tuple[Word, ...],
            settled: int, nbest: int = 1, alternatives: list[tuple[str, float]] | None = None) -> Result:
    """The segment's hypothesis: the settled words plus the word still being spoken.

    A final of a stream that asked for ``nbest`` > 1 texts carries ``alternatives`` (the beam
    search's; the greedy decoder has only its own text)."""
    if settled < len(tokens):
        words = words + tuple(ctc.words_from_tokens(tokens[settled:], rec.tokenizer.vocab, rec.tokenizer.space,
                                                    rec.frame_seconds))
    start = words[0].start if words else round(seg_start * rec.frame_seconds, 3)
    end = words[-1].end if words else start
    text = " ".join(w.word for w in words)
    others: tuple[Alternative, ...] = ()
    if kind == "final" and nbest > 1:
        others = tuple(Alternative(t, score) for t, score in (alternatives or [(text, 0.0)]))
    return Result(kind, segment, text, start, end, words, others)


def step_many(rec: Recognizer, states: list[StreamState], pcms: list[np.ndarray | bytes],
              encoding: str = "pcm_f32le", flush: bool = False,
              learner: Learner | None = None) -> list[tuple[StreamState, list[Result]]]:
    """Advance many streams by one chunk each, batching their front end and model work.

    Each stream's results are the same whether it runs alone or among others (up to float
    rounding in the batched matrix products, far below what changes a decision).

    Args:
        pcms: per stream, float32/int16 samples or little-endian bytes in ``encoding``.
        flush: end of audio: drain the resampler too (used by ``finish``). Nothing is learnt:
            a stream that ends with its speaker would not use it (``learn_rest`` is for one that does not).
        learner: speaker adaptation's learning runs there (the server's thread); None: here.

    Returns:
        Per stream: the new state and its results (finals for ended segments, then one partial
        for the open segment when this step added to it).
    """
    audio: list[np.ndarray] = []
    for state, pcm in zip(states, pcms, strict=True):
        if state.finished:
            raise AudioError("audio after finish(); start a new stream")
        audio.append(pcm_to_float(pcm, encoding))
    states = _learn(rec, states, learner, start=not flush)
    staged, frames = _front_end(rec, states, audio, flush)
    states, outputs = _run_with_lessons(rec, states, frames)
    done: list[StreamState] = []
    results: list[list[Result]] = []
    decoded = _decode_all(rec, states, [lp for lp, _ in outputs], partial=not flush)
    for state, fe, f, (_, hidden), d in zip(states, staged, frames, outputs, decoded):
        speaker = state.adapt
        if speaker is not None:  # the frames this step ran (not those only read as lookahead)
            held = len(speaker.frames)
            speaker = collect(speaker, f[: rec.model.output_steps(len(f)) * rec.model.cfg.stack],
                              rec.adapt_limit(speaker.cfg))
            if d.ended is not None:  # a segment ended: what came before it is the next lesson
                ended = min(held + (d.ended - state.frame) * rec.model.cfg.stack, len(speaker.frames))
                speaker = replace(speaker, ended=ended, end=d.ended)
            elif d.segment_start > state.segment_start:
                # The segment restarted for lack of speech: the silence is not worth learning from.
                speaker = replace(speaker, frames=speaker.frames[: speaker.ended])
            speaker = _heard(speaker, d.results)
        done.append(StreamState(
            sample_rate=state.sample_rate, endpoint=state.endpoint, resampler=fe.resampler, hidden=hidden,
            feature_tail=fe.tail, pending=fe.pending, frame=d.frame, last_id=d.last_id, tokens=d.tokens,
            words=d.words, settled=d.settled, beams=d.beams, segment=d.segment, segment_start=d.segment_start,
            samples=fe.samples, adapt=speaker, nbest=state.nbest, hotwords=state.hotwords,
            grammar=state.grammar))
        results.append(d.results)
    return list(zip(done, results))


def _learn(rec: Recognizer, states: list[StreamState], learner: Learner | None = None,
           start: bool = True) -> list[StreamState]:
    """Speaker adaptation at the start of a step: each stream uses its last lesson once its frame
    has come (``cfg.delay`` seconds of audio after the segment end it learnt up to), and, if
    ``start``, a stream whose segment has ended starts a lesson on the audio up to that end and
    the finals' text: on ``learner`` (None: here, in batches of like length, ``adapt.learn_now``).

    So no result depends on what its own audio taught, nor on when the learner finished, nor on
    how the audio was cut into chunks (as long as the chunk in which a segment ends lasts less than
    ``cfg.delay``: a lesson can start no earlier than the step after it).
    """
    out = list(states)
    chosen: list[tuple[int, AdaptState, AdaptState]] = []  # (stream, what it learns from, the speaker after)
    for i, state in enumerate(states):
        speaker = state.adapt
        if speaker is None:
            continue
        if speaker.lesson is not None and state.frame >= speaker.due:
            speaker = speaker.settle()
        if start and speaker.lesson_ready():
            chosen.append((i, *speaker.take_lesson()))
        elif speaker is not state.adapt:
            out[i] = replace(state, adapt=speaker)
    if not chosen:
        return out
    lessons = [lesson for _, lesson, _ in chosen]
    futures = (learner.submit(lessons) if learner is not None
               else learn_now(rec.model, lessons, rec.tokenizer.encode, rec.tokenizer.blank))
    for (i, lesson, speaker), future in zip(chosen, futures, strict=True):
        speaker = replace(speaker, lesson=future, due=lesson.end + rec.adapt_delay(lesson.cfg))
        out[i] = replace(out[i], adapt=speaker if speaker.due > out[i].frame else speaker.settle())
    return out


def _heard(speaker: AdaptState, results: list[Result]) -> AdaptState:
    """``speaker`` with the text of the finals in ``results`` added (what target "transcript" learns towards)."""
    texts = [r.text for r in results if r.is_final and r.text]
    if not texts or speaker.segments >= speaker.cfg.max_segments:  # the latter learns no more
        return speaker
    return replace(speaker, text=" ".join([speaker.text, *texts]).strip())


def step(rec: Recognizer, state: StreamState, pcm: np.ndarray | bytes,
         encoding: str = "pcm_f32le") -> tuple[StreamState, list[Result]]:
    """Advance one stream by one chunk of PCM at the stream's sample rate."""
    return step_many(rec, [state], [pcm], encoding)[0]


def flush_segment(rec: Recognizer, state: StreamState) -> tuple[StreamState, list[Result]]:
    """End the current segment now (client ``flush``): a final with whatever it holds.

    With a lookahead, the last ``lookahead`` steps of audio have no output yet; they go to the next segment.
    """
    alternatives = None
    if rec.beam is not None:
        chosen, alternatives = rec.beam.best(state.beams if state.beams is not None else rec.beam.initial(),
                                             state.nbest, state.hotwords, state.grammar)
        state = replace(state, tokens=chosen.tokens, words=(), settled=0, beams=rec.beam.restart(chosen))
    if not state.tokens:
        return replace(state, segment_start=state.frame), []
    words, settled = _settle(rec, state.tokens, state.words, state.settled)
    final = _result(rec, "final", state.segment, state.tokens, state.segment_start, words, settled,
                    state.nbest, alternatives)
    speaker = None
    if state.adapt is not None:  # the segment ends here, after all the frames held
        speaker = _heard(replace(state.adapt, ended=len(state.adapt.frames), end=state.frame), [final])
    return replace(state, tokens=(), words=(), settled=0, segment=state.segment + 1,
                   segment_start=state.frame, adapt=speaker), [final]


def learn_rest(rec: Recognizer, state: StreamState) -> StreamState:
    """Speaker adaptation at the end of a stream: learn from all the audio since the last lesson,
    so that ``state.adapt`` can start the speaker's next stream (``Recognizer.initial_state``).

    ``finish`` leaves this out: a stream that ends with its speaker (a live connection) would pay
    a backward pass over its last segment, ahead of its last final, for nothing.
    """
    speaker = state.adapt
    if speaker is None:
        return state
    speaker = speaker.settle()
    lesson, rest = replace(speaker, ended=len(speaker.frames)).take_lesson()
    [taught] = learn_now(rec.model, [lesson], rec.tokenizer.encode, rec.tokenizer.blank)
    return replace(state, adapt=replace(rest, lesson=taught).settle())


def keep_speaker(rec: Recognizer, state: StreamState, speaker: Speaker) -> Speaker:
    """End of one of ``speaker``'s streams: learn from its audio since the last lesson
    (``learn_rest``) and leave what the stream taught in ``speaker`` for their next stream (a
    stream that did not adapt leaves it as it was). Returns ``speaker``."""
    taught = learn_rest(rec, state).adapt
    if taught is not None:
        speaker.adapt = taught
    return speaker


def finish(rec: Recognizer, state: StreamState) -> tuple[StreamState, list[Result]]:
    """End of audio: drain every buffer and emit the last final. The state accepts no more audio."""
    return finish_many(rec, [state])[0]


def finish_many(rec: Recognizer, states: list[StreamState]) -> list[tuple[StreamState, list[Result]]]:
    """``finish`` for many streams, their closing frames run as one batch."""
    out = []
    for state, results in step_many(rec, states, [np.zeros(0, np.float32)] * len(states), flush=True):
        state, last = flush_segment(rec, state)
        # A character the model emits in the closing silence belongs to the audio's last moment.
        limit = round(state.samples / state.sample_rate, 3)
        out.append((replace(state, finished=True), [_clamp(r, limit, rec.frame_seconds) for r in results + last]))
    return out


def _clamp(result: Result, limit: float, frame: float) -> Result:
    """``result`` with no time later than ``limit`` seconds; a word or result that starts later
    keeps the last ``frame`` seconds, so that nothing ends where it starts."""
    if result.end <= limit:
        return result
    latest = round(max(limit - frame, 0.0), 3)
    words = tuple(replace(w, start=min(w.start, latest), end=min(w.end, limit)) for w in result.words)
    return replace(result, start=min(result.start, latest), end=limit, words=words)
