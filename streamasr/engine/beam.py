"""CTC prefix beam search with character-LM and word-LM shallow fusion, batched across streams.

One call advances the beam sets of many streams by a frame together: every prefix of every
stream and every candidate character are scored at once as arrays, so a worker with hundreds of
streams pays numpy's per-call cost once per frame rather than once per stream, and Python's
per-prefix cost not at all. A stream's beam set (``Beams``) is plain data that the stream state
carries from chunk to chunk, and each stream's numbers depend on its own frames only, so decoding
a signal in chunks, alone or among other streams, gives exactly what decoding it whole gives.
Each prefix keeps the tokens of its best path (character, frame of its spike, posterior) in a
tree shared by the prefixes, so word times and confidences come out as with greedy decoding.

Scores are natural logs: a prefix's score is its CTC probability (summed over the alignments
that end in blank and in a character) plus ``lm_weight`` x its LM log-probability plus
``insertion_bonus`` per letter or apostrophe and ``space_bonus`` per space between words, minus
``oov_penalty`` for each word that is not in the LM's word list (paid on the character that
leaves the list's word starts, or on the space or end that closes a word start that is not
itself a word, so the beam drops such a prefix early), plus ``word_weight`` x the word LM's
log-probability of each word, paid on the space or end that closes it (and of the sentence end).

The language models become arrays where the search needs them: the character LM's distributions
and next contexts in a table that grows with the contexts the streams visit (``ContextTable``), the
word lists in a letter tree (``Lexicon``); prefixes are told apart by a 64-bit hash of their
text (with the hash of the text's parent as a second check).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple, overload

import numpy as np

from streamasr.engine.ctc import Token
from streamasr.engine.hotwords import Grammar, Hotwords
from streamasr.engine.lm import BOUNDARY, CharLM, ContextTable, Lexicon, WordLM
from streamasr.engine.text import Tokenizer
from streamasr.errors import ModelError

NEG_INF = float("-inf")
MAX_CANDIDATES = 16  # most characters tried per frame (the likeliest ones above min_log_prob)
# Nats per word outside the LM's word list unless DecoderConfig.oov_penalty says otherwise: 2 beat 0
# on all three evaluation sets once the LM text held modern words (README model card).
DEFAULT_OOV_PENALTY = 2.0
_HASH = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the text hash (key' = key x _HASH + id + 1)
_NONE = -2  # an empty slot of a word history
_DEAD = -1e300  # the rank of a prefix of score -inf
# Odd multipliers of the per-row hash tables' slots (one per level)
_SLOT_HASH = (np.uint64(0xD6E8FEB86659FD93), np.uint64(0xA0761D6478BD642F), np.uint64(0xE7037ED1A0B428DB))
_ABSENT = np.uint64(2**64 - 1)  # the key of a slot that holds no prefix, while searching
_GENERATIONS = itertools.count(1)  # token-tree numberings, unique in the process
_COMPACT_NODES = 4096  # a stream's token tree is compacted once it holds more nodes (and beam_size x 16)


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


class Tree(NamedTuple):
    """The tokens of a beam set's prefixes, shared where prefixes share a past: node i is one
    emitted character; a prefix's tokens are its ``tip`` node and that node's ancestors."""

    parent: np.ndarray  # int32 (nodes,): the previous token's node, -1 for a prefix's first
    char: np.ndarray  # int16 (nodes,): vocabulary id
    frame: np.ndarray  # int32 (nodes,): model frame of the character's spike
    prob: np.ndarray  # float64 (nodes,): its posterior there


class Beam(NamedTuple):
    """One prefix, as plain Python values (``Beams[i]``)."""

    text: str  # the collapsed characters so far (spaces included): the prefix's identity
    tokens: tuple[Token, ...]  # the characters of its best path, with spike frames and posteriors
    blank: float  # log P(prefix, alignment ends in blank)
    nonblank: float  # log P(prefix, alignment ends in its last character)
    lm: float  # the LM terms and bonuses so far, in nats
    lm_state: int  # character LM context (``CharLM.advance``); 0 without an LM
    last: int  # id of the last character emitted (0: none), so a repeat collapses

    @property
    def score(self) -> float:
        return float(np.logaddexp(self.blank, self.nonblank)) + self.lm


@dataclass(frozen=True, eq=False)
class Beams:
    """One stream's beam set: its prefixes' numbers as arrays (row 0 the best), plain data that
    the stream state carries from chunk to chunk."""

    key: np.ndarray  # uint64 (n,): hash of the prefix's text, its identity when paths merge
    pkey: np.ndarray  # uint64 (n,): hash of the text without its last character (a second check)
    blank: np.ndarray  # float64 (n,): log P(prefix, alignment ends in blank)
    nonblank: np.ndarray  # float64 (n,): log P(prefix, alignment ends in its last character)
    lm: np.ndarray  # float64 (n,): lm_weight x LM log-prob + bonuses - OOV penalties + word LM terms, nats
    lm_code: np.ndarray  # int64 (n,): character LM context (CharLM.advance); 0 without an LM
    lm_open: np.ndarray  # int64 (n,): that context before a trailing space (the sentence end replaces the space)
    last: np.ndarray  # int64 (n,): id of the last character emitted (0: none), so a repeat collapses
    free: np.ndarray  # bool (n,): the text is empty or ends in a space (another space changes no word)
    word: np.ndarray  # int32 (n,): lexicon node of the word being spelled (0: none yet, -1: outside the lexicon)
    history: np.ndarray  # int32 (n, word LM order - 1): word LM ids of the words before (-1 unknown, -2 none)
    tip: np.ndarray  # int32 (n,): node of the prefix's last token in ``tree`` (-1: no token yet)
    speech: np.ndarray  # int32 (n,): frame of its last non-space character (-1: none), for endpointing
    hot: np.ndarray  # int32 (n,): node in the stream's hotword tree (0: not spelling a hotword)
    hot_gain: np.ndarray  # float64 (n,): what the hotword being spelt has gained so far (given back if it breaks off)
    grammar: np.ndarray  # int32 (n,): state in the stream's phrase list automaton (0 without one)
    tree: Tree
    chars: tuple[str, ...] = field(repr=False)  # id -> character, to spell texts
    lm_rows: np.ndarray | None = field(default=None, repr=False)  # the decoder's LM-cache rows of lm_code
    lm_epoch: int = 0  # the cache epoch those rows belong to (another decoder's or an old epoch: looked up again)
    # Which numbering ``tree`` has: node ids stay as they are from step to step (new tokens get new
    # ids) until the tree is compacted, which gives it a new generation.
    generation: int = 0

    def __len__(self) -> int:
        return len(self.key)

    @overload
    def __getitem__(self, i: int) -> Beam: ...

    @overload
    def __getitem__(self, i: slice) -> list[Beam]: ...

    def __getitem__(self, i: int | slice) -> Beam | list[Beam]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        tokens = self.tokens(i)
        return Beam("".join(self.chars[t.id] for t in tokens), tokens, float(self.blank[i]),
                    float(self.nonblank[i]), float(self.lm[i]), int(self.lm_code[i]), int(self.last[i]))

    def __iter__(self) -> Iterator[Beam]:
        return (self[i] for i in range(len(self)))

    def tokens(self, i: int, known: tuple[Beams, tuple[Token, ...]] | None = None) -> tuple[Token, ...]:
        """Prefix ``i``'s tokens, oldest first.

        ``known``: an earlier beam set of this stream and its best prefix's tokens: when prefix
        ``i`` extends that prefix (its tree has the same numbering), only its new tokens are read.
        """
        char, frame, prob = self.tree.char, self.tree.frame, self.tree.prob
        make = tuple.__new__  # (a NamedTuple's own constructor costs twice as much, per token of every partial)
        node = int(self.tip[i])
        if known is not None and known[0].generation == self.generation and len(known[0]):
            mark, parent, chain = int(known[0].tip[0]), self.tree.parent, []
            while node > mark:  # ancestors have smaller ids
                chain.append(node)
                node = int(parent[node])
            if node == mark:
                chain.reverse()
                return known[1] + tuple([make(Token, t) for t in zip(char[chain].tolist(), frame[chain].tolist(),
                                                                      prob[chain].tolist())])
            node = int(self.tip[i])
        parents = self.tree.parent.tolist()
        chain = []
        while node >= 0:
            chain.append(node)
            node = parents[node]
        chain.reverse()
        return tuple([make(Token, t) for t in zip(char[chain].tolist(), frame[chain].tolist(), prob[chain].tolist())])


def by_length(log_probs: Sequence[np.ndarray], vocabulary: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Streams' log-probabilities as one float64 array (streams, most frames, vocabulary), longest
    first, so that the streams still going at any frame are a prefix of the rows (``step``'s batch).

    Returns: the streams' order, each row's frame count and the padded array."""
    order = sorted(range(len(log_probs)), key=lambda i: -len(log_probs[i]))
    lengths = np.array([len(log_probs[i]) for i in order], np.int64)
    padded = np.zeros((len(order), int(lengths.max(initial=0)), vocabulary))
    for row, i in enumerate(order):
        if len(log_probs[i]):
            padded[row, :len(log_probs[i])] = log_probs[i]
    return order, lengths, padded


def _side_by_side(per_stream: Sequence[object | None], children: list[np.ndarray], first: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One transition table from the streams' own (``children``: of the streams that have one, in
    order), after the row ``first`` for the streams without; and each stream's offset into it."""
    bases = np.cumsum([1] + [len(c) for c in children[:-1]])
    table = np.concatenate([first] + [np.where(c >= 0, c + b, -1) for c, b in zip(children, bases.tolist())])
    base = iter(bases.tolist())
    return table, np.array([next(base) if x is not None else 0 for x in per_stream], np.int64)


class _Batch:
    """The beam sets of many streams, padded to one width: arrays (streams, width) whose row s holds
    stream s's prefixes best first, the first ``n[s]`` of them live; their token trees concatenated
    into one (``node_row``: each node's stream), new tokens appended as frames go."""

    FIELDS = ("key", "pkey", "blank", "nonblank", "lm", "lm_code", "lm_open", "last", "free", "word",
              "history", "tip", "speech", "hot", "hot_gain", "grammar", "lm_rows")
    # (streams, width[, ...]) each: the ``Beams`` fields of the same names, padded
    key: np.ndarray
    pkey: np.ndarray
    blank: np.ndarray
    nonblank: np.ndarray
    lm: np.ndarray
    lm_code: np.ndarray
    lm_open: np.ndarray
    last: np.ndarray
    free: np.ndarray
    word: np.ndarray
    history: np.ndarray
    tip: np.ndarray
    speech: np.ndarray
    hot: np.ndarray
    hot_gain: np.ndarray
    grammar: np.ndarray
    lm_rows: np.ndarray
    # the streams' hotword trees and phrase-list automata, side by side (when any stream has one)
    hot_child: np.ndarray
    hot_bonus: np.ndarray
    hot_complete: np.ndarray
    hot_root: np.ndarray
    grammar_child: np.ndarray
    grammar_cost: np.ndarray
    grammar_root: np.ndarray

    def __init__(self, dec: BeamDecoder, sets: Sequence[Beams], hotwords: Sequence[Hotwords | None],
                 grammars: Sequence[Grammar | None]) -> None:
        self.n = np.array([len(b) for b in sets], np.int64)
        # The streams' phrase-list automata side by side, after a state 0 that allows everything (the
        # streams without one stay there), and their hotword trees, after a root of no hotword; a
        # prefix's state or node stays the stream's own, its row's root added to look it up.
        used = [g for g in grammars if g is not None]
        self.has_grammar = bool(used)
        if used:
            self.grammar_child, self.grammar_root = _side_by_side(
                grammars, [g.child for g in used], np.zeros((1, len(dec.chars)), np.int32))
            self.grammar_cost = np.concatenate([np.zeros((1, len(dec.chars)))] + [g.cost for g in used])
        lists = [h for h in hotwords if h is not None]
        self.has_hot = bool(lists)
        if lists:
            self.hot_child, self.hot_root = _side_by_side(
                hotwords, [h.child for h in lists], np.full((1, len(dec.chars)), -1, np.int32))
            self.hot_bonus = np.concatenate([np.zeros(1)] + [h.bonus for h in lists])
            self.hot_complete = np.concatenate([np.zeros(1, bool)] + [h.complete for h in lists])
        width = int(self.n.max())
        sizes = np.array([len(b.tree.parent) for b in sets], np.int64)
        base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
        table = dec._table
        parts: list[np.ndarray]
        for name in self.FIELDS:
            if name == "lm_rows":  # rows of another decoder's table or an old epoch are looked up again
                parts = [b.lm_rows if b.lm_rows is not None and (table is None or b.lm_epoch == table.epoch)
                         else table.rows(b.lm_code) if table is not None else np.zeros(len(b), np.int32)
                         for b in sets]
            elif name == "tip":
                parts = [np.where(b.tip >= 0, b.tip + o, -1) for b, o in zip(sets, base.tolist())]
            else:
                parts = [getattr(b, name) for b in sets]
            sample = parts[0]
            out = np.zeros((len(sets), width) + sample.shape[1:], sample.dtype)
            for s, part in enumerate(parts):
                out[s, :len(part)] = part
            setattr(self, name, out)
        trees = [b.tree for b in sets]
        parent = np.concatenate([np.where(t.parent >= 0, t.parent + o, -1) for t, o in zip(trees, base.tolist())])
        self.tree = [parent.astype(np.int32), np.concatenate([t.char for t in trees]),
                     np.concatenate([t.frame for t in trees]), np.concatenate([t.prob for t in trees])]
        self.node_row = np.repeat(np.arange(len(sets), dtype=np.int32), sizes)
        self.size = int(sizes.sum())  # nodes in use (the arrays may be longer)
        self.chars = sets[0].chars
        self.generation = [b.generation for b in sets]

    @property
    def width(self) -> int:
        return int(self.key.shape[1])

    def add_nodes(self, rows: np.ndarray, parent: np.ndarray, char: np.ndarray, frame: np.ndarray,
                  prob: np.ndarray) -> np.ndarray:
        """Append tokens; returns their node ids."""
        count = len(rows)
        if self.size + count > len(self.tree[0]):
            grow = max(self.size + count, 2 * len(self.tree[0]), 1024) - len(self.tree[0])
            self.tree = [np.concatenate([a, np.zeros(grow, a.dtype)]) for a in self.tree]
            self.node_row = np.concatenate([self.node_row, np.zeros(grow, np.int32)])
        ids = np.arange(self.size, self.size + count, dtype=np.int32)
        for array, values in zip(self.tree, (parent, char, frame, prob)):
            array[ids] = values
        self.node_row[ids] = rows
        self.size += count
        return ids

    def put(self, rows: int, values: dict[str, np.ndarray], n: np.ndarray) -> None:
        """Rows ``[:rows]`` become ``values`` (arrays (rows, width')), ``n`` live each."""
        width = next(iter(values.values())).shape[1]
        if width > self.width:
            for name in self.FIELDS:
                a = getattr(self, name)
                pad = np.zeros((a.shape[0], width - a.shape[1]) + a.shape[2:], a.dtype)
                setattr(self, name, np.concatenate([a, pad], axis=1))
        for name, v in values.items():
            getattr(self, name)[:rows, :width] = v
        self.n[:rows] = n

    def row(self, s: int) -> Beams:
        """Stream ``s``'s beam set (views; its tree is the whole batch's)."""
        k = int(self.n[s])
        tree = Tree(*(a[:self.size] for a in self.tree))
        return Beams(**{name: getattr(self, name)[s, :k] for name in self.FIELDS if name != "lm_rows"},
                     tree=tree, chars=self.chars, lm_rows=self.lm_rows[s, :k])

    def set_row(self, s: int, beams: Beams) -> None:
        """Stream ``s`` starts over from ``beams`` (one prefix with no tokens, as ``initial`` gives)."""
        k = len(beams)
        for name in self.FIELDS:
            getattr(self, name)[s, :k] = getattr(beams, name) if name != "tip" else -1
        self.n[s] = k
        self.generation[s] = -1  # its tree is compacted (to nothing) at the split

    def split(self, epoch: int, limit: int) -> list[Beams]:
        """Every stream's beam set, each with its own tree: the tokens it had and the new ones, or,
        once it holds more than ``limit`` nodes, only those its prefixes still use."""
        parent = self.tree[0][:self.size]
        count_all = np.bincount(self.node_row[:self.size], minlength=len(self.n))
        compact = (count_all > limit) | (np.array(self.generation) < 0)
        keep = ~compact[self.node_row[:self.size]]
        live = (np.arange(self.width)[None, :] < self.n[:, None]) & compact[:, None]
        frontier = np.unique(self.tip[live])
        frontier = frontier[frontier >= 0]
        while len(frontier):  # mark the tips and their ancestors, stopping where paths join
            keep[frontier] = True
            up = parent[frontier]
            up = up[up >= 0]
            frontier = np.unique(up[~keep[up]])
        kept = np.flatnonzero(keep)
        rows = self.node_row[kept]
        order = np.argsort(rows, kind="stable")  # by stream, in creation order (a parent before its child)
        kept, rows = kept[order], rows[order]
        counts = np.bincount(rows, minlength=len(self.n))
        starts = np.concatenate([[0], np.cumsum(counts)])
        new_id = np.full(self.size + 1, -1, np.int32)  # the last entry maps -1 to -1
        new_id[kept] = np.arange(len(kept)) - starts[rows]
        tree = [new_id[parent[kept]]] + [a[kept] for a in self.tree[1:]]
        tips = new_id[self.tip]
        out = []
        for s in range(len(self.n)):
            k, lo, hi = int(self.n[s]), int(starts[s]), int(starts[s + 1])
            fields = {name: getattr(self, name)[s, :k].copy() for name in self.FIELDS if name not in ("tip", "lm_rows")}
            out.append(Beams(**fields, tip=tips[s, :k].copy(), tree=Tree(*(a[lo:hi] for a in tree)),
                             chars=self.chars, lm_rows=self.lm_rows[s, :k].copy(), lm_epoch=epoch,
                             generation=next(_GENERATIONS) if compact[s] else self.generation[s]))
        return out


class BeamDecoder:
    """The shared part of beam search: config, LMs (as arrays where the search needs them) and alphabet.

    Its LM table is a memo of pure functions; a lock keeps it whole where threads share the decoder.
    """

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
        if cfg.oov_penalty is None:  # automatic: wherever the LM in use holds a word list
            has_words = self.lm is not None and self.lm.words is not None
            self.oov_penalty = DEFAULT_OOV_PENALTY if has_words else 0.0
        else:
            self.oov_penalty = cfg.oov_penalty
        if self.oov_penalty > 0 and (lm is None or lm.words is None):
            raise ModelError(f"oov_penalty {cfg.oov_penalty} needs an LM file with a word list "
                             f"(scripts/build_lm.py writes one; or set the penalty to 0); "
                             f"got {'no LM' if lm is None else 'an LM without one'}")
        self._listed = self.oov_penalty > 0
        self._lexicon = (Lexicon(self.chars, lm if self._listed else None, self.words)
                         if self._listed or self.words is not None else None)
        self._table = ContextTable(self.lm) if self.lm is not None else None
        self._history = self.words.order - 1 if self.words is not None else 0
        self._best_bonus = max(cfg.insertion_bonus, cfg.space_bonus, 0.0)  # the LM terms are never positive
        self._lock = threading.Lock()

    def initial(self, last: int = 0, blank: float = 0.0, nonblank: float = NEG_INF) -> Beams:
        """The beam set at a segment start: the empty prefix, with the LMs at the sentence start.

        Args:
            last, blank, nonblank: carried over from the previous segment's chosen prefix, so that
                a character still sounding across the segment border is not emitted twice.
        """
        history = np.full((1, self._history), _NONE, np.int32)
        if self._history:
            history[0, -1] = BOUNDARY
        rows = np.zeros(1, np.int32)
        with self._lock:
            epoch = 0
            if self._table is not None:
                rows[0], epoch = self._table.row(self._start), self._table.epoch
        start = np.full(1, self._start, np.int64)
        return Beams(key=np.zeros(1, np.uint64), pkey=np.zeros(1, np.uint64), blank=np.full(1, blank),
                     nonblank=np.full(1, nonblank), lm=np.zeros(1), lm_code=start, lm_open=start.copy(),
                     last=np.full(1, last, np.int64), free=np.ones(1, bool), word=np.zeros(1, np.int32),
                     history=history, tip=np.full(1, -1, np.int32), speech=np.full(1, -1, np.int32),
                     hot=np.zeros(1, np.int32), hot_gain=np.zeros(1), grammar=np.zeros(1, np.int32),
                     tree=Tree(np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int32), np.zeros(0)),
                     chars=self.chars, lm_rows=rows, lm_epoch=epoch, generation=next(_GENERATIONS))

    def batch(self, sets: Sequence[Beams], hotwords: Sequence[Hotwords | None] | None = None,
              grammars: Sequence[Grammar | None] | None = None) -> _Batch:
        """Many streams' beam sets as one working set for ``step`` (``split`` gives them back);
        ``hotwords``, ``grammars``: each stream's hotwords and phrase list (None: none)."""
        with self._lock:
            if self._table is not None:
                self._table.trim()
            none = [None] * len(sets)
            return _Batch(self, sets, hotwords if hotwords is not None else none,
                          grammars if grammars is not None else none)

    def split(self, batch: _Batch) -> list[Beams]:
        return batch.split(self._table.epoch if self._table is not None else 0,
                           max(_COMPACT_NODES, 16 * self.cfg.beam_size))

    def advance(self, beams: Beams, log_probs: Sequence[float] | np.ndarray, frame: int,
                hotwords: Hotwords | None = None, grammar: Grammar | None = None) -> Beams:
        """Extend one stream's beam set by one frame (``step`` with a batch of one)."""
        batch = self.batch([beams], [hotwords], [grammar])
        self.step(batch, np.asarray(log_probs, np.float64)[None], np.array([frame]))
        return self.split(batch)[0]

    def step(self, batch: _Batch, log_probs: np.ndarray, frames: np.ndarray) -> None:
        """Extend the beam sets of the batch's first ``len(log_probs)`` streams by one frame each.

        Args:
            log_probs: float64 (streams, vocabulary) CTC log-posteriors (id 0: blank), a row per stream.
            frames: each stream's absolute frame index, recorded in new tokens.
        """
        with self._lock:
            self._step(batch, log_probs, frames)

    def _step(self, bt: _Batch, lp: np.ndarray, frames: np.ndarray) -> None:
        cfg, m = self.cfg, len(lp)
        width = bt.width
        n = bt.n[:m]
        live = np.arange(width)[None, :] < n[:, None]
        blank, nonblank, lmv, last = bt.blank[:m], bt.nonblank[:m], bt.lm[:m], bt.last[:m]
        total = np.logaddexp(blank, nonblank)
        stay_b = total + lp[:, :1]
        stay_nb = np.where(last > 0, nonblank + np.take_along_axis(lp, last, 1), NEG_INF)
        path = np.logaddexp(stay_b, stay_nb)  # every prefix stays (blank, or its last character repeated)
        # The beam_size-th best staying prefix bounds what survives: an extension scoring below it
        # can only lose, so it is dropped before any LM work (beam pruning).
        floor = np.where(n >= cfg.beam_size, np.min(np.where(live, path + lmv, np.inf), axis=1), NEG_INF)
        # Candidate characters: those reaching min_log_prob, at most MAX_CANDIDATES, likeliest first.
        ok = lp[:, 1:] >= cfg.min_log_prob
        tried = ok.sum(1)
        k = min(int(tried.max()), MAX_CANDIDATES)
        order = np.argsort(np.where(ok, -lp[:, 1:], np.inf), axis=1, kind="stable")[:, :k]
        few = tried <= MAX_CANDIDATES  # all of them, tried in id order (else the likeliest first)
        order[few] = np.sort(order[few], axis=1)
        cand = order + 1
        cand_ok = np.take_along_axis(ok, order, 1)
        cand_lp = np.take_along_axis(lp, cand, 1)
        # After the same character, only an alignment that passed through a blank extends.
        p = np.where(cand[:, None, :] == last[:, :, None], blank[:, :, None], total[:, :, None]) + cand_lp[:, None, :]
        best_bonus = self._best_bonus + (float(bt.hot_bonus.max()) if bt.has_hot else 0.0)
        go = live[:, :, None] & cand_ok[:, None, :] & (p + (lmv + best_bonus)[:, :, None] >= floor[:, None, None])
        s, w, j = np.nonzero(go)  # the extensions worth scoring, stream by stream
        c, pe = cand[s, j], p[s, w, j]
        if bt.has_grammar:  # a stream with a phrase list extends only along it (a free space changes nothing)
            at = bt.grammar[s, w] + bt.grammar_root[s]
            free = (c == self.space) & bt.free[s, w]
            state = np.where(free, at, bt.grammar_child[at, c])
            fits = np.flatnonzero(state >= 0)
            s, w, j, c, pe, state = s[fits], w[fits], j[fits], c[fits], pe[fits], state[fits]
            grammar_cost = np.where(free[fits], 0.0, bt.grammar_cost[at[fits], c])  # an unknown word's penalty
            grammar_state = state - bt.grammar_root[s]
        fused = self._fused(bt, s, w, c)
        if bt.has_grammar:
            fused = fused - grammar_cost
        hot = hot_gain = None
        if bt.has_hot:
            gained, hot, hot_gain = self._hotwords(bt, s, w, c)
            fused = fused + gained
        # An extension whose text is already a prefix of the set merges into it.
        key = bt.key[s, w] * _HASH + (c + 1).astype(np.uint64)
        col = self._find(np.where(live, bt.key[:m], _ABSENT), key, s)
        found = np.flatnonzero(col >= 0)
        same = bt.pkey[s[found], col[found]] == bt.key[s[found], w[found]]
        merged = found[same]
        hs, hw = s[merged], col[merged]
        stay_nb[hs, hw] = np.logaddexp(stay_nb[hs, hw], pe[merged])
        better = pe[merged] > path[hs, hw]  # the stay's best path now comes through this extension
        switch = np.full((m, width), -1, np.int64)  # extension index giving the stay's new last token
        switch[hs[better], hw[better]] = merged[better]
        is_new = np.ones(len(s), bool)
        is_new[merged] = False
        is_new &= pe + fused >= floor[s]
        new = np.flatnonzero(is_new)
        # The beam_size best of the stays and the new prefixes, best first (ties: stays, then
        # extensions in the order they were made).
        count = np.bincount(s[new], minlength=m)
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        rank = np.arange(len(new)) - first[s[new]]
        cols: int = width + (int(count.max()) if len(new) else 0)
        # Prefixes of score -inf (possible before the set is full) rank as -1e300, after every other
        # and before the empty slots.
        scores = np.full((m, cols), NEG_INF)
        scores[:, :width] = np.where(live, np.maximum(np.logaddexp(stay_b, stay_nb) + lmv, _DEAD), NEG_INF)
        scores[s[new], width + rank] = np.maximum(pe[new] + fused[new], _DEAD)
        keep = min(cfg.beam_size, cols)
        if keep < cols:
            top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
            top.sort(axis=1)
        else:
            top = np.broadcast_to(np.arange(cols), (m, cols))
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
        n_new = np.minimum(n + count, cfg.beam_size)
        top = top[:, :int(n_new.max())]
        rows = np.broadcast_to(np.arange(m)[:, None], top.shape)
        stay = top < width
        sw = np.where(stay, top, 0)
        ext = new[np.clip(first[:, None] + top - width, 0, len(new) - 1)] if len(new) else np.zeros_like(top)
        ext = np.where(stay, 0, ext)
        if not len(s):  # no extension at all: index arrays of one dummy entry keep the gathers valid
            s, w, c, pe, fused, key = (np.zeros(1, a.dtype) for a in (s, w, c, pe, fused, key))
            hot, hot_gain, grammar_state = np.zeros(1, np.int32), np.zeros(1), np.zeros(1, np.int64)
        ew, ec = w[ext], c[ext]
        values = self._successors(bt, rows, stay, sw, ew, ec, key[ext], stay_b, stay_nb, pe[ext], fused[ext])
        if hot is not None and hot_gain is not None:
            values["hot"] = np.where(stay, bt.hot[rows, sw], hot[ext])
            values["hot_gain"] = np.where(stay, bt.hot_gain[rows, sw], hot_gain[ext])
        else:
            values["hot"], values["hot_gain"] = bt.hot[rows, sw], bt.hot_gain[rows, sw]
        values["grammar"] = (np.where(stay, bt.grammar[rows, sw], grammar_state[ext]) if bt.has_grammar
                             else bt.grammar[rows, sw])
        # New tokens: every new prefix's character, and a stay's whose best path now ends in an extension.
        sw_ext = switch[rows, sw]
        switched = stay & (sw_ext >= 0)
        parent_w = np.where(stay, w[np.maximum(sw_ext, 0)], ew)
        char = np.where(stay, c[np.maximum(sw_ext, 0)], ec)  # (for a stay not switched: unused)
        token = (~stay | switched) & (np.arange(top.shape[1])[None, :] < n_new[:, None])
        tr, tc = np.nonzero(token)
        tchar = char[tr, tc]
        ids = bt.add_nodes(tr.astype(np.int32), bt.tip[tr, parent_w[tr, tc]], tchar.astype(np.int16),
                           frames[tr].astype(np.int32), np.exp(lp[tr, tchar]))
        tip = np.where(stay, bt.tip[rows, sw], -1)
        tip[tr, tc] = ids
        values["tip"] = tip
        speech = np.where(char != self.space, frames[:, None], bt.speech[rows, parent_w])
        values["speech"] = np.where(stay & ~switched, bt.speech[rows, sw], speech).astype(np.int32)
        bt.put(m, values, n_new)

    def _fused(self, bt: _Batch, s: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The LM terms, bonuses and penalties of extending prefix (s, w) by character c."""
        cfg = self.cfg
        space = c == self.space
        free = space & bt.free[s, w]  # a space after nothing or after a space: no LM event, no bonus
        base = bt.lm[s, w]
        fused = base + np.where(space, cfg.space_bonus, cfg.insertion_bonus)
        if self._table is not None:
            # (float32 values as float64, as Python floats were: the sum rounds as it always did)
            fused = fused + cfg.lm_weight * self._table.logp[bt.lm_rows[s, w], c].astype(np.float64)
        fused = np.where(free, base, fused)
        if self._lexicon is not None:
            lex, node = self._lexicon, bt.word[s, w]
            if self._listed:
                # Paid once per word outside the list: on the character that leaves the list's
                # word starts, or on the space that closes a word start that is not a word.
                left = ((node == 0) | lex.prefix[node]) & ~lex.prefix[lex.child[node, c]]
                unfinished = lex.prefix[node] & ~lex.word[node]
                fused = fused - np.where(space, unfinished, left) * self.oov_penalty
            if self.words is not None:
                closing = np.flatnonzero(space & ~free)
                if len(closing):
                    fused[closing] += self._word_scores(bt.history[s[closing], w[closing]],
                                                        lex.word_id[node[closing]])
        return fused

    def _hotwords(self, bt: _Batch, s: np.ndarray, w: np.ndarray, c: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What extending prefix (s, w) by character c gains or gives back for its stream's hotwords
        (``engine.hotwords``), and its node and gain after it."""
        root = bt.hot_root[s]
        node, gain = bt.hot[s, w] + root, bt.hot_gain[s, w]
        space = c == self.space
        at_word_start = bt.free[s, w]
        free = space & at_word_start  # a space after nothing or after a space: no change
        inside = node != root
        done = inside & space & bt.hot_complete[node]  # a whole phrase: what it gained stays
        on = bt.hot_child[node, c]
        go_on = inside & (on >= 0)
        begin = np.where(at_word_start & ~space, bt.hot_child[root, c], -1)  # a phrase starts with this word
        begin = np.where(go_on, -1, begin)
        lost = np.where(inside & ~done & ~go_on, gain, 0.0)  # the word went another way: give it back
        step = np.where(go_on, bt.hot_bonus[np.maximum(on, 0)],
                        np.where(begin >= 0, bt.hot_bonus[np.maximum(begin, 0)], 0.0))
        # A word of a hotword is not out of vocabulary: a space that closes one, inside a phrase
        # that goes on or ends there, refunds the OOV penalty the word paid (kept in the gain until
        # the phrase is whole, so a phrase that breaks off gives it back too).
        refund = np.zeros(len(s))
        if self._listed and self._lexicon is not None:
            refund = np.where(space & ~free & (go_on | done) & ~self._lexicon.word[bt.word[s, w]],
                              self.oov_penalty, 0.0)
        new_node = np.where(go_on, on, np.where(begin >= 0, begin, root))
        new_gain = np.where(go_on, np.where(done, 0.0, gain + refund) + step, step)
        return (np.where(free, 0.0, step + refund - lost), np.where(free, node, new_node) - root,
                np.where(free, gain, new_gain))

    def _word_scores(self, history: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``word_weight`` x the word LM's log-probability of each word ``ids`` after its ``history``."""
        assert self.words is not None
        return self.cfg.word_weight * self.words.log_probs_ids(history, ids)

    @staticmethod
    def _find(keys: np.ndarray, wanted: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Column of ``wanted[i]`` in ``keys[rows[i]]`` (-1: absent; ``_ABSENT`` marks empty slots).

        Hash tables of eight slots per key, one per row: the keys that lose a slot to another go
        to a second table with another hash, and so on (about 6 % reach the second, 0.4 % a third).
        """
        result = np.full(len(wanted), -1, np.int64)
        if not len(wanted):
            return result
        height, width = keys.shape
        bits = max(3, (8 * width - 1).bit_length())
        shift = np.uint64(64 - bits)
        pr, pc = np.nonzero(keys != _ABSENT)
        open_ = np.arange(len(wanted))
        for level in itertools.count():
            if not len(pr) or not len(open_):
                break
            mult = _SLOT_HASH[level % len(_SLOT_HASH)] + np.uint64(2 * level)
            table = np.full((height, 1 << bits), -1, np.int64)
            slot = (keys[pr, pc] * mult) >> shift
            table[pr, slot] = pc
            won = table[pr, slot] == pc
            pr, pc = pr[~won], pc[~won]
            q = wanted[open_]
            r = rows[open_]
            col = table[r, (q * mult) >> shift]
            ok = (col >= 0) & (keys[r, np.maximum(col, 0)] == q)
            result[open_[ok]] = col[ok]
            open_ = open_[~ok]
        return result

    def _successors(self, bt: _Batch, rows: np.ndarray, stay: np.ndarray, sw: np.ndarray, ew: np.ndarray,
                    ec: np.ndarray, key: np.ndarray, stay_b: np.ndarray, stay_nb: np.ndarray, pe: np.ndarray,
                    fused: np.ndarray) -> dict[str, np.ndarray]:
        """The chosen prefixes' numbers: a stay's carried over, a new prefix's made from its parent ``ew`` and ``ec``."""
        space = ec == self.space
        pfree = bt.free[rows, ew]
        moves = ~space | ~pfree  # the character is an LM event (all but a free space)
        out: dict[str, np.ndarray] = {
            "key": np.where(stay, bt.key[rows, sw], key),
            "pkey": np.where(stay, bt.pkey[rows, sw], bt.key[rows, ew]),
            "blank": np.where(stay, stay_b[rows, sw], NEG_INF),
            "nonblank": np.where(stay, stay_nb[rows, sw], pe),
            "lm": np.where(stay, bt.lm[rows, sw], fused),
            "last": np.where(stay, bt.last[rows, sw], ec),
            "free": np.where(stay, bt.free[rows, sw], space),
        }
        code, open_, lm_rows = bt.lm_code[rows, ew], bt.lm_open[rows, ew], bt.lm_rows[rows, ew]
        if self._table is not None:
            step = ~stay & moves
            advanced = self._table.advance(lm_rows[step], ec[step])
            lm_rows = lm_rows.copy()
            lm_rows[step] = advanced
            code = code.copy()
            code[step] = self._table.codes[advanced]
            # The context before a trailing space: the sentence end is scored from there.
            open_ = np.where(~stay & space, np.where(pfree, open_, bt.lm_code[rows, ew]), code)
        out["lm_code"] = np.where(stay, bt.lm_code[rows, sw], code)
        out["lm_open"] = np.where(stay, bt.lm_open[rows, sw], open_)
        out["lm_rows"] = np.where(stay, bt.lm_rows[rows, sw], lm_rows)
        node, history = bt.word[rows, ew], bt.history[rows, ew]
        if self._lexicon is not None:
            node = np.where(space, 0, self._lexicon.child[node, ec])
            if self._history:
                closes = (~stay & space & ~pfree)[..., None]
                pushed = np.concatenate([history[..., 1:], self._lexicon.word_id[bt.word[rows, ew]][..., None]], -1)
                history = np.where(closes, pushed, history)
        out["word"] = np.where(stay, bt.word[rows, sw], node)
        out["history"] = np.where(stay[..., None], bt.history[rows, sw], history)
        return out

    def end_scores(self, beams: Beams, hotwords: Hotwords | None = None, grammar: Grammar | None = None
                   ) -> np.ndarray:
        """What the sentence end adds to each prefix's score: the open word's OOV penalty and word-LM
        term, the word LM's ``</s>`` and the character LM's ``</s>`` (which replaces a trailing space),
        what a hotword broken off at the end gained, and -inf for a text that stops mid-phrase of
        the stream's phrase list."""
        cfg = self.cfg
        end = np.zeros(len(beams))
        if grammar is not None:
            end = np.where(grammar.accepting[beams.grammar], end, NEG_INF)
        if hotwords is not None:
            end = end - np.where((beams.hot > 0) & ~hotwords.complete[beams.hot], beams.hot_gain, 0.0)
            if self._listed and self._lexicon is not None:  # a whole hotword at the end: its word is no OOV
                end = end + np.where((beams.hot > 0) & hotwords.complete[beams.hot] & ~beams.free
                                     & ~self._lexicon.word[beams.word], self.oov_penalty, 0.0)
        said = beams.speech >= 0  # the prefix holds a word
        open_word = said & ~beams.free  # its last word has no space after it yet
        lex = self._lexicon
        if self._listed:
            assert lex is not None
            end = end - np.where(open_word, lex.prefix[beams.word] & ~lex.word[beams.word], False) * self.oov_penalty
        if self.words is not None:
            assert lex is not None
            history = beams.history
            closing = np.flatnonzero(open_word)
            if len(closing):
                end[closing] += self._word_scores(history[closing], lex.word_id[beams.word[closing]])
                pushed = np.concatenate([history[:, 1:], lex.word_id[beams.word][:, None]], 1)
                history = np.where(open_word[:, None], pushed, history)
            end += self._word_scores(history, np.full(len(beams), BOUNDARY))
        if self._table is None:
            return end
        table = self._table
        with self._lock:
            rows = table.rows(beams.lm_open)
            start = float(table.logp[table.row(self._start), BOUNDARY])
        lps = table.logp[rows].astype(np.float64)
        end = end + cfg.lm_weight * lps[:, BOUNDARY]
        trailing = said & beams.free
        end = np.where(trailing, end - (cfg.lm_weight * lps[:, self.space] + cfg.space_bonus), end)
        # An empty result is a sentence too, and an unlikely one: without this cost, a lone
        # uncertain word lost to nothing (37 of 551 real prompts came back empty).
        return np.where(said, end, cfg.lm_weight * start)

    def end(self, beams: Beams, hotwords: Hotwords | None = None, grammar: Grammar | None = None) -> Beam:
        """The best prefix at a segment end, counting the LMs' end-of-sentence probabilities."""
        return self.best(beams, 1, hotwords, grammar)[0]

    def best(self, beams: Beams, n: int, hotwords: Hotwords | None = None, grammar: Grammar | None = None
             ) -> tuple[Beam, list[tuple[str, float]]]:
        """``end``, and the ``n`` best distinct texts at the segment end with their scores in nats
        against the best one's (prefixes that differ only in spaces are one text).

        With a phrase list, a segment none of whose prefixes is a whole sequence of phrases ends
        empty (its best prefix's tokens dropped)."""
        score = np.logaddexp(beams.blank, beams.nonblank) + beams.lm
        if self.lm is not None or self._listed or self.words is not None or hotwords is not None or grammar is not None:
            score = score + self.end_scores(beams, hotwords, grammar)
        order = np.argsort(-np.maximum(score, _DEAD), kind="stable")
        chosen = beams[order[0]]
        if score[order[0]] == NEG_INF:  # (only with a phrase list) nothing said fits it
            chosen = chosen._replace(text="", tokens=())
        if n <= 1:
            return chosen, []
        texts: list[tuple[str, float]] = []
        seen: set[str] = set()
        for i in order.tolist():
            if score[i] == NEG_INF:
                break
            text = " ".join(beams[i].text.split())
            if text not in seen:
                seen.add(text)
                texts.append((text, round(float(score[i] - score[order[0]]), 3)))
                if len(texts) == n:
                    break
        return chosen, texts

    def restart(self, chosen: Beam) -> Beams:
        """The beam set for the next segment after ``chosen`` ended this one."""
        total = float(np.logaddexp(chosen.blank, chosen.nonblank))
        return self.initial(chosen.last, chosen.blank - total, chosen.nonblank - total)
