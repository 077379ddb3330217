"""scripts/eval_model.sh: the model card's three scorings of one model, run on real audio."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import ASSETS, SCRIPTS

SCRIPT = SCRIPTS / "eval_model.sh"


def write_manifest(path: Path, voice: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"audio": str(ASSETS / "sample_flite_rms.wav"), "text": "the number is on the door",
           "duration": 2.0, "voice": voice}
    path.write_text(json.dumps(row) + "\n")


@pytest.mark.parametrize("kokoro_test", [False, True])
def test_scores_the_three_sets_three_ways(tmp_path: Path, tiny_model_path: Path, kokoro_test: bool) -> None:
    corpus, devset, games, out = tmp_path / "corpus", tmp_path / "devset", tmp_path / "games", tmp_path / "out"
    write_manifest(corpus / "test.jsonl", "flite_rms")
    write_manifest(corpus / "heldout.jsonl", "piper_joe")
    write_manifest(devset / "dev.jsonl", "allison")
    sets = ["test.jsonl", "heldout.jsonl", "dev.jsonl"]
    if kokoro_test:  # (a) for the Kokoro voices, scored when the corpus has it
        write_manifest(corpus / "kokoro_test.jsonl", "kokoro_af_alloy")
        sets.append("kokoro_test.jsonl")
        write_manifest(games / "bass" / "test.jsonl", "bass:npc-m0s64")  # a game's held-out roles
        sets.append("test.jsonl")
    done = subprocess.run(["bash", str(SCRIPT), str(tiny_model_path), str(out), str(corpus), str(devset), str(games)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for name in ("beam", "greedy", "greedy_int8"):
        report = json.loads((out / f"model_eval_{name}.json").read_text())
        assert [Path(m).name for m in report] == sets
        assert all(r["all"]["utterances"] == 1 and r["all"]["wer"] >= 0 for r in report.values())
        assert name in done.stdout
    assert report[str(devset / "dev.jsonl")]["decoder"]["method"] == "greedy"
    assert len((out / "hyps_beam.jsonl").read_text().splitlines()) == len(sets)
    assert (out / "model_eval.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_set_is_named(tmp_path: Path, tiny_model_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write_manifest(corpus / "test.jsonl", "flite_rms")
    done = subprocess.run(["bash", str(SCRIPT), str(tiny_model_path), str(tmp_path / "out"), str(corpus),
                           str(tmp_path / "devset")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{corpus / 'heldout.jsonl'} does not exist" in done.stderr
    assert not (tmp_path / "out").exists()


def test_usage_without_arguments() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage:" in done.stderr
