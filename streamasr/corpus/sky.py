"""Beneath a Steel Sky (Debian ``beneath-a-steel-sky``, CD v0.0372): voice clips, lines, speakers.

The game's files sit in ``sky.dsk``, indexed by ``sky.dnr``; the formats were read from ScummVM's
engines/sky for facts, and no code or tables come from it:

- ``sky.dnr``: LE u32 count, then 8-byte entries: LE u16 file number, 24-bit offset (bit 23: in
  16-byte units), 24-bit flags (bits 0-21 stored size; bit 23 stored plain; bit 22 the unpacked
  data has no header). Packed files are a 22-byte header then RNC method 1 (:mod:`rnc`).
- Speech: file ``50000 + SPEECH_BASE[section] + index``, a 22-byte header then unsigned 8-bit mono PCM at 11,025 Hz.
- Text: file ``60600 + 8 * language + section``, Huffman-coded. The tree is not in the game data:
  it is a table inside the ScummVM engine, so :func:`find_text_tree` recovers it at import time
  from the ``scummvm`` binary of the Debian package (never stored in this project).
- Speakers: the script modules (files 60400-60406) call the speech functions with
  ``push speaker; push text; push …; call_mcode 3, fn``; the speaker is a constant object id, the
  running object (``CUR_ID``, script variable 12) or the conversation partner (variable 120).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamasr.corpus import rnc

GAME_DIR = "usr/share/scummvm/beneath-a-steel-sky"
SCUMMVM = "usr/games/scummvm"
RATE = 11025
SECTIONS = 8
LANGUAGES = {"uk": 0, "us": 3}
# First speech file of each text section, after 50000 (GAME_SPEECH.md, section 1).
SPEECH_BASE = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)
_TEXT_FILE, _SPEECH_FILE, _MODULES = 60600, 50000, range(60400, 60407)
_HEADER = 22  # bytes of DataFileHeader in front of packed files and speech
_TREE_NODES = 245  # nodes of the v0.0372 text tree: (left, right, character) bytes each
# Script opcodes (16-bit words) around a speech call.
_PUSH_VAR, _PUSH_NUMBER, _CALL_MCODE = 0, 2, 11
_CUR_ID, _PARTNER = 12, 120  # script variables: the running object, the conversation partner
_SPEAK_ME, _SPEAK_ME_DIR, _SPEAK_WAIT, _SPEAK_WAIT_DIR = 35, 36, 37, 38  # mcode functions


@dataclass(frozen=True)
class Line:
    """One voice clip's line."""

    clip: str  # "s<section>-<index>", the WAV's stem
    file: int  # speech file number
    text: str  # subtitle as stored
    role: str  # "foster", "id<object>", "npc-m<module>s<script>", or "unlabelled"


class Disk:
    """The game's files in ``sky.dsk``, by number."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        index = (folder / "sky.dnr").read_bytes()
        self.data = (folder / "sky.dsk").read_bytes()
        (count,) = struct.unpack_from("<I", index, 0)
        if len(index) < 4 + 8 * count:
            raise ValueError(f"{folder / 'sky.dnr'}: {len(index)} bytes cannot hold {count} entries")
        self.entries: dict[int, tuple[int, int]] = {}
        for i in range(count):
            number, lo, hi, flags_lo, flags_hi = struct.unpack_from("<HHBHB", index, 4 + 8 * i)
            offset = lo | hi << 16
            if offset & 0x800000:
                offset = (offset & 0x7FFFFF) << 4
            self.entries[number] = (offset, flags_lo | flags_hi << 16)

    def load(self, number: int) -> bytes:
        """A file's contents, unpacked; a packed file keeps its header unless its flags say not.

        Raises:
            KeyError: no such file. ValueError: it is cut off or fails its RNC checks.
        """
        offset, flags = self.entries[number]
        size = flags & 0x3FFFFF
        raw = self.data[offset:offset + size]
        if len(raw) < size:
            raise ValueError(f"file {number}: {len(raw)} of {size} bytes in sky.dsk")
        if flags & 0x800000 or len(raw) < _HEADER or not raw[0] & 0x80:
            return raw
        body = rnc.unpack(raw[_HEADER:])
        return body if flags & 0x400000 else raw[:_HEADER] + body


# ---------------------------------------------------------------- text


Tree = list[tuple[int, int, int]]


def decode_line(data: bytes, tree: Tree, index: int) -> str | None:
    """Line ``index`` of a text section, or None if it does not decode within 1,000 characters."""
    skip_table, bits_base = struct.unpack_from("<HH", data, 0)
    block = index & 0xFE0
    offset = sum(struct.unpack_from(f"<{block >> 5}H", data, 4)) if block else 0
    for k in range(index & 0x1F):  # per-line lengths in 2-bit units; bit 7 means x8 more
        skip = data[skip_table + block + k]
        offset += (skip & 0x7F) << 3 if skip & 0x80 else skip
    pos = (bits_base + (offset >> 2)) * 8 + (offset & 3) * 2  # bit address, MSB first
    chars: list[int] = []
    try:
        while len(chars) < 1000:
            node = 0
            while tree[node][0] or tree[node][1]:
                bit = data[pos >> 3] >> (7 - (pos & 7)) & 1
                pos += 1
                node = tree[node][1] if bit else tree[node][0]
            if tree[node][2] == 0:
                return bytes(chars).decode("latin-1")
            chars.append(tree[node][2])
    except IndexError:
        return None
    return None


def section_lines(data: bytes) -> int:
    """Number of lines in a text section."""
    skip_table, bits_base = struct.unpack_from("<HH", data, 0)
    return bits_base - skip_table


def tree_candidates(binary: bytes) -> list[Tree]:
    """Every 245-node binary tree laid out as (left, right, value) bytes in ``binary``.

    A candidate's internal nodes point to later nodes, its leaves have no children, and every
    node is reached from node 0 exactly once. Node 0 is the root, so node 1 is one of its children.
    """
    b = np.frombuffer(binary, dtype=np.uint8)
    n = len(b) - 3 * _TREE_NODES + 1  # possible start positions
    if n <= 0:
        return []
    left, right = b[:n], b[1:n + 1]
    starts = np.flatnonzero(((left == 1) | (right == 1)) & (left != right) & (left < _TREE_NODES)
                            & (right < _TREE_NODES) & (left > 0) & (right > 0))
    for k in range(1, _TREE_NODES):  # every node is a leaf or points to two later nodes
        left, right = b[starts + 3 * k], b[starts + 3 * k + 1]
        leaf = (left == 0) & (right == 0)
        inner = (left > k) & (right > k) & (left < _TREE_NODES) & (right < _TREE_NODES) & (left != right)
        starts = starts[leaf | inner]
    trees = []
    for start in starts:
        raw = binary[start:start + 3 * _TREE_NODES]
        nodes = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
        if _is_tree(nodes):
            trees.append(nodes)
    return trees


def _is_tree(nodes: Tree) -> bool:
    seen, stack = set(), [0]
    while stack:
        i = stack.pop()
        if i in seen or i >= len(nodes):
            return False
        seen.add(i)
        left, right, _ = nodes[i]
        if left or right:
            stack += [left, right]
    return len(seen) == len(nodes)


_PLAIN = re.compile(r"[A-Za-z0-9 ,.;:'\"!?()$%&\-]")


def find_text_tree(binary: bytes, sections: list[bytes]) -> Tree:
    """The text tree: of the candidate trees in ``binary``, the one that reads ``sections`` best.

    ScummVM holds one tree per game version; the right one decodes every line and turns the
    fewest characters into anything but plain text.

    Raises:
        ValueError: no candidate decodes the text.
    """
    scored = [(score, tree) for tree in tree_candidates(binary)
              if (score := _plain_score(tree, sections)) is not None]
    if not scored:
        raise ValueError("no text tree in the scummvm binary decodes Beneath a Steel Sky's text; "
                         "expected the Debian scummvm package's usr/games/scummvm")
    return max(scored, key=lambda pair: pair[0])[1]


def _plain_score(tree: Tree, sections: list[bytes]) -> int | None:
    """Minus the characters that are not plain text, or None if a line does not decode."""
    score = 0
    for data in sections:
        for i in range(section_lines(data)):
            text = decode_line(data, tree, i)
            if text is None:
                return None
            score += len(_PLAIN.findall(text)) - len(text)
    return score


# ---------------------------------------------------------------- speakers


def speakers(modules: dict[int, bytes]) -> dict[int, str]:
    """Text number -> speaker role, from the speech calls in the script modules.

    Args:
        modules: module file number -> contents (a table of LE u16 script offsets, in words, then
            the scripts as LE u16 words).
    """
    roles: dict[int, str] = {}
    conflicts: set[int] = set()
    for number, data in modules.items():
        words = struct.unpack(f"<{len(data) // 2}H", data[:len(data) // 2 * 2])
        starts = list(words[:words[0]]) if words and words[0] < len(words) else []
        for i in range(6, len(words) - 2):
            if words[i] != _CALL_MCODE or words[i + 1] != 3 or words[i + 2] % 4:
                continue
            function = words[i + 2] // 4
            if not _SPEAK_ME <= function <= _SPEAK_WAIT_DIR or words[i - 4] != _PUSH_NUMBER:
                continue
            kind, value, text = words[i - 6], words[i - 5], words[i - 3]
            if kind == _PUSH_NUMBER:
                role = f"id{value}"
            elif kind == _PUSH_VAR and value == 4 * _CUR_ID:
                role = "foster" if function in (_SPEAK_ME_DIR, _SPEAK_WAIT_DIR) else "unlabelled"
            elif kind == _PUSH_VAR and value == 4 * _PARTNER:
                script = sum(1 for s in starts if s <= i) - 1
                role = f"npc-m{number - _MODULES.start}s{script}"
            else:
                continue
            if roles.get(text, role) != role:
                conflicts.add(text)
            roles[text] = role
    for text in conflicts:  # spoken by several: no single role
        roles[text] = "unlabelled"
    return roles


# ---------------------------------------------------------------- clips


def game_lines(disk: Disk, tree: Tree, language: int) -> Iterator[Line]:
    """Every text line that has a speech file, with its speaker role."""
    roles = speakers({m: disk.load(m) for m in _MODULES if m in disk.entries})
    for section, data in enumerate(text_sections(disk, language)):
        for index in range(section_lines(data)):
            file = _SPEECH_FILE + SPEECH_BASE[section] + index
            if file not in disk.entries or file >= 60000:
                continue
            text = decode_line(data, tree, index)
            if text is None:
                continue
            role = roles.get(section << 12 | index, "unlabelled")
            yield Line(f"s{section}-{index:04d}", file, text, role)


def speech(disk: Disk, file: int) -> np.ndarray:
    """A speech file's samples as float32 in [-1, 1), shape (n,)."""
    pcm = np.frombuffer(disk.load(file)[_HEADER:], dtype=np.uint8)
    return (pcm.astype(np.float32) - 128.0) / 128.0


def decoder(disk: Disk, file: int) -> Callable[[], tuple[np.ndarray, int]]:
    """A function returning the clip's (samples, rate)."""
    return lambda: (speech(disk, file), RATE)


def text_sections(disk: Disk, language: int) -> list[bytes]:
    """The eight text sections of one language."""
    return [disk.load(_TEXT_FILE + SECTIONS * language + s) for s in range(SECTIONS)]
