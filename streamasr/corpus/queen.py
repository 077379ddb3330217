"""Flight of the Amazon Queen (Debian ``flight-of-the-amazon-queen``): voice clips and their lines.

Everything sits in one archive, ``queen.1c``: a ``QTBL`` header, a table of named entries, and the
entries themselves. Speech entries (``*.SB``) are raw MP3 streams; their lines come from three
kinds of resource, each naming its clips in its own way (the formats were read from ScummVM's
engines/queen for facts; no code or tables come from it):

- dialogues (``*.DOG``): Joe's lines and the other person's, clip ``TTIIIIJ``/``TTIIIIP`` (talk
  key in decimal, line id in upper-case hex);
- cutaways (``*.CUT``): scripted scenes, clip ``NAME_`` + sentence number + segment;
- ``QUEEN2.JAS``: Joe's stock answers and object descriptions, clip ``JOE`` + number + segment.

A sentence is cut into segments at ``*`` + a two-character command (``*XY`` takes 11 more
characters); each segment is its own clip, numbered from 1 in hexadecimal.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ARCHIVE = "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
# The game plays its 11,025 Hz-labelled speech at 11,840 Hz; read at the label, voices sound low.
PLAY_RATE = 11840
_HEADER = 20  # bytes of resource header in front of DOG and CUT data
_ENTRY = 21  # bytes per table entry: 12-byte name, bundle byte, BE u32 offset, BE u32 size
_JOE_RESPONSES = 40  # Joe's stock answers in QUEEN2.JAS; clip numbers above are descriptions
_VERBS = 12  # verb names between the room names and the answers in QUEEN2.JAS


@dataclass(frozen=True)
class Line:
    """One voice clip's line."""

    clip: str  # entry name without ".SB"
    text: str  # subtitle as stored, commands removed
    role: str  # speaker: "joe", a dialogue partner ("bob"), or "unlabelled"
    source: str  # resource the line came from ("BOB1.DOG", "C100A.CUT", "QUEEN2.JAS")


class Archive:
    """The entries of a ``queen.1c`` file, read into memory once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data = self.path.read_bytes()
        if self.data[:4] != b"QTBL":
            raise ValueError(f"{self.path}: not a Flight of the Amazon Queen archive "
                             f"(starts with {self.data[:4]!r}, expected b'QTBL')")
        if self.data[12] != 1:
            raise ValueError(f"{self.path}: compression type {self.data[12]}, expected 1 (MP3 speech)")
        (count,) = struct.unpack_from(">H", self.data, 13)
        self.entries: dict[str, tuple[int, int]] = {}
        for i in range(count):
            pos = 15 + _ENTRY * i
            raw = self.data[pos:pos + _ENTRY]
            if len(raw) < _ENTRY:
                raise ValueError(f"{self.path}: table of {count} entries is cut off at entry {i}")
            name = raw[:12].rstrip(b"\0").decode("ascii", "replace")
            offset, size = struct.unpack_from(">II", raw, 13)
            self.entries[name] = (offset, size)

    def read(self, name: str) -> bytes:
        """One entry's bytes. Raises KeyError (unknown name) or ValueError (past the file's end)."""
        offset, size = self.entries[name]
        if offset + size > len(self.data):
            raise ValueError(f"{self.path}: entry {name} ({size} bytes at {offset}) runs past the "
                             f"end of the file ({len(self.data)} bytes)")
        return self.data[offset:offset + size]

    def speech(self) -> set[str]:
        """Names of the speech entries, without ".SB"."""
        return {name[:-3] for name in self.entries if name.endswith(".SB")}


def segments(sentence: str) -> list[str]:
    """A sentence's spoken pieces: cut at ``*`` + a 2-character command, commands dropped."""
    pieces: list[str] = []
    piece: list[str] = []
    i = 0
    while i < len(sentence):
        if sentence[i] == "*":
            pieces.append("".join(piece))
            piece = []
            command = sentence[i + 1:i + 3]
            i += 3 + (11 if command == "XY" else 0)  # XY carries a screen position
        else:
            piece.append(sentence[i])
            i += 1
    pieces.append("".join(piece))
    return pieces


def _string(data: bytes, pos: int, align: int) -> tuple[str, int]:
    """A length-prefixed string at ``pos`` and the position after it, rounded up to ``align``."""
    if pos >= len(data):
        raise ValueError(f"string at {pos} is past the end ({len(data)} bytes)")
    n = data[pos]
    text = data[pos + 1:pos + 1 + n].decode("latin-1")
    end = pos + 1 + n
    return text, -(-end // align) * align


def _clip_lines(base: str, sentence: str, role: str, source: str, known: set[str]) -> Iterator[Line]:
    """The lines of one sentence's clips ``base`` + segment number that exist in ``known``."""
    pieces = segments(sentence)
    for index, piece in enumerate(pieces, start=1):
        clip = f"{base}{index:x}".upper()
        if clip not in known:
            continue
        if not piece.strip() and index == 1:  # a caption object: the whole sentence is one clip
            piece = " ".join(p for p in pieces if p.strip())
        yield Line(clip, piece.strip(), role, source)


def dialogue_lines(name: str, data: bytes, known: set[str]) -> Iterator[Line]:
    """Lines of one ``*.DOG`` dialogue; the partner's role is the file name without digits."""
    level_max, _unique, talk_key, joe_max, person_max = struct.unpack_from(">h4H", data, _HEADER)
    person_ofs, _cutaway_ofs, person2_ofs = struct.unpack_from(">3H", data, _HEADER + 22)
    partner = re.sub(r"\d+$", "", name.rsplit(".", 1)[0]).lower()
    key = f"{talk_key:02d}"  # clip-name fields are zero-padded, hex upper-case

    def entries(pos: int, count: int) -> Iterator[tuple[int, str]]:
        for _ in range(count):
            (line_id,) = struct.unpack_from(">h", data, pos + 2)
            text, pos = _string(data, pos + 4, 4)
            yield line_id, text

    joe_pos = _HEADER + 32 + abs(level_max) * 96
    for i, (line_id, text) in enumerate(entries(joe_pos, joe_max)):
        yield from _clip_lines(f"{key}{line_id:04X}J", text, "joe", name, known)
        if i == 0:
            yield from _clip_lines(f"{key}SSSSJ", text, "joe", name, known)
    for line_id, text in entries(_HEADER + person_ofs, person_max):
        yield from _clip_lines(f"{key}{line_id:04X}P", text, partner, name, known)
    greeting, pos = _string(data, _HEADER + person2_ofs, 2)
    answer, _ = _string(data, pos, 2)
    yield from _clip_lines(f"{key}XXXXP", greeting, partner, name, known)
    yield from _clip_lines(f"{key}XXXXJ", answer, "joe", name, known)


def cutaway_lines(name: str, data: bytes, known: set[str]) -> Iterator[Line]:
    """Lines of one ``*.CUT`` scene: sentence i belongs to the scene's object i.

    The sentence table is followed by other data; only sentences whose clip exists are lines.
    Speakers of cutaway lines are not labelled (the scene's object records would name them).
    """
    (sentences,) = struct.unpack_from(">H", data, _HEADER + 8)
    pos = _HEADER + sentences
    pos += 1 + data[pos]  # the scene's entry string, unpadded
    base = name.rsplit(".", 1)[0].ljust(5, "_")
    number = 1
    while pos < len(data) and number < 100:
        text, pos = _string(data, pos, 2)
        yield from _clip_lines(f"{base}{number:02d}", text, "unlabelled", name, known)
        number += 1


def jas_lines(counts: bytes, text: bytes, known: set[str]) -> Iterator[Line]:
    """Joe's stock answers and object descriptions.

    Args:
        counts: ``QUEEN.JAS``; after its header, BE u16 counts of rooms, object names, objects and
            object descriptions.
        text: ``QUEEN2.JAS``, CRLF lines without a header: the descriptions, object names, room
            names, the verbs, then Joe's answers. Clip ``JOE0001`` is the first answer;
            ``JOE0041`` the first description.
        known: speech entry names.
    """
    rooms, names, _objects, descriptions = struct.unpack_from(">4H", counts, _HEADER)
    lines = text.decode("latin-1").split("\r\n")
    answers = descriptions + names + rooms + _VERBS
    for clip in sorted(c for c in known if re.fullmatch(r"JOE\d{4}1", c)):
        number = int(clip[3:7])
        index = answers + number - 1 if number <= _JOE_RESPONSES else number - _JOE_RESPONSES - 1
        if index < len(lines):
            yield from _clip_lines(clip[:7], lines[index], "joe", "QUEEN2.JAS", known)


def archive_lines(archive: Archive) -> Iterator[Line]:
    """Every voiced line of the game, dialogues, then cutaways, then Joe's stock lines."""
    known = archive.speech()
    names = sorted(archive.entries)
    for name in names:
        if name.endswith(".DOG"):
            yield from dialogue_lines(name, archive.read(name), known)
    for name in names:
        if name.endswith(".CUT"):
            yield from cutaway_lines(name, archive.read(name), known)
    yield from jas_lines(archive.read("QUEEN.JAS"), archive.read("QUEEN2.JAS"), known)
