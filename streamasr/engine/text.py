"""Text normalisation to the model's alphabet and the character tokenizer."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

BLANK = "<blank>"
# Index 0 is the CTC blank; the rest is the character alphabet.
DEFAULT_VOCAB: tuple[str, ...] = (BLANK, " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_SYMBOLS = {"&": " and ", "%": " percent ", "*": " star ", "#": " pound ", "+": " plus ", "@": " at "}


def number_to_words(n: int) -> str:
    """Spell out a non-negative integer in English ("21" -> "twenty one")."""
    if n < 0:
        raise ValueError(f"number_to_words expects a non-negative integer, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            words = number_to_words(head) + " " + name
            return words if rest == 0 else words + " " + number_to_words(rest)
    raise AssertionError("unreachable")


# What normalize() reads as an ordinal after digits ("3rd"); importers keeps such words in LM text.
ORDINAL_SUFFIX = r"(?:st|nd|rd|th)\b"
_ORDINAL_ENDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                 "nine": "ninth", "twelve": "twelfth"}


def ordinal_to_words(n: int) -> str:
    """Spell out an ordinal ("21" -> "twenty first", "40" -> "fortieth")."""
    *head, last = number_to_words(n).split()
    if last in _ORDINAL_ENDS:
        last = _ORDINAL_ENDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _spell_ordinal(match: re.Match[str]) -> str:
    return " " + ordinal_to_words(int(match.group(1))) + " "


def _spell_digits(match: re.Match[str]) -> str:
    digits = match.group(0)
    # Long digit strings (phone numbers, codes) are read digit by digit.
    if len(digits) > 4 or (len(digits) > 1 and digits.startswith("0")):
        return " " + " ".join(_ONES[int(d)] for d in digits) + " "
    return " " + number_to_words(int(digits)) + " "


def normalize(text: str) -> str:
    """Lower-case ``text`` and reduce it to a-z, apostrophe and single spaces.

    Numbers, ordinals ("3rd") and a few symbols are spelled out; other characters become spaces.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("\u2019", "'").replace("`", "'")
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = re.sub(rf"\b(\d+){ORDINAL_SUFFIX}", _spell_ordinal, text)  # "3rd" -> "third"
    text = re.sub(r"\d+", _spell_digits, text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    # Apostrophes only survive inside words ("don't"), not as quotes.
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Tokenizer:
    """Maps characters to CTC ids and back; id 0 is the blank."""

    vocab: tuple[str, ...] = DEFAULT_VOCAB

    def __post_init__(self) -> None:
        if not self.vocab or self.vocab[0] != BLANK:
            raise ValueError(f"vocab must start with {BLANK!r}, got {self.vocab[:1]!r}")

    @property
    def blank(self) -> int:
        return 0

    @property
    def space(self) -> int:
        return self.vocab.index(" ")

    def encode(self, text: str) -> list[int]:
        """Ids of ``normalize(text)``; characters outside the vocabulary are dropped."""
        index = {c: i for i, c in enumerate(self.vocab)}
        return [index[c] for c in normalize(text) if c in index]

    def decode(self, ids: list[int]) -> str:
        """Text for already-collapsed ids (blanks are skipped)."""
        return "".join(self.vocab[i] for i in ids if i != 0)
