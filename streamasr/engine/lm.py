"""Character n-gram language model for CTC prefix beam search.

Interpolated modified Kneser-Ney (Chen & Goodman), pruned with the weighted-difference rule
(Seymore & Rosenfeld) and stored in backoff form: per context, a backoff weight and the
probabilities of the symbols seen after it. Built with numpy from a text file in a few seconds by
:mod:`streamasr.training.lm_build`; this module only loads and scores.

Symbols are the CTC vocabulary ids (1 = space, 2 = apostrophe, 3.. = a-z), with id 0 (the CTC
blank, never a character) standing for the sentence boundary: ``<s>`` in a context, ``</s>`` when
predicted. A context of up to ``order - 1`` symbols is one Python int: a sentinel 1 bit followed by
5 bits per symbol, oldest first, so that ``code >> 5`` drops the newest symbol.

The file (``.npz``) holds, per context length m = 0 .. order-1, the sorted context codes, their
log backoff weights and entry counts, and the entries' symbols and log-probabilities (float16);
and the words of the training text plus any word list given to ``build_lm.py --words``
(newline-separated bytes), which the beam search may hold its hypotheses to
(``DecoderConfig.oov_penalty``).

``WordLM`` is the word n-gram model of the same estimate. ``ContextTable`` and ``Lexicon`` are the
arrays the batched beam search reads them through: the contexts streams visit, and the word lists
as a letter tree.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from streamasr.errors import ModelError
from streamasr.engine.text import DEFAULT_VOCAB, normalize

BITS = 5  # bits per symbol in a context code
BOUNDARY = 0  # <s> in a context, </s> when predicted
FORMAT_VERSION = 1
_CACHE_LIMIT = 100_000  # memo entries (about 200 bytes each) before a memo is cleared
# Word LM pruning (count x nats): keeps 598k of 941k bigrams and 940k of 2.1 M trigrams of the
# bundled text (8.0 MB); 0 (13.9 MB) was 0.0-0.2 WER points better, 10 (2.3 MB) 0.1-0.2 worse.
WORD_PRUNE = 3.0


def default_lm_path() -> Path:
    """The bundled LM (package data, so it works from a wheel as well as a checkout)."""
    return Path(str(resources.files("streamasr") / "models" / "lm.npz"))


class CharLM:
    """A loaded character n-gram model; ``log_probs(state)`` is the one query the decoder makes.

    The instance is shared by every stream. Its only mutable part is a memo of per-context
    distributions, a pure function of the (immutable) tables, so it never changes a result.
    """

    def __init__(self, order: int, vocab: tuple[str, ...], tables: list[dict[str, np.ndarray]],
                 words: frozenset[str] | None = None) -> None:
        if len(tables) != order or len(vocab) > 1 << BITS:
            raise ModelError(f"LM with order {order} has {len(tables)} tables and {len(vocab)} symbols; "
                             f"expected {order} tables and at most {1 << BITS} symbols")
        self.order = order
        self.vocab = vocab
        self.tables = tables
        self.words = words  # training-text words (+ build(words=...)); None in files built before they were stored
        self._prefixes: frozenset[str] | None = None
        _prepare(tables)
        self._full = 1 << (BITS * (order - 1))  # sentinel of a context of order-1 symbols
        uni = tables[0]
        # A symbol never seen in training gets its share of the uniform distribution.
        floor = float(uni["logbow"][0]) if len(uni["codes"]) else 0.0
        unigram = np.full(len(vocab), floor - np.log(len(vocab)), np.float32)
        unigram[uni["symbols"]] = uni["logp"]
        # Memos of pure functions of the tables (each cleared when it grows past _CACHE_LIMIT).
        # Distributions are float32 arrays: 180 bytes each, and indexing gives a Python float.
        self._unigram = array("f", unigram.tobytes())
        self._dists: dict[int, array[float]] = {1: self._unigram}  # state -> log-probs (symbols,)
        self._next: dict[int, int] = {}  # (state << BITS | symbol) -> next state

    @property
    def prefixes(self) -> frozenset[str]:
        """Every non-empty start of a word in ``words`` (the words included), built on first use."""
        if self.words is None:
            raise ModelError("this LM file holds no word list; rebuild it with scripts/build_lm.py to use one")
        if self._prefixes is None:
            self._prefixes = frozenset(w[:i] for w in self.words for i in range(1, len(w) + 1))
        return self._prefixes

    @property
    def start(self) -> int:
        """The state at the start of a sentence: the context ``<s>``."""
        return (1 << BITS) | BOUNDARY

    def advance(self, state: int, symbol: int) -> int:
        """The state after ``symbol``: the longest suffix of the history that the model stores.

        Shorter states than ``order - 1`` symbols give the same distributions (the model has
        nothing longer to say) and are shared by many more prefixes, so the memos hit more often.
        The tables are closed under dropping a context's oldest or newest symbol, which makes
        the longest stored suffix of ``state + symbol`` that of the whole history.
        """
        key = (state << BITS) | symbol
        nxt = self._next.get(key)
        if nxt is None:
            if len(self._next) >= _CACHE_LIMIT:
                self._next.clear()
            code = key if key < self._full << BITS else (key & (self._full - 1)) | self._full
            while code > 1 and self._find(code) < 0:
                code = _suffix(code)
            nxt = self._next[key] = code
        return nxt

    def log_probs(self, state: int) -> array[float]:
        """Natural-log probabilities (float32 (symbols,)) of every symbol (index 0: ``</s>``) after
        context ``state``: the shorter context's, backed off, overwritten with this one's entries."""
        dist = self._dists.get(state)
        if dist is not None:
            return dist
        if len(self._dists) >= _CACHE_LIMIT:
            self._dists = {1: self._unigram}
        dist = self.log_probs(_suffix(state))
        i = self._find(state)
        if i >= 0:
            t = self.tables[(state.bit_length() - 1) // BITS]
            vec = np.frombuffer(dist, np.float32) + t["logbow"][i]
            lo, hi = t["offsets"][i], t["offsets"][i + 1]
            vec[t["symbols"][lo:hi]] = t["logp"][lo:hi]
            dist = array("f", vec.tobytes())
        self._dists[state] = dist
        return dist

    def advance_many(self, states: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """``advance`` for many states at once (int64 arrays)."""
        key = (states.astype(np.int64) << BITS) | symbols.astype(np.int64)
        code = np.where(key < self._full << BITS, key, (key & (self._full - 1)) | self._full)
        todo = np.flatnonzero(code > 1)
        while len(todo):  # drop the oldest symbol until the model stores the context
            c = code[todo]
            stored = self._stored(c)
            todo = todo[~stored]
            code[todo] = _suffixes(code[todo])
            todo = todo[code[todo] > 1]
        return code

    def log_probs_many(self, states: np.ndarray) -> np.ndarray:
        """``log_probs`` of many states at once: float32 (states, symbols), the same numbers."""
        states = states.astype(np.int64)
        out = np.tile(np.frombuffer(self._unigram, np.float32), (len(states), 1))
        lengths = _lengths(states)
        for m in range(1, int(lengths.max(initial=0)) + 1):  # the newest m symbols, shortest first
            ask = np.flatnonzero(lengths >= m)
            sub = (states[ask] & ((1 << (BITS * m)) - 1)) | (1 << (BITS * m))
            t = self.tables[m]
            row = np.minimum(t["codes"].searchsorted(sub), len(t["codes"]) - 1)
            stored = t["codes"][row] == sub
            ask, row = ask[stored], row[stored]
            out[ask] += t["logbow"][row][:, None]
            lo, hi = t["offsets"][row], t["offsets"][row + 1]
            count = hi - lo
            entry = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
            out[np.repeat(ask, count), t["symbols"][entry]] = t["logp"][entry]
        return out

    def _stored(self, codes: np.ndarray) -> np.ndarray:
        """Whether each context code (int64 array) is in the model's tables."""
        lengths = _lengths(codes)
        out = np.zeros(len(codes), bool)
        for m in np.unique(lengths).tolist():
            at = np.flatnonzero(lengths == m)
            t = self.tables[m]["codes"]
            row = np.minimum(t.searchsorted(codes[at].astype(t.dtype)), len(t) - 1)
            out[at] = t[row] == codes[at]
        return out

    def _find(self, code: int) -> int:
        """Row of context ``code`` in its table, -1 if the model does not store it."""
        codes = self.tables[(code.bit_length() - 1) // BITS]["codes"]
        # A scalar of the array's dtype: a Python int would make numpy convert the whole array.
        i = int(codes.searchsorted(codes.dtype.type(code)))
        return i if i < len(codes) and int(codes[i]) == code else -1

    def score(self, text: str) -> float:
        """Natural-log probability of a whole sentence ``<s> normalize(text) </s>``."""
        index = {c: i for i, c in enumerate(self.vocab)}
        state, total = self.start, 0.0
        for c in normalize(text):
            total += self.log_probs(state)[index[c]]
            state = self.advance(state, index[c])
        return total + self.log_probs(state)[BOUNDARY]

    def save(self, path: str | Path) -> None:
        """Write the tables as a compressed ``.npz``."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT_VERSION), "order": np.array(self.order),
            "vocab": np.array(list(self.vocab[1:]))}  # without the blank, which is never stored
        arrays.update(_table_arrays(self.tables))
        if self.words is not None:
            arrays["words"] = np.frombuffer("\n".join(sorted(self.words)).encode("ascii"), np.uint8)
        _write(path, arrays)

    @classmethod
    def load(cls, path: str | Path | None = None) -> CharLM:
        """Load an LM file (the bundled one when ``path`` is None)."""
        path = default_lm_path() if path is None else Path(path)
        if not path.is_file():
            raise ModelError(f"language model file {path} does not exist; expected a streamasr LM (.npz)")
        try:
            with np.load(path) as z:
                if int(z["format"]) != FORMAT_VERSION:
                    raise ModelError(f"{path}: LM format {int(z['format'])}, expected {FORMAT_VERSION}")
                order = int(z["order"])
                vocab = (DEFAULT_VOCAB[0],) + tuple(str(c) for c in z["vocab"])
                tables = _read_tables(z, order)
                words = frozenset(z["words"].tobytes().decode("ascii").split("\n")) if "words" in z.files else None
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"{path} is not a readable streamasr language model: {e}") from e
        return cls(order, vocab, tables, words)


def _suffix(code: int) -> int:
    """The context without its oldest symbol (the empty context, 1, stays itself)."""
    length = (code.bit_length() - 1) // BITS
    if length == 0:
        return code
    return (code & ((1 << (BITS * (length - 1))) - 1)) | (1 << (BITS * (length - 1)))


def _lengths(codes: np.ndarray) -> np.ndarray:
    """Symbols in each context code (int64 array): the sentinel bit's position / BITS."""
    return (np.frexp(codes.astype(np.float64))[1].astype(np.int64) - 1) // BITS


def _suffixes(codes: np.ndarray) -> np.ndarray:
    """``_suffix`` of each code (int64 array, each of at least one symbol)."""
    top = np.left_shift(np.int64(1), BITS * (_lengths(codes) - 1))
    return (codes & (top - 1)) | top


def _prepare(tables: list[dict[str, np.ndarray]]) -> None:
    """Per table, each context's first entry (``offsets``) and float32 values for the queries."""
    for t in tables:
        t["offsets"] = np.concatenate([[0], np.cumsum(t["counts"], dtype=np.int64)])
        t["logp"] = t["logp"].astype(np.float32)
        t["logbow"] = t["logbow"].astype(np.float32)


_TABLE_KEYS = ("codes", "logbow", "counts", "symbols", "logp")


def _table_arrays(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The tables as ``.npz`` arrays ``KEY{m}``, log values as float16."""
    return {f"{k}{m}": t[k].astype(np.float16) if k in ("logbow", "logp") else t[k]
            for m, t in enumerate(tables) for k in _TABLE_KEYS}


def _read_tables(z: Any, order: int) -> list[dict[str, np.ndarray]]:
    return [{k: z[f"{k}{m}"] for k in _TABLE_KEYS} for m in range(order)]


def _write(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def default_word_lm_path() -> Path:
    """The bundled word LM (package data)."""
    return Path(str(resources.files("streamasr") / "models" / "words.npz"))


class WordLM:
    """A loaded word n-gram model: ``log_probs_ids``, asked by the beam search at each word end
    (``log_prob``: one query by words).

    The character LM sees about two words back and prices every letter; this one prices whole words
    after the previous ``order - 1``, so a prefix whose words are rarely said together loses to one
    whose words are ("your call cannot" beside "your called cannot"). Same Kneser-Ney estimate and
    backoff tables as ``CharLM``, over word ids (1..V; 0 is the sentence boundary). A word outside
    its vocabulary gets the unigram floor (its share of the uniform distribution). Immutable after
    loading, shared by every stream.
    """

    def __init__(self, order: int, words: tuple[str, ...], tables: list[dict[str, np.ndarray]]) -> None:
        self.bits = max(1, len(words).bit_length())
        if len(tables) != order or not 1 <= order or self.bits * order + 1 > 64:
            raise ModelError(f"word LM with order {order}, {len(tables)} tables and {len(words)} words; expected "
                             f"{order} tables and (order x {self.bits} bits + 1) <= 64")
        self.order = order
        self.words = words
        self.index = {w: i for i, w in enumerate(words, start=1)}
        self.tables = tables
        _prepare(tables)
        for t in tables:  # (context row << 32 | symbol), sorted: every entry found by one search
            rows = np.repeat(np.arange(len(t["codes"]), dtype=np.uint64), t["counts"].astype(np.int64))
            t["entry_keys"] = (rows << np.uint64(32)) | t["symbols"].astype(np.uint64)
        self._uniform = -float(np.log(len(words) + 1))  # what the unigrams interpolate with

    def log_prob(self, history: Iterable[str], word: str | None) -> float:
        """Natural-log P(word | the last ``order - 1`` words of ``history``); ``word`` None is ``</s>``.

        ``history`` is the sentence so far, without ``<s>`` (it is added here)."""
        tail = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        ids = [self.index.get(w, -1) for w in tail]
        if len(ids) < self.order - 1:
            ids = [BOUNDARY] + ids  # the sentence start
        context = np.array([[-2] * (self.order - 1 - len(ids)) + ids], np.int64).reshape(1, self.order - 1)
        symbol = BOUNDARY if word is None else self.index.get(word, -1)
        return float(self.log_probs_ids(context, np.array([symbol]))[0])

    def log_probs_ids(self, context: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """``log_prob`` by word ids, for many queries at once: ``context`` int (queries, order - 1),
        the ids of the words before, oldest first, ``BOUNDARY`` for ``<s>`` and a sentence start's
        missing words as -2 on the left; ``symbols`` int (queries,), ``BOUNDARY`` for ``</s>``; -1
        stands for a word outside the vocabulary."""
        total = np.zeros(len(symbols))
        done = np.zeros(len(symbols), bool)
        width = context.shape[1]
        symbols = symbols.astype(np.int64)
        for m in range(width, -1, -1):  # the longest context first, backing off
            ctx = context[:, width - m:].astype(np.int64)
            ask = np.flatnonzero(~done & (ctx >= 0).all(1))  # no unknown word, no missing one
            if not len(ask):
                continue
            code = np.ones(len(ask), np.uint64)
            for column in ctx[ask].T:
                code = (code << np.uint64(self.bits)) | column.astype(np.uint64)
            t = self.tables[m]
            row = np.minimum(t["codes"].searchsorted(code), len(t["codes"]) - 1)
            stored = t["codes"][row] == code
            ask, row = ask[stored], row[stored]  # a context not stored has backoff weight 1
            sym = symbols[ask]
            j = np.minimum(t["entry_keys"].searchsorted((row.astype(np.uint64) << np.uint64(32)) |
                                                        np.maximum(sym, 0).astype(np.uint64)), len(t["symbols"]) - 1)
            hit = (sym >= 0) & (j < t["offsets"][row + 1]) & (t["symbols"][j] == sym)
            total[ask[hit]] += t["logp"][j[hit]]
            done[ask[hit]] = True
            total[ask[~hit]] += t["logbow"][row[~hit]]
        total[~done] += self._uniform  # not even a unigram: the uniform share
        return total

    def score(self, text: str) -> float:
        """Natural-log probability of a whole sentence ``<s> normalize(text) </s>``."""
        words = normalize(text).split()
        return sum(self.log_prob(words[:i], w) for i, w in enumerate(words)) + self.log_prob(words, None)

    def save(self, path: str | Path) -> None:
        """Write the tables and the vocabulary as a compressed ``.npz``."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT_VERSION), "kind": np.array("words"), "order": np.array(self.order),
            "words": np.frombuffer("\n".join(self.words).encode("ascii"), np.uint8)}
        arrays.update(_table_arrays(self.tables))
        _write(path, arrays)

    @classmethod
    def load(cls, path: str | Path | None = None) -> WordLM:
        """Load a word LM file (the bundled one when ``path`` is None)."""
        path = default_word_lm_path() if path is None else Path(path)
        if not path.is_file():
            raise ModelError(f"word LM file {path} does not exist; expected a streamasr word LM (.npz) "
                             f"from scripts/build_lm.py --word-out")
        try:
            with np.load(path) as z:
                if "kind" not in z.files or str(z["kind"]) != "words" or int(z["format"]) != FORMAT_VERSION:
                    raise ModelError(f"{path} is not a streamasr word LM (format {FORMAT_VERSION}); "
                                     f"a character LM goes to DecoderConfig.lm, a word LM to word_lm")
                order = int(z["order"])
                words = tuple(z["words"].tobytes().decode("ascii").split("\n"))
                tables = _read_tables(z, order)
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"{path} is not a readable streamasr word LM: {e}") from e
        return cls(order, words, tables)


_EPOCHS = itertools.count(1)  # ContextTable epochs, unique in the process


class ContextTable:
    """The character LM as arrays, for the contexts the streams have visited: row r holds context
    ``codes[r]``'s log-probabilities (the LM's float32 values) and the row of the context after
    each symbol (-1: not looked up yet). It grows as streams visit contexts and is emptied (a new
    epoch) between batches once it passes ``limit`` rows (~240 bytes each: 240 MB at the default
    limit). A context new to the table costs ~10 us to look up, and streams keep meeting new ones
    (a dozen streams, ~15,000 a second), so a table that is emptied less often is cheaper. A pure
    function of the LM, so it never changes a result."""

    def __init__(self, lm: CharLM, limit: int = 1_000_000) -> None:
        self.lm = lm
        self.limit = limit
        self.width = len(lm.vocab)
        self._reset()

    def _reset(self) -> None:
        self.epoch = next(_EPOCHS)
        self.index: dict[int, int] = {}  # context code -> row
        self.codes = np.zeros(4096, np.int64)
        self.logp = np.zeros((4096, self.width), np.float32)
        self.next = np.full((4096, self.width), -1, np.int32)

    def trim(self) -> None:
        """Start a new epoch if the table has grown past its limit (only between batches: rows in use stay valid)."""
        if len(self.index) > self.limit:
            self._reset()

    def row(self, code: int) -> int:
        return int(self.rows(np.array([code], np.int64))[0])

    def rows(self, codes: np.ndarray) -> np.ndarray:
        """The rows of context ``codes``, added (all at once) where the table lacks them."""
        rows = np.fromiter((self.index.get(c, -1) for c in codes.tolist()), np.int32, len(codes))
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            new, where = np.unique(codes[missing], return_inverse=True)
            first = len(self.index)
            if first + len(new) > len(self.codes):  # grow by doubling
                grow = max(len(self.codes), len(new))
                self.codes = np.concatenate([self.codes, np.zeros(grow, np.int64)])
                self.logp = np.concatenate([self.logp, np.zeros((grow, self.width), np.float32)])
                self.next = np.concatenate([self.next, np.full((grow, self.width), -1, np.int32)])
            added = np.arange(first, first + len(new), dtype=np.int32)
            self.codes[added] = new
            self.logp[added] = self.lm.log_probs_many(new)
            self.index.update(zip(new.tolist(), added.tolist()))
            rows[missing] = added[where]
        return rows

    def advance(self, rows: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """The rows of the contexts after ``symbols`` (``CharLM.advance``), row by row."""
        out = self.next[rows, symbols]
        miss = np.flatnonzero(out < 0)  # contexts not visited yet: few once streams run
        if len(miss):
            r, c = rows[miss], symbols[miss]
            nxt = self.rows(self.lm.advance_many(self.codes[r], c))
            self.next[r, c] = nxt
            out[miss] = nxt
        return out


class Lexicon:
    """The word lists as a letter tree: node 0 is the empty word, ``child[node, id]`` the node one
    character on (-1: no listed word goes on so), and the last node (index -1) stands for every
    word outside the tree. ``prefix``: the node starts a word of the character LM's list
    (``CharLM.prefixes``); ``word``: it is one; ``word_id``: its id in the word LM (-1: none)."""

    def __init__(self, chars: tuple[str, ...], lm: CharLM | None, words: WordLM | None) -> None:
        """``lm``: the character LM whose word list the OOV penalty uses (None: no list)."""
        index = {c: i for i, c in enumerate(chars) if c}
        listed = lm.words if lm is not None else None
        starts = lm.prefixes if lm is not None else frozenset()
        spelt = set(starts)
        if words is not None:
            spelt.update(w[:i] for w in words.words for i in range(1, len(w) + 1))
        prefixes = sorted(p for p in spelt if all(c in index for c in p))
        node = dict(zip(prefixes, range(1, len(prefixes) + 1)))
        node[""] = 0
        size = len(prefixes) + 2
        self.child = np.full((size, len(chars)), -1, np.int32)
        if prefixes:
            parents = np.fromiter((node[p[:-1]] for p in prefixes), np.int64, len(prefixes))
            symbols = np.fromiter((index[p[-1]] for p in prefixes), np.int64, len(prefixes))
            self.child[parents, symbols] = np.arange(1, len(prefixes) + 1, dtype=np.int32)
        self.prefix = np.zeros(size, bool)
        self.word = np.zeros(size, bool)
        self.word_id = np.full(size, -1, np.int32)
        if listed is not None:
            self.prefix[[node[p] for p in starts if p in node]] = True
            self.word[[node[w] for w in listed if w in node]] = True
        if words is not None:
            known = [(node[w], i) for w, i in words.index.items() if w in node]
            self.word_id[[n for n, _ in known]] = [i for _, i in known]
