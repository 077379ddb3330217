"""Result types: partial (still changing) and final (settled) segment hypotheses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds since the stream started
    end: float  # seconds since the stream started
    conf: float  # mean character posterior, 0..1


@dataclass(frozen=True)
class Result:
    kind: Literal["partial", "final"]
    segment: int  # 0-based index of the segment (utterance) within the stream
    text: str
    start: float  # seconds: first word's start (segment start when there are no words)
    end: float  # seconds: last word's end
    words: tuple[Word, ...] = field(default_factory=tuple)

    @property
    def is_final(self) -> bool:
        return self.kind == "final"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
