"""Hotwords: words and phrases a stream expects, boosted in the beam search (contextual biasing).

A stream's list becomes a letter tree of its phrases (spelt as the model spells: lower case,
a-z, apostrophe, single spaces). A prefix that spells a phrase from the start of a word gains
the phrase's ``boost`` in nats for each of its characters as it goes; if the word then turns into
something else ("cats" for "cat"), or the segment ends mid-phrase, the prefix gives back what it
gained, so only whole phrases keep their bonus. The search's state for it is two numbers per
prefix (its node in the tree and what it gained so far), kept in the beam set like the LM's.
"""

from __future__ import annotations

import re
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
    def compile(cls, entries: list[tuple[str, float]] | list[str], tokenizer: Tokenizer) -> Hotwords:
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
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read hotwords file {path}: {e}; expected UTF-8 text, a phrase per line") from e
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        weighted = _WEIGHTED.match(line)
        entries.append((weighted[1], float(weighted[2])) if weighted else (line, DEFAULT_BOOST))
    return entries

