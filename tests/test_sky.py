"""Beneath a Steel Sky: disk index, RNC-packed files, Huffman text, the text tree's recovery, speakers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamasr.corpus import sky
from tests.game_fixtures import bass_files, sky_disk, sky_module, sky_text_section, sky_tree


def _disk(tmp_path: Path, files: dict[int, bytes], packed: set[int]) -> sky.Disk:
    dnr, dsk = sky_disk(files, packed)
    (tmp_path / "sky.dnr").write_bytes(dnr)
    (tmp_path / "sky.dsk").write_bytes(dsk)
    return sky.Disk(tmp_path)


def test_disk_reads_plain_and_packed_files(tmp_path: Path) -> None:
    disk = _disk(tmp_path, {7: b"plain bytes", 9: b"packed " * 50}, packed={9})
    assert disk.load(7) == b"plain bytes"
    assert disk.load(9)[22:] == b"packed " * 50  # the header stays in front
    with pytest.raises(KeyError):
        disk.load(8)


def test_text_lines_decode() -> None:
    lines = ["Dummy message", "", "A line long enough to need the long skip form, " * 3]
    data = sky_text_section(lines, sky_tree())
    assert sky.section_lines(data) == 3
    assert [sky.decode_line(data, sky_tree(), i) for i in range(3)] == lines


def test_text_tree_found_among_decoys() -> None:
    tree = sky_tree()
    sections = [sky_text_section(["It's 96% done, Foster.", "(c)Revolution 1993"], tree)]
    junk = bytes(range(256)) * 8
    binary = junk + bytes(b for n in sky_tree(rotate=40) for b in n) + junk + bytes(b for n in tree for b in n)
    assert len(sky.tree_candidates(binary)) == 2
    assert sky.find_text_tree(binary, sections) == tree
    with pytest.raises(ValueError, match="no text tree"):
        sky.find_text_tree(junk, sections)


def test_speakers_from_script_calls() -> None:
    module = sky_module([(2, 4122, 5, 35), (0, 48, 6, 36), (0, 48, 7, 35), (0, 480, 8, 37),
                         (2, 1, 9, 35), (2, 2, 9, 35)])  # text 9 has two speakers
    assert sky.speakers({60400: module}) == {5: "id4122", 6: "foster", 7: "unlabelled",
                                             8: "npc-m0s0", 9: "unlabelled"}


def test_game_lines_and_speech(tmp_path: Path) -> None:
    game, scummvm, expected = bass_files()
    for name, data in {**game, **scummvm}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    disk = sky.Disk(tmp_path / sky.GAME_DIR)
    tree = sky.find_text_tree((tmp_path / sky.SCUMMVM).read_bytes(), sky.text_sections(disk, 3))
    lines = list(sky.game_lines(disk, tree, sky.LANGUAGES["us"]))
    assert {line.clip: (line.text, line.role) for line in lines} == expected
    audio = sky.speech(disk, lines[0].file)
    assert audio.dtype == np.float32 and len(audio) == int(0.8 * sky.RATE)
    assert 0.2 < np.abs(audio).max() < 1.0
