"""RNC ProPack method 1: round trips through the test's own packer, and damaged blocks."""

from __future__ import annotations

import pytest

from streamasr.corpus import rnc
from tests.game_fixtures import rnc_pack


def test_crc16_is_the_arc_crc() -> None:
    assert rnc.crc16(b"123456789") == 0xBB3D  # the CRC-16/ARC check value
    assert rnc.crc16(b"") == 0


def test_literals_only() -> None:
    data = bytes(range(256)) * 3
    assert rnc.unpack(rnc_pack([(data, None)])) == data


def test_matches_overlap_what_they_copy() -> None:
    block = rnc_pack([(b"abc", (3, 9)), (b"XY", (1, 5)), (b"", (7, 2)), (b"tail", None)])
    assert rnc.unpack(block) == b"abcabcabcabc" + b"XY" + b"YYYYY" + b"XY" + b"tail"


def test_long_runs_and_far_matches() -> None:
    first = bytes((i * 7) % 251 for i in range(3000))
    block = rnc_pack([(first, (2500, 300)), (b"end", None)])
    assert rnc.unpack(block) == first + first[500:800] + b"end"


def test_bad_blocks_say_what_is_wrong() -> None:
    good = rnc_pack([(b"hello world", (6, 5)), (b"!", None)])
    with pytest.raises(ValueError, match="not RNC method 1"):
        rnc.unpack(b"RNC\x02" + good[4:])
    with pytest.raises(ValueError, match="cut off"):
        rnc.unpack(good[:-6])
    damaged = bytearray(good)
    damaged[-4] ^= 0xFF
    with pytest.raises(ValueError, match="CRC"):
        rnc.unpack(bytes(damaged))
    wrong_size = bytearray(good)
    wrong_size[7] += 1  # unpacked size one more than the stream gives
    with pytest.raises(ValueError, match="unpacked to"):
        rnc.unpack(bytes(wrong_size))
