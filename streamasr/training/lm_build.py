"""Building the language models: interpolated modified Kneser-Ney estimates, pruned.

The runtime models (:class:`streamasr.engine.lm.CharLM` and ``WordLM``) only read and score; the
estimation lives here, so a server install never needs it. ``scripts/build_lm.py`` is the
command that runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from streamasr.engine.lm import BITS, BOUNDARY, WORD_PRUNE, CharLM, WordLM
from streamasr.engine.text import DEFAULT_VOCAB, normalize


def encode_corpus(texts: Iterable[str], vocab: tuple[str, ...] = DEFAULT_VOCAB) -> np.ndarray:
    """uint8 (symbols,) stream ``0 s1 0 s2 0 ...`` of sentences already normalised (empty ones dropped)."""
    table = np.zeros(256, np.uint8)
    for i, c in enumerate(vocab[1:], start=1):
        table[ord(c)] = i
    text = "\0".join(t for t in texts if t)
    body = table[np.frombuffer(text.encode("ascii"), np.uint8)]
    return np.concatenate([[BOUNDARY], body, [BOUNDARY]]).astype(np.uint8)


def _ngrams(stream: np.ndarray, k: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique codes (uint64, with sentinel) of the valid k-grams and their counts.

    Valid: a boundary only as the first symbol (``<s>``) or the last (``</s>``).
    """
    n = len(stream) - k + 1
    code = np.ones(n, np.uint64)
    for j in range(k):
        code = (code << np.uint64(bits)) | stream[j:j + n].astype(np.uint64)
    if k > 2:
        zeros = np.concatenate([[0], np.cumsum(stream == BOUNDARY)])
        interior = zeros[k - 1:k - 1 + n] - zeros[1:1 + n]  # boundaries among positions 1 .. k-2
        code = code[interior == 0]
    return np.unique(code, return_counts=True)


def _discounts(adjusted: np.ndarray) -> np.ndarray:
    """Modified Kneser-Ney discounts D1, D2, D3+ from the counts of counts."""
    n = np.array([np.count_nonzero(adjusted == i) for i in range(1, 5)], np.float64)
    n = np.maximum(n, 1.0)
    y = n[0] / (n[0] + 2 * n[1])
    d = np.array([1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]])
    return np.clip(d, 0.05, np.arange(1, 4) - 0.05)


def _lookup(codes: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each query in sorted ``codes`` and whether it is there."""
    i = np.searchsorted(codes, query)
    i = np.minimum(i, len(codes) - 1)
    return i, codes[i] == query


class _Order:
    """Build-time table of one order k: entries (k-grams) and their contexts (k-1 symbols)."""

    def __init__(self, codes: np.ndarray, raw: np.ndarray, prob: np.ndarray, gamma: np.ndarray,
                 ctx_codes: np.ndarray, ctx_index: np.ndarray) -> None:
        self.codes, self.raw, self.prob = codes, raw, prob  # entries: uint64, counts, p(w|h)
        self.gamma, self.ctx_codes, self.ctx_index = gamma, ctx_codes, ctx_index  # per context; entry -> context
        self.keep = np.ones(len(codes), bool)
        self.bow = gamma.copy()
        self.uniform = 0.0  # order 1 only: the uniform distribution it interpolates with


def _kneser_ney(stream: np.ndarray, order: int, vocab_size: int, bits: int = BITS) -> list[_Order]:
    """Unpruned interpolated modified Kneser-Ney tables for orders 1 .. ``order`` of ``bits``-bit symbols."""
    grams = [_ngrams(stream, k, bits) for k in range(1, order + 1)]
    mask = np.uint64((1 << bits) - 1)
    tables: list[_Order] = []
    for k in range(1, order + 1):
        codes, raw = grams[k - 1]
        adjusted = raw.astype(np.float64)
        if k < order:
            # Continuation counts: distinct left neighbours, except after <s>, which has none.
            higher = grams[k][0]
            suffix = (higher & np.uint64((1 << (bits * k)) - 1)) | np.uint64(1 << (bits * k))
            uniq, left = np.unique(suffix, return_counts=True)
            i, found = _lookup(uniq, codes)
            starts_bos = (codes >> np.uint64(bits * (k - 1))) & mask == BOUNDARY
            use_cont = found & ~(starts_bos & (k > 1))
            adjusted = np.where(use_cont, left[i], adjusted)
        d = _discounts(adjusted)
        discount = d[np.minimum(adjusted, 3).astype(int) - 1]
        ctx_codes, ctx_index = np.unique(codes >> np.uint64(bits), return_inverse=True)
        total = np.bincount(ctx_index, adjusted)
        mass = np.bincount(ctx_index, discount)
        gamma = mass / total
        if k == 1:
            lower = np.full(len(codes), 1.0 / vocab_size)
        else:
            suffix = (codes & np.uint64((1 << (bits * (k - 1))) - 1)) | np.uint64(1 << (bits * (k - 1)))
            i, found = _lookup(tables[-1].codes, suffix)
            assert found.all(), "every seen k-gram's suffix is a seen (k-1)-gram"
            lower = tables[-1].prob[i]
        prob = (adjusted - discount) / total[ctx_index] + gamma[ctx_index] * lower
        tables.append(_Order(codes, raw, prob, gamma, ctx_codes, ctx_index))
    tables[0].uniform = 1.0 / vocab_size
    return tables


def _backoff_prob(tables: list[_Order], ctx: np.ndarray, length: int, sym: np.ndarray,
                  bits: int) -> np.ndarray:
    """P(sym | ctx) under the (pruned) tables of orders 1 .. length+1, vectorised over queries."""
    if length == 0:
        t = tables[0]
        i, found = _lookup(t.codes, np.uint64(1 << bits) | sym)
        return np.where(found & t.keep[i], t.prob[i], t.gamma[0] * t.uniform)
    t = tables[length]
    i, found = _lookup(t.codes, (ctx << np.uint64(bits)) | sym)
    hit = found & t.keep[i]
    c, cfound = _lookup(t.ctx_codes, ctx)
    bow = np.where(cfound, t.bow[c], 1.0)
    shorter = (ctx & np.uint64((1 << (bits * (length - 1))) - 1)) | np.uint64(1 << (bits * (length - 1)))
    return np.where(hit, t.prob[i], bow * _backoff_prob(tables, shorter, length - 1, sym, bits))


def _prune(tables: list[_Order], threshold: float, bits: int = BITS, first: int = 3) -> None:
    """Drop entries of order >= ``first`` whose weighted log-gain ``count * (log p - log p_backoff)`` is
    below ``threshold``, and renormalise every backoff weight against the pruned lower orders."""
    for k in range(2, len(tables) + 1):
        t = tables[k - 1]
        ctx = t.codes >> np.uint64(bits)
        sym = t.codes & np.uint64((1 << bits) - 1)
        shorter = (ctx & np.uint64((1 << (bits * (k - 2))) - 1)) | np.uint64(1 << (bits * (k - 2)))
        lower = _backoff_prob(tables, shorter, k - 2, sym, bits)
        if k >= first:
            gain = t.raw * (np.log(t.prob) - np.log(t.gamma[t.ctx_index] * lower))
            t.keep = gain >= threshold
        kept_p = np.bincount(t.ctx_index, np.where(t.keep, t.prob, 0.0), len(t.ctx_codes))
        kept_lower = np.bincount(t.ctx_index, np.where(t.keep, lower, 0.0), len(t.ctx_codes))
        t.bow = np.maximum(1 - kept_p, 1e-12) / np.maximum(1 - kept_lower, 1e-9)


def _closed_contexts(tables: list[_Order], bits: int = BITS) -> list[np.ndarray]:
    """Per order, which contexts to store: those with kept entries or a weight other than 1, and
    every context obtained from a stored one by dropping its oldest or newest symbol (what
    ``CharLM.advance`` relies on)."""
    useful = []
    for t in tables:
        has_entries = np.bincount(t.ctx_index[t.keep], minlength=len(t.ctx_codes)) > 0
        useful.append(has_entries | (np.abs(np.log(t.bow)) > 1e-4))
    for m in range(len(tables) - 1, 1, -1):  # contexts of m symbols live in tables[m]
        kept = tables[m].ctx_codes[useful[m]]
        shorter = tables[m - 1].ctx_codes
        for parent in (kept >> np.uint64(bits),
                       (kept & np.uint64((1 << (bits * (m - 1))) - 1)) | np.uint64(1 << (bits * (m - 1)))):
            i, found = _lookup(shorter, parent)
            assert found.all(), "every seen context's prefix and suffix are seen contexts"
            useful[m - 1][i] = True
    useful[0][:] = True
    return useful


def _stored_tables(tables: list[_Order], useful: list[np.ndarray], bits: int, code_types: Sequence[type],
                   count_type: type, symbol_type: type) -> list[dict[str, np.ndarray]]:
    """The kept entries and useful contexts in the stored (query) layout, in the given dtypes
    (``code_types``: one per context length)."""
    stored = []
    for t, use, code_type in zip(tables, useful, code_types):
        ctx_counts = np.bincount(t.ctx_index[t.keep], minlength=len(t.ctx_codes))
        stored.append({
            "codes": t.ctx_codes[use].astype(code_type),
            "logbow": np.log(t.bow[use]).astype(np.float32),
            "counts": ctx_counts[use].astype(count_type),
            "symbols": (t.codes[t.keep] & np.uint64((1 << bits) - 1)).astype(symbol_type),
            "logp": np.log(t.prob[t.keep]).astype(np.float32),
        })
    return stored


def build(lines: Iterable[str], order: int = 10, prune: float = 3.0, vocab: tuple[str, ...] = DEFAULT_VOCAB,
          words: Iterable[str] = ()) -> CharLM:
    """Train a pruned interpolated Kneser-Ney character model on sentences.

    Args:
        lines: training sentences (raw text; normalised here with ``text.normalize``).
        order: n-gram order (context of ``order - 1`` symbols), 2 .. 12.
        prune: weighted-difference threshold (count x nats) for entries of order >= 3; 0 keeps all.
        words: normalised words for the stored word list beside those of ``lines`` (not n-gram text).

    Returns:
        The model, ready to query or ``save``.
    """
    if not 2 <= order <= 12:  # k-gram codes of 5k+1 bits must fit uint64
        raise ValueError(f"LM order must be in [2, 12], got {order}")
    texts = [normalize(line) for line in lines]
    stream = encode_corpus(texts, vocab)
    if len(stream) < 3:
        raise ValueError("LM training text is empty after normalisation; expected sentences of English text")
    tables = _kneser_ney(stream, order, len(vocab))
    _prune(tables, prune)
    useful = _closed_contexts(tables)
    # Contexts of up to 6 symbols (31 bits) fit uint32, which halves the largest arrays.
    code_types = [np.uint32 if BITS * m + 1 <= 32 else np.uint64 for m in range(order)]
    stored = _stored_tables(tables, useful, BITS, code_types, np.uint8, np.uint8)
    return CharLM(order, vocab, stored, frozenset(w for t in texts for w in t.split()) | frozenset(words))


# ---------------------------------------------------------------------------------------------
# Word n-grams


def build_words(lines: Iterable[str], order: int = 3, prune: float = WORD_PRUNE) -> WordLM:
    """Train a pruned interpolated Kneser-Ney word model on sentences (``build``'s estimate over words).

    Args:
        lines: training sentences (raw text; normalised here with ``text.normalize``).
        order: n-gram order, 1 .. 3 for vocabularies of up to 2^20 - 1 words.
        prune: weighted-difference threshold (count x nats) for entries of order >= 2; 0 keeps all.
    """
    texts = [t.split() for t in (normalize(line) for line in lines) if t]
    if not texts:
        raise ValueError("word LM training text is empty after normalisation; expected sentences of English text")
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"word LM order must be an integer >= 1, got {order!r}")
    words = tuple(sorted({w for t in texts for w in t}))
    bits = len(words).bit_length()
    if bits * order + 1 > 64:
        raise ValueError(f"word LM order {order} with {len(words)} words does not fit 64-bit codes "
                         f"({bits} bits per word); expected an order of at most {(63 // bits)}")
    index = {w: i for i, w in enumerate(words, start=1)}
    stream = np.fromiter((i for t in texts for i in (BOUNDARY, *(index[w] for w in t))), np.uint32)
    stream = np.concatenate([stream, [BOUNDARY]]).astype(np.uint32)
    tables = _kneser_ney(stream, order, len(words) + 1, bits)
    _prune(tables, prune, bits, first=2)
    useful = _closed_contexts(tables, bits)
    stored = _stored_tables(tables, useful, bits, [np.uint64] * order, np.uint32, np.uint32)
    return WordLM(order, words, stored)
