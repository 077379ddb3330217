"""Rob Northen Compression (RNC) ProPack, method 1: the decompressor, written from the format.

An RNC block is an 18-byte header then a bit stream:

    "RNC" 0x01 | BE u32 unpacked size | BE u32 packed size | BE u16 CRC of the unpacked data |
    BE u16 CRC of the packed data | u8 leeway | u8 chunk count

The stream is read least-significant bit first from little-endian 16-bit words, with the next word
always loaded ahead. It starts with two flag bits, then each chunk holds three Huffman tables
(literal-run lengths, match distances, match lengths: a 5-bit symbol count, then a 4-bit code
length per symbol, canonical codes stored bit-reversed) and a 16-bit count of sub-chunks. A
sub-chunk is a literal run (its bytes are copied straight from the input, after which the
look-ahead word is reloaded) and, except for the last, one match. A table symbol ``s`` stands for
the value ``s`` when below 2, otherwise ``2**(s-1)`` plus ``s-1`` more bits.
"""

from __future__ import annotations

import struct

MAGIC = b"RNC\x01"
HEADER = 18


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16 as RNC computes it (reflected polynomial 0xA001, initial value 0)."""
    crc = 0
    for byte in bytes(data):
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        value = n
        for _ in range(8):
            value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
        table.append(value)
    return table


_CRC_TABLE = _crc_table()


class _Bits:
    """LSB-first bit reader over 16-bit little-endian words, one word loaded ahead."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos  # byte position of the look-ahead word
        self.buf = self._word(pos)
        self.count = 16

    def _word(self, pos: int) -> int:
        lo = self.data[pos] if pos < len(self.data) else 0
        hi = self.data[pos + 1] if pos + 1 < len(self.data) else 0
        return lo | hi << 8

    def peek(self, n: int) -> int:
        return self.buf & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        self.buf >>= n
        self.count -= n
        if self.count < 16:
            self.pos += 2
            self.buf |= self._word(self.pos) << self.count
            self.count += 16

    def read(self, n: int) -> int:
        value = self.peek(n)
        self.skip(n)
        return value

    def take_bytes(self, n: int) -> bytes:
        """``n`` raw bytes from the look-ahead position; the look-ahead word is then reloaded."""
        if self.pos + n > len(self.data):
            raise ValueError(f"RNC literal run of {n} bytes at {self.pos} runs past the end of the data")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        self.count -= 16
        self.buf = (self.buf & ((1 << self.count) - 1)) | self._word(self.pos) << self.count
        self.count += 16
        return out


def _reverse(code: int, length: int) -> int:
    out = 0
    for _ in range(length):
        out = out << 1 | (code & 1)
        code >>= 1
    return out


class _Table:
    """A canonical Huffman table read from the stream: codes (stored bit-reversed) by length."""

    def __init__(self, bits: _Bits) -> None:
        count = bits.read(5)
        lengths = [bits.read(4) for _ in range(count)]
        self.codes: dict[tuple[int, int], int] = {}  # (length, reversed code) -> symbol
        code = 0
        for length in range(1, 17):
            for symbol, size in enumerate(lengths):
                if size == length:
                    self.codes[(length, _reverse(code, length))] = symbol
                    code += 1
            code <<= 1
        self.lengths = sorted({length for length, _ in self.codes})

    def value(self, bits: _Bits) -> int:
        for length in self.lengths:
            symbol = self.codes.get((length, bits.peek(length)))
            if symbol is not None:
                bits.skip(length)
                if symbol < 2:
                    return symbol
                return (1 << (symbol - 1)) | bits.read(symbol - 1)
        raise ValueError("RNC data holds a code its Huffman table does not")


def unpack(data: bytes) -> bytes:
    """Decompress one RNC method-1 block (header included).

    Raises:
        ValueError: not RNC method 1, truncated, or the unpacked data fails its CRC.
    """
    if data[:4] != MAGIC:
        raise ValueError(f"not RNC method 1 data (starts with {data[:4]!r}, expected {MAGIC!r})")
    if len(data) < HEADER:
        raise ValueError(f"RNC header cut off: {len(data)} bytes, expected at least {HEADER}")
    size, packed, crc_unpacked, crc_packed = struct.unpack_from(">IIHH", data, 4)
    chunks = data[17]
    body = data[HEADER:HEADER + packed]
    if len(body) < packed:
        raise ValueError(f"RNC data cut off: {len(body)} of {packed} packed bytes")
    if crc16(body) != crc_packed:
        raise ValueError("RNC packed data fails its CRC")
    bits = _Bits(data, HEADER)
    bits.skip(2)  # lock and key flags
    out = bytearray()
    for _ in range(chunks):
        raw, distance, length = _Table(bits), _Table(bits), _Table(bits)
        for sub in range(bits.read(16), 0, -1):
            run = raw.value(bits)
            if run:
                out += bits.take_bytes(run)
            if sub > 1:
                back = distance.value(bits) + 1
                count = length.value(bits) + 2
                if back > len(out):
                    raise ValueError(f"RNC match reaches {back} bytes back with {len(out)} written")
                start = len(out) - back
                if count <= back:
                    out += out[start:start + count]
                else:  # the match overlaps what it writes: byte by byte
                    for i in range(count):
                        out.append(out[start + i])
        if len(out) >= size:
            break
    if len(out) != size:
        raise ValueError(f"RNC data unpacked to {len(out)} bytes, expected {size}")
    if crc16(out) != crc_unpacked:
        raise ValueError("RNC unpacked data fails its CRC")
    return bytes(out)
