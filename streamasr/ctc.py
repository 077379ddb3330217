"""CTC decoding: greedy collapse across chunk borders, words with times and confidences.

Pure functions over numpy arrays, kept apart from the model so that a beam search with a
language model can replace ``greedy`` later.
"""

from __future__ import annotations

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
    ids = log_probs.argmax(axis=1)
    probs = np.exp(log_probs[np.arange(len(ids)), ids])
    prev = np.concatenate([[last_id], ids[:-1]])
    emit = np.nonzero((ids != blank) & (ids != prev))[0]
    tokens = [Token(int(ids[t]), first_frame + int(t), float(probs[t])) for t in emit]
    return tokens, int(ids[-1])


def words_from_tokens(tokens: list[Token] | tuple[Token, ...], vocab: tuple[str, ...], space: int,
                      frame_seconds: float) -> list[Word]:
    """Group character tokens into words, with times from the spikes and a confidence.

    A word starts at its first character's frame and ends after its last one; its confidence is
    the mean posterior of its characters.
    """
    words: list[Word] = []
    current: list[Token] = []
    for token in [*tokens, Token(space, -1, 1.0)]:
        if token.id != space:
            current.append(token)
            continue
        if current:
            words.append(Word(
                word="".join(vocab[t.id] for t in current),
                start=round(current[0].frame * frame_seconds, 3),
                end=round((current[-1].frame + 1) * frame_seconds, 3),
                conf=round(float(np.mean([t.prob for t in current])), 3),
            ))
            current = []
    return words
