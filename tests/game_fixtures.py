"""Builders of small files in the two games' formats, for the importer tests.

Each writer mirrors the format description in its reader's module docstring, so a reader that
drifts from the format fails these tests.
"""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from streamasr.corpus import rnc, sky

# ---------------------------------------------------------------- RNC method 1


class _BitWriter:
    """LSB-first bits in 16-bit LE words, with raw bytes placed where the reader looks ahead."""

    def __init__(self) -> None:
        self.bits: list[int] = []
        self.raw: dict[int, bytearray] = {}  # word index -> bytes that sit in front of it

    def write(self, value: int, n: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(n)]

    def write_bytes(self, data: bytes) -> None:
        # The reader holds word ceil(bits / 16) as look-ahead; literal bytes come before it.
        self.raw.setdefault(-(-len(self.bits) // 16), bytearray()).extend(data)

    def getvalue(self) -> bytes:
        words = -(-len(self.bits) // 16) + 2  # two words of padding: the reader looks ahead
        out = bytearray()
        for w in range(words):
            out += self.raw.get(w, b"")
            chunk = self.bits[16 * w:16 * w + 16]
            out += struct.pack("<H", sum(b << i for i, b in enumerate(chunk)))
        return bytes(out)


def _symbol(value: int) -> tuple[int, int, int]:
    """(symbol, extra bits value, extra bit count) of a table value."""
    if value < 2:
        return value, 0, 0
    s = value.bit_length()
    return s, value - (1 << (s - 1)), s - 1


def _table(values: list[int]) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """Code lengths for the symbols of ``values`` (all the same length) and symbol -> (code, length)."""
    symbols = sorted({_symbol(v)[0] for v in values}) or [0]
    size = max(1, (len(symbols) - 1).bit_length())
    lengths = [size if s in symbols else 0 for s in range(max(symbols) + 1)]
    codes: dict[int, tuple[int, int]] = {}
    for code, s in enumerate(symbols):  # canonical: in symbol order, stored bit-reversed
        codes[s] = (int(f"{code:0{size}b}"[::-1], 2), size)
    return lengths, codes


def rnc_pack(pieces: list[tuple[bytes, tuple[int, int] | None]]) -> bytes:
    """An RNC method-1 block of one chunk: each piece is a literal run and an optional (back, count) match.

    Only the last piece may lack a match, as in the format.
    """
    out = bytearray()
    for literal, match in pieces:
        out += literal
        if match:
            back, count = match
            for _ in range(count):
                out.append(out[-back])
    runs = [len(lit) for lit, _ in pieces]
    backs = [m[0] - 1 for _, m in pieces if m]
    counts = [m[1] - 2 for _, m in pieces if m]
    bits = _BitWriter()
    bits.write(0, 2)
    tables = [_table(runs), _table(backs), _table(counts)]
    for lengths, _ in tables:
        bits.write(len(lengths), 5)
        for n in lengths:
            bits.write(n, 4)
    bits.write(len(pieces), 16)

    def value(codes: dict[int, tuple[int, int]], v: int) -> None:
        s, extra, n = _symbol(v)
        code, size = codes[s]
        bits.write(code, size)
        bits.write(extra, n)

    for literal, match in pieces:
        value(tables[0][1], len(literal))
        if literal:
            bits.write_bytes(literal)
        if match:
            value(tables[1][1], match[0] - 1)
            value(tables[2][1], match[1] - 2)
    body = bits.getvalue()
    header = rnc.MAGIC + struct.pack(">IIHHBB", len(out), len(body), rnc.crc16(out), rnc.crc16(body), 0, 1)
    return header + body


# ---------------------------------------------------------------- packages


def build_deb(root: Path, package: str, files: dict[str, bytes], out: Path) -> Path:
    """A .deb of ``files`` (path in the package -> contents), built with dpkg-deb."""
    tree = root / f"{package}-tree"
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: test fixture\n")
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


def tone(seconds: float, rate: int, freq: float = 220.0) -> np.ndarray:
    """A speech-length test signal: a tone with a syllable-like envelope, float32."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


# ---------------------------------------------------------------- Flight of the Amazon Queen


def _pstring(text: str, align: int, at: int) -> bytes:
    """A length-prefixed string starting at offset ``at``, padded so the next starts aligned."""
    raw = bytes([len(text)]) + text.encode("latin-1")
    end = at + len(raw)
    return raw + b"\0" * ((-end) % align)


def queen_dog(talk_key: int, joe: list[tuple[int, str]], person: list[tuple[int, str]],
              greeting: str, answer: str) -> bytes:
    """A dialogue resource: 20-byte header, dialogue header, Joe's and the person's lists."""
    level_max = 1
    body = bytearray(b"\0" * (32 + level_max * 96))
    for line_id, text in joe:
        body += struct.pack(">hh", 0, line_id)
        body += _pstring(text, 4, 20 + len(body))
    person_ofs = len(body)
    for line_id, text in person:
        body += struct.pack(">hh", 0, line_id)
        body += _pstring(text, 4, 20 + len(body))
    person2_ofs = len(body)
    body += _pstring(greeting, 2, 20 + len(body))
    body += _pstring(answer, 2, 20 + len(body))
    struct.pack_into(">h4H", body, 0, level_max, 0, talk_key, len(joe), len(person))
    struct.pack_into(">3H", body, 22, person_ofs, 0, person2_ofs)
    return b"\0" * 20 + bytes(body)


def queen_archive(entries: dict[str, bytes]) -> bytes:
    """A ``queen.1c``: QTBL header, sorted 21-byte table, then the entries."""
    names = sorted(entries)
    table_end = 15 + 21 * len(names)
    head = b"QTBL" + b"CEM10\0" + b"\0\0" + b"\x01" + struct.pack(">H", len(names))
    table, data, offset = bytearray(), bytearray(), table_end
    for name in names:
        table += name.encode().ljust(12, b"\0") + b"\x01" + struct.pack(">II", offset, len(entries[name]))
        data += entries[name]
        offset += len(entries[name])
    return head + bytes(table) + bytes(data)


def mp3(seconds: float, freq: float = 220.0) -> bytes:
    """A short MP3 labelled 11,025 Hz, like the game's speech entries."""
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, 11025, freq), 11025, format="MP3")
    return buf.getvalue()


def fotaq_files() -> tuple[dict[str, bytes], dict[str, str]]:
    """The package files of a tiny FOTAQ and the expected text of each clip."""
    dog = queen_dog(6, [(0, "Excuse me Bob.*03"), (9, "I think I'll browse.*03Bye.*02")],
                    [(1, "What can I do for 4 you?")], "Hello again Joe.", "Howdy Bob.*02")
    jas = b"\0" * 20 + struct.pack(">4H", 1, 1, 1, 2)  # rooms, names, objects, descriptions
    jas2 = "\r\n".join(["It looks NICE*03", "Ummm...", "hatch", "room", *["verb"] * 12,
                        "It doesn't seem to open*03", *["answer"] * 39]).encode("latin-1")
    expected = {"06SSSSJ1": "Excuse me Bob.", "060009J1": "I think I'll browse.", "060009J2": "Bye.",
                "060001P1": "What can I do for 4 you?", "06XXXXP1": "Hello again Joe.",
                "06XXXXJ1": "Howdy Bob.", "JOE00011": "It doesn't seem to open",
                "JOE00411": "It looks NICE", "JOE00421": "Ummm..."}
    entries = {"BOB1.DOG": dog, "QUEEN.JAS": jas, "QUEEN2.JAS": jas2}
    for i, clip in enumerate(expected):
        entries[f"{clip}.SB"] = mp3(0.6 + 0.1 * i, 200.0 + 20 * i)
    entries["BROKEN1.SB"] = b"not an mp3"  # a speech entry no line names: never read
    entries["060009J2.SB"] = b"not an mp3 either"  # a damaged clip: reported and skipped
    archive = queen_archive(entries)
    files = {"usr/share/scummvm/flight-of-the-amazon-queen/queen.1c": archive,
             "usr/share/doc/flight-of-the-amazon-queen/copyright": b"(c) test fixture\n"}
    return files, expected


# ---------------------------------------------------------------- Beneath a Steel Sky

# A complete binary tree of 245 nodes: 122 inner nodes, 123 leaves holding NUL and 122 characters.
_CHARS = bytes(range(32, 127)) + bytes(range(0xA0, 0xA0 + 27))


def sky_tree(rotate: int = 0) -> sky.Tree:
    """The fixture's text tree; ``rotate`` shifts the characters to make a decoy of the same shape."""
    n = 245
    values = [0] + list(_CHARS[rotate:] + _CHARS[:rotate])
    tree, leaf = [], 0
    for i in range(n):
        if 2 * i + 2 < n:
            tree.append((2 * i + 1, 2 * i + 2, 0))
        else:
            tree.append((0, 0, values[leaf]))
            leaf += 1
    return tree


def _paths(tree: sky.Tree) -> dict[int, str]:
    paths, stack = {}, [(0, "")]
    while stack:
        node, path = stack.pop()
        left, right, value = tree[node]
        if left or right:
            stack += [(left, path + "0"), (right, path + "1")]
        else:
            paths[value] = path
    return paths


def sky_text_section(lines: list[str], tree: sky.Tree) -> bytes:
    """A text section: skip-table offset, bit-stream base, per-line lengths, then the bit stream."""
    paths = _paths(tree)
    bits = ""
    skips = []
    for line in lines:
        code = "".join(paths[c] for c in line.encode("latin-1")) + paths[0]
        code += "0" * ((-len(code)) % 16)  # whole 2-bit units, and a multiple of 8 units when long
        units = len(code) // 2
        assert units < 128 or units % 8 == 0
        skips.append(units if units < 128 else 0x80 | units >> 3)
        bits += code
    skip_table = 4
    base = skip_table + len(lines)
    stream = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return struct.pack("<HH", skip_table, base) + bytes(skips) + stream


def sky_module(calls: list[tuple[int, int, int, int]]) -> bytes:
    """A script module: a one-script offset table, then ``push speaker; push text; push 9; call``.

    Each call is (push kind, speaker value, text number, mcode function).
    """
    words = [1]
    for kind, value, text, function in calls:
        words += [kind, value, 2, text, 2, 9, 11, 3, function * 4]
    return struct.pack(f"<{len(words)}H", *words)


def sky_disk(files: dict[int, bytes], packed: set[int]) -> tuple[bytes, bytes]:
    """(sky.dnr, sky.dsk): files in ``packed`` are stored as a header plus RNC, the rest plain."""
    index = bytearray(struct.pack("<I", len(files)))
    data = bytearray()
    for number, content in sorted(files.items()):
        offset = len(data)
        if number in packed:
            header = struct.pack("<11H", 0x81, *([0] * 5), len(content) + 22, *([0] * 4))
            stored = header + rnc_pack([(content, None)])
            flags = len(stored)
        else:
            stored, flags = content, len(content) | 0x800000
        data += stored + b"\0" * ((-len(stored)) % 16)
        index += struct.pack("<H", number) + (offset >> 4 | 0x800000).to_bytes(3, "little") + flags.to_bytes(3, "little")
    return bytes(index), bytes(data)


def bass_files() -> tuple[dict[str, bytes], dict[str, bytes], dict[str, tuple[str, str]]]:
    """Package files of a tiny BASS and of a tiny scummvm, and the expected (text, role) per clip."""
    tree = sky_tree()
    sections = {0: ["Dummy message", "Hello, Joey.", "It's WELL smart!", "Phoenix at 96% now."],
                1: ["Get OUT of here!", "Hmm."]}
    files: dict[int, bytes] = {}
    for section in range(sky.SECTIONS):
        lines = sections.get(section, ["Dummy"])
        files[60600 + 8 * sky.LANGUAGES["us"] + section] = sky_text_section(lines, tree)
    speech = {(0, 1), (0, 2), (0, 3), (1, 0), (1, 1)}
    for section, index in speech:
        pcm = (tone(0.8, sky.RATE, 180.0 + 10 * index) * 100 + 128).astype(np.uint8).tobytes()
        files[50000 + sky.SPEECH_BASE[section] + index] = pcm
    files[60400] = sky_module([(2, 4122, 1, 35), (0, 48, 2, 36), (0, 480, 1 << 12, 35), (0, 48, 3, 35)])
    dnr, dsk = sky_disk(files, packed={50000 + sky.SPEECH_BASE[s] + i for s, i in speech})
    game = {f"{sky.GAME_DIR}/sky.dnr": dnr, f"{sky.GAME_DIR}/sky.dsk": dsk,
            "usr/share/doc/beneath-a-steel-sky/copyright": b"(c) test fixture\n"}
    junk = bytes(range(256)) * 4
    binary = junk + _tree_bytes(sky_tree(rotate=33)) + junk + _tree_bytes(tree) + junk
    scummvm = {sky.SCUMMVM: binary}
    expected = {"s0-0001": ("Hello, Joey.", "id4122"), "s0-0002": ("It's WELL smart!", "foster"),
                "s0-0003": ("Phoenix at 96% now.", "unlabelled"),
                "s1-0000": ("Get OUT of here!", "npc-m0s0"), "s1-0001": ("Hmm.", "unlabelled")}
    return game, scummvm, expected


def _tree_bytes(tree: sky.Tree) -> bytes:
    return bytes(b for node in tree for b in node)
