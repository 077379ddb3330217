"""Command line: help texts, model errors, and commands that cannot be imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamasr import cli

from streamasr.engine import checkpoint
from streamasr.cli import main


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "transcribe" in out and "bench" in out


@pytest.mark.parametrize("argv, expected", [
    (["transcribe", "--help"], ["--format {txt,json,jsonl,srt,vtt}", "--chunk-ms MS", "--output-dir DIR",
                                "--silence-after-speech FLOAT", "--max-segment FLOAT", "--progress"]),
    (["bench", "--help"], ["engine"]),
    (["bench", "engine", "--help"], ["--threads", "--chunk-ms MS", "--repeat", "--json", "--file PATH"]),
])
def test_subcommand_help(capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines by terminal width
    for text in expected:
        assert text in out


def test_unknown_model_path(capsys: pytest.CaptureFixture[str], tmp_path: Path, speech_wav: Path) -> None:
    code = main(["transcribe", "--model", str(tmp_path / "nope.pt"), str(speech_wav)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == (f"streamasr transcribe: error: model file {tmp_path / 'nope.pt'} does not exist; "
                   "expected a streamasr checkpoint (.pt)\n")


def test_corrupt_model_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, speech_wav: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["transcribe", "--model", str(tmp_path / "bad.pt"), str(speech_wav)]) == 2
    assert "bad.pt is not a readable checkpoint" in capsys.readouterr().err


def test_missing_default_model(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path, speech_wav: Path) -> None:
    monkeypatch.setattr(checkpoint, "default_model_path", lambda: tmp_path / "default.pt")
    assert main(["transcribe", str(speech_wav)]) == 2
    err = capsys.readouterr().err
    assert "no model given and the bundled default model" in err and "expected --model PATH" in err


def test_unknown_command_and_missing_files(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["frobnicate"], ["transcribe"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "the following arguments are required: FILE" in capsys.readouterr().err


def test_command_that_cannot_be_imported(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, speech_wav: Path) -> None:
    """A command whose dependencies are missing (e.g. the mic extra) must not break the others."""
    monkeypatch.setitem(cli.COMMANDS, "broken", "tests.broken_command_that_does_not_exist")
    monkeypatch.setattr(cli.importlib, "import_module", _fake_import)
    assert main(["broken", "--port", "1"]) == 2
    assert "this command cannot be loaded: No module named 'sounddevice'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "broken" in capsys.readouterr().out


def test_missing_websockets_leaves_train_working(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare GPU machine without websockets can still train; the network commands say why they cannot run."""
    for name in [m for m in sys.modules if m.startswith("streamasr.") and m.split(".")[1] in
                 ("bench", "service", "client")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ["websockets"] + [m for m in sys.modules if m.startswith("websockets.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--device" in capsys.readouterr().out
    assert main(["bench", "server"]) == 2
    assert "this command cannot be loaded" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "install it with: pip install 'streamasr[serve]'" in capsys.readouterr().err


def test_the_core_needs_no_extra() -> None:
    """``transcribe`` and the Python API run on the core dependencies alone (pyproject).

    (tqdm is left out of the check: torch imports it on its own when it is installed.)"""
    code = ("import sys, streamasr, streamasr.transcribe, streamasr.formats\n"
            "extra = {'websockets', 'jiwer', 'sounddevice', 'matplotlib', 'psutil'}\n"
            "print(sorted(extra & {m.split('.')[0] for m in sys.modules}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_real_import = cli.importlib.import_module


def _fake_import(name: str) -> object:
    if name == "tests.broken_command_that_does_not_exist":
        raise ModuleNotFoundError("No module named 'sounddevice'", name="sounddevice")
    return _real_import(name)
