"""CTC decoding: greedy collapse across chunk borders, words with times and confidences.

Pure functions over numpy arrays, kept apart from the model so that a beam search with a
language model can replace ``greedy`` later.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from streamasr.results import Word


class Token(NamedTuple):
    id: int  # vocabulary index (never the blank)
    frame: int  # model frame (absolute, since the stream started) of the CTC spike
    prob: float  # posterior of this token at its spike


def greedy(log_probs: np.ndarray, last_id: int, first_frame: int, blank: int = 0) -> tuple[list[Token], int]:
    """Best-path decoding of a chunk of frames.

    Args:
        log_probs: float32 (frames, vocab) CTC log-posteriors.
        last_id: argmax id of the frame before this chunk (blank at stream start), so that a
            repeat straddling a chunk border still collapses into one token.
        first_frame: absolute index of the chunk's first frame.

    Returns:
        The tokens emitted in this chunk, and the argmax id of its last frame.
    """
    if len(log_probs) == 0:
        return [], last_id
    # Plain Python over the argmax ids: streaming chunks hold a few frames, where numpy calls cost more.
    ids = log_probs.argmax(axis=1).tolist()
    tokens: list[Token] = []
    prev = last_id
    for t, i in enumerate(ids):
        if i != blank and i != prev:
            tokens.append(Token(i, first_frame + t, math.exp(float(log_probs[t, i]))))
        prev = i
    return tokens, ids[-1]


def words_from_tokens(tokens: list[Token] | tuple[Token, ...], vocab: tuple[str, ...], space: int,
                      frame_seconds: float) -> list[Word]:
    """Group character tokens into words, with times from the spikes and a confidence.

    A word starts at its first character's frame and ends after its last one; its confidence is
    the mean posterior of its characters.
    """
    words, end = settle_words(tokens, 0, vocab, space, frame_seconds)
    rest = tokens[end:]  # characters of a word no space has ended yet
    if rest:
        words.append(_word([vocab[t.id] for t in rest], rest[0].frame, rest[-1].frame,
                           sum(t.prob for t in rest), frame_seconds))
    return words


def settle_words(tokens: list[Token] | tuple[Token, ...], start: int, vocab: tuple[str, ...], space: int,
                 frame_seconds: float) -> tuple[list[Word], int]:
    """The words of ``tokens[start:]`` that a space has ended, for building a hypothesis incrementally.

    Returns:
        Those words (as ``words_from_tokens`` makes them) and the index after the last space, so
        that ``tokens[index:]`` holds only the characters of the word still being spoken.
    """
    words: list[Word] = []
    chars: list[str] = []
    first = last = 0
    conf = 0.0
    end = start
    for i in range(start, len(tokens)):
        token = tokens[i]
        if token.id != space:
            if not chars:
                first, conf = token.frame, 0.0
            chars.append(vocab[token.id])
            last = token.frame
            conf += token.prob
            continue
        if chars:
            words.append(_word(chars, first, last, conf, frame_seconds))
            chars = []
        end = i + 1
    return words, end


def _word(chars: list[str], first: int, last: int, conf: float, frame_seconds: float) -> Word:
    return Word(word="".join(chars), start=round(first * frame_seconds, 3),
                end=round((last + 1) * frame_seconds, 3), conf=round(conf / len(chars), 3))
