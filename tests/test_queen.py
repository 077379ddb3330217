"""Flight of the Amazon Queen: archive table, segments, and every line kind paired with its clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamasr.corpus import queen
from tests.game_fixtures import fotaq_files, queen_archive


def _archive(tmp_path: Path, entries: dict[str, bytes]) -> queen.Archive:
    path = tmp_path / "queen.1c"
    path.write_bytes(queen_archive(entries))
    return queen.Archive(path)


def test_segments_cut_at_commands() -> None:
    assert queen.segments("Hey, over here!*01") == ["Hey, over here!", ""]
    assert queen.segments("*FLHey!*01Oh.*15") == ["", "Hey!", "Oh.", ""]
    assert queen.segments("Hi*XY(128,112)00There") == ["Hi", "There"]  # XY carries 11 more characters
    assert queen.segments("plain") == ["plain"]


def test_every_line_kind_pairs(tmp_path: Path) -> None:
    files, expected = fotaq_files()
    path = tmp_path / "queen.1c"
    path.write_bytes(next(data for name, data in files.items() if name.endswith("queen.1c")))
    lines = list(queen.archive_lines(queen.Archive(path)))
    assert {line.clip: line.text for line in lines} == expected
    roles = {line.clip: line.role for line in lines}
    assert roles["060001P1"] == roles["06XXXXP1"] == "bob"  # the dialogue partner, from BOB1.DOG
    assert roles["060009J1"] == roles["JOE00011"] == "joe"


def test_archive_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "queen.1c"
    bad.write_bytes(b"RIFF" + b"\0" * 40)
    with pytest.raises(ValueError, match=r"queen.1c: not a Flight of the Amazon Queen archive"):
        queen.Archive(bad)
    archive = _archive(tmp_path, {"A.SB": b"x" * 10})
    archive.data = archive.data[:-5]  # the file was cut short after the table was read
    with pytest.raises(ValueError, match="runs past the end"):
        archive.read("A.SB")
