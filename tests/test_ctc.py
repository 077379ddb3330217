"""CTC greedy decoding: collapse (also across chunk borders), blanks, word times and confidences."""

from __future__ import annotations

import numpy as np
import pytest

from streamasr.engine import ctc
from streamasr.results import Word
from streamasr.engine.text import DEFAULT_VOCAB, Tokenizer

TOK = Tokenizer()
ID = {c: i for i, c in enumerate(DEFAULT_VOCAB)}


def posteriors(chars: str, peak: float = 0.9) -> np.ndarray:
    """float32 (frames, vocab) log-probs whose argmax spells ``chars`` ('_' = blank, one per frame)."""
    ids = [0 if c == "_" else ID[c] for c in chars]
    probs = np.full((len(ids), len(DEFAULT_VOCAB)), (1 - peak) / (len(DEFAULT_VOCAB) - 1))
    probs[np.arange(len(ids)), ids] = peak
    return np.log(probs).astype(np.float32)


def decode(*chunks: str) -> str:
    last, frame, out = 0, 0, []
    for chunk in chunks:
        tokens, last = ctc.greedy(posteriors(chunk), last, frame)
        out += tokens
        frame += len(chunk)
    return TOK.decode([t.id for t in out])


def test_collapse_repeats_and_drop_blanks() -> None:
    assert decode("__hhe_ll_lo__") == "hello"
    assert decode("aaa") == "a"


def test_blank_separates_repeats() -> None:
    assert decode("a_a") == "aa"
    assert decode("a__a") == "aa"


@pytest.mark.parametrize("chunks", [("hhe_l", "lo"), ("hhe_ll", "l_lo"), ("h", "h", "e", "_", "l", "l", "_", "l", "o")])
def test_repeat_across_chunk_border_collapses(chunks: tuple[str, ...]) -> None:
    assert decode(*chunks) == decode("".join(chunks))


def test_blank_at_border_still_separates() -> None:
    assert decode("a_", "a") == "aa"
    assert decode("a", "_a") == "aa"


def test_token_frames_are_absolute_and_probs_kept() -> None:
    tokens, last = ctc.greedy(posteriors("_ab_", peak=0.8), last_id=0, first_frame=100)
    assert [(t.id, t.frame) for t in tokens] == [(ID["a"], 101), (ID["b"], 102)]
    assert all(t.prob == pytest.approx(0.8, abs=1e-5) for t in tokens)
    assert last == 0


def test_empty_chunk_keeps_last_id() -> None:
    assert ctc.greedy(np.zeros((0, len(DEFAULT_VOCAB)), np.float32), 7, 3) == ([], 7)


def test_words_with_times_and_confidence() -> None:
    tokens = [ctc.Token(ID["h"], 2, 0.9), ctc.Token(ID["i"], 3, 0.5), ctc.Token(ID[" "], 5, 0.99),
              ctc.Token(ID[" "], 6, 0.99), ctc.Token(ID["y"], 10, 0.8), ctc.Token(ID["o"], 12, 0.6)]
    words = ctc.words_from_tokens(tokens, DEFAULT_VOCAB, TOK.space, frame_seconds=0.04)
    assert words == [Word("hi", 0.08, 0.16, 0.7), Word("yo", 0.4, 0.52, 0.7)]


def test_words_from_only_spaces_or_nothing() -> None:
    assert ctc.words_from_tokens([ctc.Token(ID[" "], 0, 1.0)], DEFAULT_VOCAB, TOK.space, 0.04) == []
    assert ctc.words_from_tokens([], DEFAULT_VOCAB, TOK.space, 0.04) == []


def test_settled_words_built_piecewise_equal_words_from_tokens() -> None:
    """The engine keeps the words a space has ended and rebuilds only the last one: same result."""
    rng = np.random.default_rng(0)
    ids = rng.choice([ID[" "], ID["a"], ID["b"], ID["'"]], size=200, p=[0.3, 0.3, 0.3, 0.1])
    tokens = [ctc.Token(int(i), 3 * n, float(rng.uniform(0.3, 1.0))) for n, i in enumerate(ids)]
    expected = ctc.words_from_tokens(tokens, DEFAULT_VOCAB, TOK.space, 0.04)
    for cuts in ([200], [1, 2, 3, 50, 51, 199, 200], sorted(rng.choice(200, 30, replace=False)) + [200]):
        words: list[Word] = []
        settled = 0
        for cut in cuts:
            new, settled = ctc.settle_words(tokens[:cut], settled, DEFAULT_VOCAB, TOK.space, 0.04)
            words += new
            assert all(t.id != TOK.space for t in tokens[settled:cut])  # at most the word being spoken
            tail = ctc.words_from_tokens(tokens[settled:cut], DEFAULT_VOCAB, TOK.space, 0.04)
            assert words + tail == ctc.words_from_tokens(tokens[:cut], DEFAULT_VOCAB, TOK.space, 0.04)
        assert words + ctc.words_from_tokens(tokens[settled:], DEFAULT_VOCAB, TOK.space, 0.04) == expected
