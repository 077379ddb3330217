"""Result types: partial (still changing) and final (settled) segment hypotheses; a file's transcript."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds since the stream started
    end: float  # seconds since the stream started
    conf: float  # mean character posterior, 0..1


MAX_NBEST = 10  # most texts a final carries as alternatives


@dataclass(frozen=True)
class Alternative:
    """One of a final's n best texts (``nbest``): the first is the final's own text."""

    text: str
    score: float  # nats against the best text's score (0 for the best, below 0 for the others)


@dataclass(frozen=True)
class Result:
    kind: Literal["partial", "final"]
    segment: int  # 0-based index of the segment (utterance) within the stream
    text: str
    start: float  # seconds: first word's start (segment start when there are no words)
    end: float  # seconds: last word's end
    words: tuple[Word, ...] = field(default_factory=tuple)
    # A final's best texts, best first, when the stream asked for more than one (empty otherwise).
    alternatives: tuple[Alternative, ...] = ()

    @property
    def is_final(self) -> bool:
        return self.kind == "final"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Segment:
    """One final: an utterance between two endpoints."""

    start: float  # seconds since the start of the file (first word's start)
    end: float  # seconds since the start of the file (last word's end)
    text: str
    words: tuple[Word, ...] = ()

    @classmethod
    def from_result(cls, result: Result) -> Segment:
        return cls(result.start, result.end, result.text, result.words)


@dataclass(frozen=True)
class Transcript:
    """Everything recognised in one file or signal."""

    file: str  # the input path as given ("" for audio passed in memory)
    text: str  # the segments' texts joined by single spaces
    duration: float  # seconds of audio
    segments: tuple[Segment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{"file", "text", "duration", "segments": [{"start", "end", "text", "words": [...]}]}``."""
        return asdict(self)
