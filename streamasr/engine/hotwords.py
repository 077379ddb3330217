"""Hotwords: words and phrases a stream expects, boosted in the beam search (contextual biasing).

A stream's list becomes a letter tree of its phrases (spelt as the model spells: lower case,
a-z, apostrophe, single spaces). A prefix that spells a phrase from the start of a word gains
the phrase's ``boost`` in nats for each of its characters as it goes; if the word then turns into
something else ("cats" for "cat"), or the segment ends mid-phrase, the prefix gives back what it
gained, so only whole phrases keep their bonus. The search's state for it is two numbers per
prefix (its node in the tree and what it gained so far), kept in the beam set like the LM's.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamasr.engine.text import Tokenizer, normalize

DEFAULT_BOOST = 2.0  # nats per character of a listed phrase, unless its entry says otherwise
MAX_BOOST = 10.0
MAX_PHRASES = 1000
_WEIGHTED = re.compile(r"^(.*?)\s+(-?\d+(?:\.\d+)?)\s*$")  # "PHRASE WEIGHT" in a hotwords file


@dataclass(frozen=True, eq=False)
class Hotwords:
    """A compiled hotword list: ``child[node, id]`` the node one character on (-1: none; node 0
    is the root, where no phrase is being spelt), ``bonus[node]`` what entering it gains,
    ``complete[node]`` whether a phrase ends there. Shared by the streams that use it."""

    phrases: tuple[tuple[str, float], ...]  # (normalised phrase, boost per character)
    child: np.ndarray  # int32 (nodes, vocabulary)
    bonus: np.ndarray  # float64 (nodes,)
    complete: np.ndarray  # bool (nodes,)

    @classmethod
    def compile(cls, entries: Sequence[str | tuple[str, float]], tokenizer: Tokenizer) -> Hotwords:
        """``entries``: phrases, each alone (boost ``DEFAULT_BOOST``) or with its boost in nats per character.

        Raises:
            ValueError: an entry spells nothing in the model's alphabet, or a boost or the list is out of range.
        """
        if len(entries) > MAX_PHRASES:
            raise ValueError(f"at most {MAX_PHRASES} hotwords, got {len(entries)}")
        index = {c: i for i, c in enumerate(tokenizer.vocab) if i != tokenizer.blank}
        phrases: dict[str, float] = {}
        for entry in entries:
            text, boost = (entry, DEFAULT_BOOST) if isinstance(entry, str) else entry
            if isinstance(boost, bool) or not isinstance(boost, (int, float)) or not 0 < boost <= MAX_BOOST:
                raise ValueError(f"hotword {text!r}: boost must be a number of nats in (0, {MAX_BOOST}], got {boost!r}")
            spelt = normalize(text)
            if not spelt or any(c not in index for c in spelt):
                raise ValueError(f"hotword {text!r} spells nothing the model can say (letters, apostrophe, spaces)")
            phrases[spelt] = max(float(boost), phrases.get(spelt, 0.0))
        child = [[-1] * len(tokenizer.vocab)]
        bonus, complete = [0.0], [False]
        for spelt, boost in phrases.items():
            node = 0
            for c in spelt:
                nxt = child[node][index[c]]
                if nxt < 0:
                    nxt = child[node][index[c]] = len(child)
                    child.append([-1] * len(tokenizer.vocab))
                    bonus.append(boost)
                    complete.append(False)
                else:  # phrases that share a start: the larger boost
                    bonus[nxt] = max(bonus[nxt], boost)
                node = nxt
            complete[node] = True
        return cls(tuple(phrases.items()), np.array(child, np.int32), np.array(bonus), np.array(complete))



def read_hotwords(path: str | Path) -> list[tuple[str, float]]:
    """A hotwords file: one phrase per line, optionally followed by its boost in nats per character
    ("acme corp 3"); blank lines and lines starting with '#' are skipped."""
    entries: list[tuple[str, float]] = []
    for line in read_phrases(path, "hotwords file"):
        weighted = _WEIGHTED.match(line)
        entries.append((weighted[1], float(weighted[2])) if weighted else (line, DEFAULT_BOOST))
    return entries


UNKNOWN = "<unk>"  # a grammar entry that lets any other word through, at UNKNOWN_PENALTY nats a word
UNKNOWN_PENALTY = 6.0
_ANY = -1  # the automaton's node for an unknown word


@dataclass(frozen=True, eq=False)
class Grammar:
    """A phrase list the search must keep to (command and control, voice menus): a segment's text
    is a sequence of listed phrases, or nothing; with the entry ``<unk>``, other words may stand
    between them at ``UNKNOWN_PENALTY`` nats each. A deterministic automaton over characters:
    ``child[state, id]`` the state one character on (-1: no listed sequence goes on so), state 0
    the start; ``accepting[state]``: a text that ends there is a whole sequence of phrases;
    ``cost[state, id]``: nats the step costs (the penalty where a word is left with no phrase)."""

    phrases: tuple[str, ...]
    child: np.ndarray  # int32 (states, vocabulary)
    accepting: np.ndarray  # bool (states,)
    cost: np.ndarray  # float64 (states, vocabulary)

    @classmethod
    def compile(cls, phrases: Sequence[str], tokenizer: Tokenizer, max_states: int = 100_000) -> Grammar:
        """Raises ValueError: no phrases, a phrase that spells nothing, or too large a list."""
        unknown = UNKNOWN in phrases
        listed = [p for p in phrases if p != UNKNOWN]
        if not listed or len(phrases) > MAX_PHRASES:
            raise ValueError(f"a grammar needs 1 to {MAX_PHRASES} phrases besides {UNKNOWN}, got {len(listed)}")
        trie = Hotwords.compile([(p, 1.0) for p in listed], tokenizer)  # the phrases' letter tree
        space = tokenizer.space
        # Subset construction: a state is the set of tree nodes the text can be at (_ANY: inside an
        # unknown word); a space after a whole phrase or an unknown word goes back to the root,
        # where the next phrase (or unknown word) starts.
        start = frozenset([0])
        index = {start: 0}
        sets: list[frozenset[int]] = [start]
        rows: list[list[int]] = []
        costs: list[list[float]] = []
        accepting: list[bool] = []
        while len(rows) < len(sets):
            nodes = sets[len(rows)]
            row, cost = [-1] * len(tokenizer.vocab), [0.0] * len(tokenizer.vocab)
            for c in range(1, len(tokenizer.vocab)):
                nxt = {int(trie.child[n, c]) for n in nodes if n != _ANY and trie.child[n, c] >= 0}
                if c == space and (_ANY in nodes or any(trie.complete[n] for n in nodes if n != _ANY)):
                    nxt.add(0)
                if unknown and c != space and (0 in nodes or _ANY in nodes):
                    nxt.add(_ANY)
                if nxt:
                    key = frozenset(nxt)
                    if key not in index:
                        if len(sets) >= max_states:
                            raise ValueError(f"the grammar's {len(listed)} phrases need more than {max_states} states")
                        index[key] = len(sets)
                        sets.append(key)
                    row[c] = index[key]
                    if key == {_ANY} and nodes != {_ANY}:  # the word now fits no phrase: it is unknown
                        cost[c] = UNKNOWN_PENALTY
            rows.append(row)
            costs.append(cost)
            accepting.append(0 in nodes or _ANY in nodes or any(trie.complete[n] for n in nodes if n != _ANY))
        return cls(tuple(p for p, _ in trie.phrases) + ((UNKNOWN,) if unknown else ()), np.array(rows, np.int32),
                   np.array(accepting), np.array(costs))


def read_phrases(path: str | Path, kind: str = "phrase list") -> list[str]:
    """A phrase list file (``Grammar``): one phrase per line; blank lines and '#' lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {kind} {path}: {e}; expected UTF-8 text, a phrase per line") from e
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--hotwords FILE`` and ``--grammar FILE``, for the commands that decode or send a stream."""
    parser.add_argument("--hotwords", type=Path, default=None, metavar="FILE",
                        help="words and phrases to boost in the beam search (names, terms), one per line, each "
                             "optionally followed by its boost in nats per character (default 2; e.g. 'acme corp 3')")
    parser.add_argument("--grammar", type=Path, default=None, metavar="FILE",
                        help="a phrase list, one phrase per line (commands, menu words): each segment's text "
                             "becomes a sequence of them, or nothing (needs the beam search)")


def from_options(args: argparse.Namespace, tokenizer: Tokenizer) -> tuple[Hotwords | None, Grammar | None]:
    """The lists ``add_options``'s ``--hotwords`` and ``--grammar`` name, read and compiled (None: not given)."""
    hotwords = Hotwords.compile(read_hotwords(args.hotwords), tokenizer) if args.hotwords else None
    grammar = Grammar.compile(read_phrases(args.grammar), tokenizer) if args.grammar else None
    return hotwords, grammar
