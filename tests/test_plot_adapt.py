"""scripts/plot_adapt.py: windowed WER of a voice's recordings, without and with speaker adaptation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script


def write_hyps(path: Path, hyps: list[str], voice: str = "allison") -> Path:
    path.write_text("".join(json.dumps({"audio": f"{i}.wav", "voice": voice, "ref": "press one", "hyp": h,
                                        "duration": 1.0, "seconds": 0.1}) + "\n" for i, h in enumerate(hyps)))
    return path


def test_windowed_wer_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("plot_adapt")
    plain = write_hyps(tmp_path / "plain.jsonl", ["press won"] * 6)
    adapted = write_hyps(tmp_path / "adapted.jsonl", ["press won"] * 3 + ["press one"] * 3)
    rows = script.read_hyps(adapted)
    assert script.windowed_wer(rows, 2) == [50.0, 50.0, 50.0, 25.0, 0.0, 0.0]
    out = tmp_path / "adapt.png"
    assert script.main([str(plain), str(adapted), str(out), "--window", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("other", "argv", "message"), [
    (["press one"] * 5, [], "must list the same recordings in the same order"),
    (["press one"] * 6, ["--window", "0"], "--window must be at least 1, got 0"),
    (["press one"] * 6, ["--window", "4"], "no voice has 8 recordings; lower --window"),
    (["press one"] * 6, ["--voice", "bob"], "no recordings of voice 'bob'"),
])
def test_bad_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], other: list[str],
                            argv: list[str], message: str) -> None:
    plain = write_hyps(tmp_path / "plain.jsonl", ["press won"] * 6)
    adapted = write_hyps(tmp_path / "adapted.jsonl", other)
    assert load_script("plot_adapt").main([str(plain), str(adapted), str(tmp_path / "x.png"), "--window", "3", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_line_that_is_not_a_hypothesis_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = write_hyps(tmp_path / "plain.jsonl", ["press won"] * 6)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "0.wav"}\n')
    assert load_script("plot_adapt").main([str(plain), str(bad), str(tmp_path / "x.png")]) == 2
    assert f"{bad}:1: expected a streamasr eval --hyps row" in capsys.readouterr().err
