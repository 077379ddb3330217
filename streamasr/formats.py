"""Transcript writers: txt, json, jsonl, srt and vtt. Pure functions from transcripts to text."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from streamasr.results import Segment, Transcript, Word

Format = Literal["txt", "json", "jsonl", "srt", "vtt"]

MAX_CUE_SECONDS = 7.0  # a subtitle cue longer than this is split at a word boundary
MAX_CUE_CHARS = 84  # likewise for text longer than two 42-character lines
LINE_CHARS = 42  # characters per subtitle line (the common broadcast limit)


@dataclass(frozen=True)
class Cue:
    """One subtitle cue."""

    start: float  # seconds since the start of the file
    end: float  # seconds, >= start
    text: str


def to_txt(transcript: Transcript) -> str:
    """The text on one line (so several files on stdout give one line each)."""
    return transcript.text + "\n"


def to_json(transcript: Transcript) -> str:
    """One transcript as an indented JSON object."""
    return json.dumps(transcript.to_dict(), indent=2, ensure_ascii=False) + "\n"


def to_json_list(transcripts: Sequence[Transcript]) -> str:
    """Several transcripts as one JSON document: a list of the objects ``to_json`` writes."""
    return json.dumps([t.to_dict() for t in transcripts], indent=2, ensure_ascii=False) + "\n"


def to_jsonl(transcript: Transcript) -> str:
    """One transcript as a single line of JSON."""
    return json.dumps(transcript.to_dict(), ensure_ascii=False) + "\n"


def cues(transcript: Transcript, max_seconds: float = MAX_CUE_SECONDS,
         max_chars: int = MAX_CUE_CHARS) -> list[Cue]:
    """Subtitle cues: one per segment, long segments split at word boundaries.

    A cue ends before the word that would make it last longer than ``max_seconds`` or hold more
    than ``max_chars`` characters; a single word is never split.
    """
    out: list[Cue] = []
    for segment in transcript.segments:
        out.extend(_split_segment(segment, max_seconds, max_chars))
    return out


def _split_segment(segment: Segment, max_seconds: float, max_chars: int) -> list[Cue]:
    if not segment.words:
        return [Cue(segment.start, max(segment.start, segment.end), segment.text)]
    groups: list[list[Word]] = [[]]
    for word in segment.words:
        group = groups[-1]
        text = " ".join([*(w.word for w in group), word.word])
        if group and (word.end - group[0].start > max_seconds or len(text) > max_chars):
            groups.append([])
        groups[-1].append(word)
    return [Cue(g[0].start, max(g[0].start, g[-1].end), " ".join(w.word for w in g)) for g in groups]


def _timestamp(seconds: float, decimal: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _lines(text: str) -> str:
    return "\n".join(textwrap.wrap(text, LINE_CHARS, break_long_words=False, break_on_hyphens=False))


def to_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, separated by blank lines."""
    blocks = [f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{_lines(c.text)}\n"
              for i, c in enumerate(cues(transcript), start=1)]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    """WebVTT: a ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    blocks = ["WEBVTT\n"]
    for c in cues(transcript):
        # Cue text is HTML-like in WebVTT, so &, < and > must be escaped.
        text = c.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_lines(text)}\n")
    return "\n".join(blocks)


WRITERS: dict[Format, Callable[[Transcript], str]] = {
    "txt": to_txt, "json": to_json, "jsonl": to_jsonl, "srt": to_srt, "vtt": to_vtt,
}
EXTENSIONS: dict[Format, str] = {name: "." + name for name in WRITERS}  # output file suffix per format
