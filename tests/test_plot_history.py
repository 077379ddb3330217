"""scripts/plot_history.py: the model-history figure from the bundled score table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script

HISTORY = Path(__file__).resolve().parent.parent / "docs" / "model_history.json"


def test_plots_the_bundled_history(tmp_path: Path) -> None:
    out = tmp_path / "history.png"
    assert load_script("plot_history").main([str(HISTORY), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(HISTORY.read_text())
    # The last row is the bundled default; the README's model card quotes the same scores.
    readme = (HISTORY.parent.parent / "README.md").read_text()
    assert f"**{rows[-1]['c']:.1f} %**" in readme


def test_row_without_a_score_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "history.json"
    bad.write_text(json.dumps([{"model": "m", "session": 1, "a": 30.0, "c": 50.0, "dev_prompts": 551}]))
    with pytest.raises(SystemExit, match=r"row 0 of .*history.json lacks b"):
        load_script("plot_history").main([str(bad), str(tmp_path / "x.png")])


def test_not_a_list_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "history.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(SystemExit, match="holds dict; expected a non-empty JSON list"):
        load_script("plot_history").main([str(bad), str(tmp_path / "x.png")])
