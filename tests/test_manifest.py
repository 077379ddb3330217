"""Manifests and atomic writes: the one reader and writer every part of the project uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamasr.atomic import atomic_path
from streamasr.errors import StreamAsrError
from streamasr.manifest import Utterance, manifest_stats, read_manifest, read_rows, voice_stats, write_manifest


def test_rows_keep_extra_keys_and_utterances_drop_them(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    rows = [{"audio": "a.wav", "text": "hi", "duration": 1.5, "voice": "fotaq:joe", "raw": "Hi!"},
            Utterance("/x/b.wav", "yo", 2.0)]
    assert write_manifest(path, rows) == 2
    assert read_rows(path)[0]["raw"] == "Hi!"
    assert read_manifest(path) == [Utterance(str(tmp_path / "a.wav"), "hi", 1.5, "fotaq:joe"),
                                   Utterance("/x/b.wav", "yo", 2.0, "")]
    assert read_manifest(path, max_duration=1.8) == read_manifest(path)[:1]


def test_partly_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "growing.jsonl"
    whole = json.dumps({"audio": "a.wav", "text": "x", "duration": 1})
    path.write_text(whole + "\n\n" + whole[:20])
    with pytest.raises(StreamAsrError, match=r"growing.jsonl:3: bad manifest line"):
        read_rows(path)
    assert len(read_rows(path, partial_tail=True)) == 1
    path.write_text(whole[:20] + "\n" + whole + "\n")  # only the last line may be partial
    with pytest.raises(StreamAsrError, match=r"growing.jsonl:1: bad manifest line"):
        read_rows(path, partial_tail=True)


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(StreamAsrError, match=r"manifest .*none.jsonl does not exist"):
        read_manifest(tmp_path / "none.jsonl")
    path = tmp_path / "list.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(StreamAsrError, match=r"list.jsonl:1: bad manifest line \(a list\)"):
        read_rows(path)


def test_stats_per_voice() -> None:
    items = [Utterance("a", "x", 1800.0, "b"), Utterance("b", "x", 3600.0, "a"), Utterance("c", "x", 1800.0, "a")]
    assert voice_stats(items) == {"a": (2, 1.5), "b": (1, 0.5)}
    assert manifest_stats(items) == {"utterances": 3, "hours": 2.0, "voices": {
        "a": {"utterances": 2, "hours": 1.5}, "b": {"utterances": 1, "hours": 0.5}}}


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.wav"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".wav" and tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.wav"]  # nothing left behind
