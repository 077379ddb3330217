"""CTC prefix beam search with character-LM shallow fusion, one frame at a time.

The beam set is plain data (a tuple of ``Beam``) that the stream state carries from chunk to
chunk, so decoding a signal in chunks gives exactly what decoding it whole gives. Each prefix
keeps the tokens of its best path (character, frame of its spike, posterior), so word times and
confidences come out as with greedy decoding.

Scores are natural logs: a prefix's score is its CTC probability (summed over the alignments
that end in blank and in a character) plus ``lm_weight`` x its LM log-probability plus
``insertion_bonus`` per letter or apostrophe and ``space_bonus`` per space between words, minus
``oov_penalty`` for each word that is not in the LM's word list (paid on the character that
leaves the list's word starts, or on the space or end that closes a word start that is not
itself a word, so the beam drops such a prefix early), plus ``word_weight`` x the word LM's
log-probability of each word, paid on the space or end that closes it (and of the sentence end).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from streamasr.engine.ctc import Token
from streamasr.errors import ModelError
from streamasr.engine.lm import BOUNDARY, CharLM, WordLM
from streamasr.engine.text import Tokenizer

NEG_INF = float("-inf")
MAX_CANDIDATES = 16  # most characters tried per frame (the likeliest ones above min_log_prob)
# Nats per word outside the LM's word list unless DecoderConfig.oov_penalty says otherwise: 2 beat 0
# on all three evaluation sets once the LM text held modern words (README model card).
DEFAULT_OOV_PENALTY = 2.0


@dataclass(frozen=True)
class DecoderConfig:
    method: Literal["greedy", "beam"] = "beam"  # greedy: best path; beam: prefix beam search with the LM
    # Prefixes kept after each frame: 64 beat 32 by 1-2 WER points on unheard voices; with the
    # session-14 LM, 128 beat 64 on all three evaluation sets (0.5-1.0 points) at ~2x decoder time,
    # and with the word LM 256 beat 128 on all three (0.1-0.5 points) at ~2x (README model card).
    beam_size: int = 256
    lm_weight: float = 1.0  # weight of the LM's natural-log probability per character (0: no LM)
    # Nats added to a prefix's score per letter or apostrophe: offsets the LM's cost of each. It rises
    # with the word weight (each extra word costs more): 3.0 goes with 0.4 (README model card).
    insertion_bonus: float = 3.0
    # Nats added for each space between words, in place of insertion_bonus: with the full bonus a
    # prefix gains by splitting a word it is unsure of ("nineteen" -> "nine ten", "hello" -> "her
    # low"); 2.5 against 3.0: held-out and real voices 0.2 and 0.6 WER points better, training
    # voices 0.1 worse; 2.0 and 1.0 gave the real voice more and lost more on the synthetic sets.
    space_bonus: float = 2.5
    min_log_prob: float = -6.0  # nats: a character is tried in a frame only if its log-posterior reaches this
    lm: str | None = None  # character LM file (.npz); None: the bundled one
    # Weight of the word LM's natural-log probability per word (0: no word LM). The word trigram sees
    # two whole words back where the character 10-gram sees about two words' letters. With the LM text
    # that holds applications' messages, 0.4 with bonus 3.0 beat 0.2 with 2.0 by 0.7 and 0.8 WER points
    # on the held-out and real voices (0.3 on the training voices the other way); 0.5 with 3.5 lost
    # on all three (README model card).
    word_weight: float = 0.4
    word_lm: str | None = None  # word LM file (.npz, scripts/build_lm.py --word-out); None: the bundled one
    # Nats a prefix pays for each word outside the LM file's word list (its training text's words and
    # any list given to build_lm.py --words); 0: no word list; None: DEFAULT_OOV_PENALTY wherever the
    # LM in use (lm_weight > 0) holds a word list, else 0.
    oov_penalty: float | None = field(default=None, metadata={
        "help": f"default: {DEFAULT_OOV_PENALTY:g} where the LM in use holds a word list, else 0"})
    # Seconds of silence run through the model before a stream's first audio: every training
    # utterance starts with 0.2 s of silence, so streams start from the state silence leaves.
    prime_seconds: float = 0.2
    # Seconds of silence run through the model after a stream's last audio, before its last result:
    # every training utterance also ends with 0.2 s of silence, in which the model emits the last
    # characters it heard; 0.3 beat 0 on all three evaluation sets (0.2-0.5 WER points).
    tail_seconds: float = 0.3

    def __post_init__(self) -> None:
        if self.method not in ("greedy", "beam"):
            raise ValueError(f"DecoderConfig.method must be 'greedy' or 'beam', got {self.method!r}")
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or not 1 <= self.beam_size <= 256:
            raise ValueError(f"DecoderConfig.beam_size must be an integer in [1, 256], got {self.beam_size!r}")
        checks = (("lm_weight", 0.0, 10.0), ("word_weight", 0.0, 10.0), ("insertion_bonus", -20.0, 20.0),
                  ("space_bonus", -20.0, 20.0), ("min_log_prob", -100.0, 0.0),
                  ("prime_seconds", 0.0, 5.0), ("tail_seconds", 0.0, 5.0), ("oov_penalty", 0.0, 100.0))
        for name, low, high in checks:
            value = getattr(self, name)
            if name == "oov_penalty" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"DecoderConfig.{name} must be a number in [{low}, {high}], got {value!r}")
        if self.lm is not None and (not isinstance(self.lm, str) or not self.lm):
            raise ValueError(f"DecoderConfig.lm must be a path to an LM file or None (bundled), got {self.lm!r}")
        if self.word_lm is not None and (not isinstance(self.word_lm, str) or not self.word_lm):
            raise ValueError(f"DecoderConfig.word_lm must be a path to a word LM file or None (bundled), "
                             f"got {self.word_lm!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Beam(NamedTuple):
    """One prefix of the beam set (plain data, part of the stream state)."""

    text: str  # the collapsed characters so far (spaces included): the prefix's identity
    tokens: tuple[Token, ...]  # the characters of its best path, with spike frames and posteriors
    blank: float  # log P(prefix, alignment ends in blank)
    nonblank: float  # log P(prefix, alignment ends in its last character)
    lm: float  # lm_weight x LM log-prob + insertion_bonus x characters, in nats
    lm_state: int  # LM context (``CharLM.advance``); 0 without an LM
    last: int  # id of the last character emitted (0: none), so a repeat collapses

    @property
    def score(self) -> float:
        return _logaddexp(self.blank, self.nonblank) + self.lm


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def _space_is_free(text: str) -> bool:
    """A space after nothing or after a space does not change the words: no LM event, no bonus."""
    return not text or text[-1] == " "


def last_speech(beam: Beam, space: int) -> int | None:
    """Frame of the prefix's last non-space character (None if it has none), for endpointing."""
    for token in reversed(beam.tokens):
        if token.id != space:
            return token.frame
    return None


class BeamDecoder:
    """The shared, immutable part of beam search: config, LM and alphabet."""

    def __init__(self, cfg: DecoderConfig, tokenizer: Tokenizer, lm: CharLM | None = None,
                 words: WordLM | None = None) -> None:
        """``words``: the word LM, used where ``cfg.word_weight`` > 0 (``Recognizer`` loads ``cfg.word_lm``)."""
        if lm is not None and lm.vocab != tokenizer.vocab:
            raise ModelError(f"the LM's alphabet {''.join(lm.vocab[1:])!r} does not match the model's "
                             f"{''.join(tokenizer.vocab[1:])!r}")
        self.cfg = cfg
        self.lm = lm if cfg.lm_weight > 0 else None
        self.words = words if cfg.word_weight > 0 else None
        self.chars = ("",) + tokenizer.vocab[1:]  # id -> text appended to a prefix
        self.space = tokenizer.space
        self._start = self.lm.start if self.lm is not None else 0
        self._words: frozenset[str] = frozenset()
        self._prefixes: frozenset[str] | None = None  # None: no word list in use
        if cfg.oov_penalty is None:  # automatic: wherever the LM in use holds a word list
            has_words = self.lm is not None and self.lm.words is not None
            self.oov_penalty = DEFAULT_OOV_PENALTY if has_words else 0.0
        else:
            self.oov_penalty = cfg.oov_penalty
        if self.oov_penalty > 0:
            if lm is None or lm.words is None:
                raise ModelError(f"oov_penalty {cfg.oov_penalty} needs an LM file with a word list "
                                 f"(scripts/build_lm.py writes one; or set the penalty to 0); "
                                 f"got {'no LM' if lm is None else 'an LM without one'}")
            self._words, self._prefixes = lm.words, lm.prefixes

    def initial(self, last: int = 0, blank: float = 0.0, nonblank: float = NEG_INF) -> tuple[Beam, ...]:
        """The beam set at a segment start: the empty prefix, with the LM at sentence start.

        Args:
            last, blank, nonblank: carried over from the previous segment's chosen prefix, so that
                a character still sounding across the segment border is not emitted twice.
        """
        return (Beam("", (), blank, nonblank, 0.0, self._start, last),)

    def advance(self, beams: tuple[Beam, ...], log_probs: list[float], frame: int) -> tuple[Beam, ...]:
        """Extend the beam set by one frame.

        Args:
            beams: the beam set after the previous frame, best first.
            log_probs: the frame's CTC log-posteriors, one per vocabulary id (0: blank).
            frame: the frame's absolute index, recorded in new tokens.

        Returns:
            The new beam set, best first, at most ``beam_size`` prefixes.
        """
        cfg = self.cfg
        cands = [c for c in range(1, len(log_probs)) if log_probs[c] >= cfg.min_log_prob]
        if len(cands) > MAX_CANDIDATES:
            cands = heapq.nlargest(MAX_CANDIDATES, cands, key=log_probs.__getitem__)
        # text -> [blank, nonblank, fusion score, last, best path's log-prob, its parent, new char or 0]
        nxt: dict[str, list[Any]] = {}
        for b in beams:  # every prefix stays (blank, or its last character repeated)
            total = _logaddexp(b.blank, b.nonblank)
            stay_b = total + log_probs[0]
            stay_nb = b.nonblank + log_probs[b.last] if b.last else NEG_INF
            nxt[b.text] = [stay_b, stay_nb, b.lm, b.last, _logaddexp(stay_b, stay_nb), b, 0]
        if cands:
            # The beam_size-th best staying prefix bounds what survives: an extension scoring below
            # it can only lose, so it is dropped before any string or LM work (beam pruning).
            floor = NEG_INF
            if len(nxt) >= cfg.beam_size:
                floor = heapq.nlargest(cfg.beam_size, (e[4] + e[2] for e in nxt.values()))[-1]
            for b in beams:
                self._extend(nxt, b, cands, log_probs, floor)
        return self._best(nxt, log_probs, frame)

    def _extend(self, nxt: dict[str, list[Any]], b: Beam, cands: list[int], log_probs: list[float],
                floor: float) -> None:
        """Add the extensions of prefix ``b`` by each candidate character to ``nxt``."""
        total = _logaddexp(b.blank, b.nonblank)
        row: Sequence[float] | None = None  # the LM's distribution after b, fetched when first needed
        alpha = self.cfg.lm_weight
        best_case = b.lm + max(self.cfg.insertion_bonus, self.cfg.space_bonus, 0.0)  # the LM term is never positive
        free_space = _space_is_free(b.text)
        for c in cands:
            # After the same character, only an alignment that passed through a blank extends.
            p = (b.blank if c == b.last else total) + log_probs[c]
            if p + best_case < floor:
                continue
            text = b.text + self.chars[c]
            e = nxt.get(text)
            if e is None:
                bonus = self.cfg.space_bonus if c == self.space else self.cfg.insertion_bonus
                if c == self.space and free_space:
                    fused = b.lm
                elif self.lm is None:
                    fused = b.lm + bonus
                else:
                    if row is None:
                        row = self.lm.log_probs(b.lm_state)
                    fused = b.lm + bonus + alpha * row[c]
                if self._prefixes is not None:
                    fused -= self._oov_cost(b.text, c)
                if c == self.space and self.words is not None and not free_space:
                    fused += self._word_score(b.text.split())
                if p + fused >= floor:
                    nxt[text] = [NEG_INF, p, fused, c, p, b, c]
            else:
                e[1] = _logaddexp(e[1], p)
                if p > e[4]:
                    e[4], e[5], e[6] = p, b, c

    def _word_score(self, words: list[str]) -> float:
        """Word-LM term for closing the last of ``words`` (the sentence's words so far)."""
        assert self.words is not None
        return self.cfg.word_weight * self.words.log_prob(words[:-1], words[-1])

    def _oov_cost(self, text: str, c: int) -> float:
        """The penalty for appending character ``c`` to ``text``: paid once per word outside the list."""
        assert self._prefixes is not None
        word = text[text.rfind(" ") + 1:]
        if c == self.space:  # the word ends: a word start that is not a word pays here
            return self.oov_penalty if word in self._prefixes and word not in self._words else 0.0
        if (not word or word in self._prefixes) and word + self.chars[c] not in self._prefixes:
            return self.oov_penalty  # the word just left the list (a word outside it paid already)
        return 0.0

    def _best(self, nxt: dict[str, list[Any]], log_probs: list[float], frame: int) -> tuple[Beam, ...]:
        """The ``beam_size`` best candidates of ``advance`` as beams, with their tokens and LM states."""
        top = heapq.nlargest(self.cfg.beam_size, nxt.items(),
                             key=lambda kv: _logaddexp(kv[1][0], kv[1][1]) + kv[1][2])
        out: list[Beam] = []
        for text, (pb, pnb, fused, last, _, parent, c) in top:
            if c:
                tokens = parent.tokens + (Token(c, frame, math.exp(log_probs[c])),)
                # The LM state is needed only for the prefixes that survive: computed here.
                state = self._lm_state(parent, c)
            else:
                tokens, state = parent.tokens, parent.lm_state
            out.append(Beam(text, tokens, pb, pnb, fused, state, last))
        return tuple(out)

    def _lm_state(self, parent: Beam, c: int) -> int:
        if self.lm is None or (c == self.space and _space_is_free(parent.text)):
            return parent.lm_state
        return self.lm.advance(parent.lm_state, c)

    def end(self, beams: tuple[Beam, ...]) -> Beam:
        """The best prefix at a segment end, counting the LM's end-of-sentence probability."""
        if self.lm is None and self._prefixes is None and self.words is None:
            return beams[0]
        return max(beams, key=lambda b: b.score + self._end_score(b))

    def _end_score(self, b: Beam) -> float:
        # The sentence end closes the last word (a trailing space closed it already).
        end = -self._oov_cost(b.text, self.space) if self._prefixes is not None and not b.text.endswith(" ") else 0.0
        said = b.text.split()
        if self.words is not None:
            if said and not b.text.endswith(" "):  # a trailing space closed the last word already
                end += self._word_score(said)
            end += self.cfg.word_weight * self.words.log_prob(said, None)
        if self.lm is None:
            return end
        words = " ".join(said)  # as the LM saw it: no leading or repeated spaces
        lm, state = self.lm, self._start
        if not words:
            # An empty result is a sentence too, and an unlikely one: without this cost, a lone
            # uncertain word lost to nothing (37 of 551 real prompts came back empty).
            return self.cfg.lm_weight * lm.log_probs(state)[BOUNDARY]
        for ch in words[-(lm.order - 1):]:
            state = lm.advance(state, self.chars.index(ch))
        lps = lm.log_probs(state)
        end += self.cfg.lm_weight * lps[BOUNDARY]
        if b.text.endswith(" "):
            # The trailing space already scored the end of the last word; the sentence end replaces it.
            end -= self.cfg.lm_weight * lps[self.space] + self.cfg.space_bonus
        return end

    def restart(self, chosen: Beam) -> tuple[Beam, ...]:
        """The beam set for the next segment after ``chosen`` ended this one."""
        total = _logaddexp(chosen.blank, chosen.nonblank)
        return self.initial(chosen.last, chosen.blank - total, chosen.nonblank - total)
