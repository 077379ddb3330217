"""Engine benchmark: runs, reports a sane breakdown, and leaves the engine untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from streamasr import bench, stream
from streamasr.cli import main
from streamasr.stream import Recognizer


def test_bench_engine_breakdown(tiny_recognizer: Recognizer) -> None:
    originals = {attr: getattr(stream, attr) for attr in bench.STAGES.values()}
    threads = torch.get_num_threads()
    result = bench.bench_engine(tiny_recognizer, bench.synthetic_audio(2.0), chunk_ms=100, repeat=2)
    assert {attr: getattr(stream, attr) for attr in bench.STAGES.values()} == originals
    assert torch.get_num_threads() == threads
    assert result.audio_seconds == 2.0 and len(result.wall) == 2 and result.rtf > 0
    assert set(result.stages) == {"front_end", "model", "decoder", "other"}
    assert all(result.stages[k] > 0 for k in ("front_end", "model", "decoder"))
    assert sum(result.shares().values()) == pytest.approx(1.0)
    table = bench.format_engine(result)
    assert "real-time factor" in table and "front_end" in table


def test_bench_cli_json(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, speech_wav: Path) -> None:
    assert main(["bench", "engine", "--model", str(tiny_model_path), "--file", str(speech_wav),
                 "--repeat", "1", "--chunk-ms", "37", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["audio"] == str(speech_wav) and report["audio_seconds"] == 3.765
    assert report["chunk_ms"] == 37 and report["threads"] == 1 and 0 < report["rtf"]
    assert set(report["ms_per_audio_second"]) == {"front_end", "model", "decoder", "other"}


def test_bench_bad_arguments(tiny_recognizer: Recognizer) -> None:
    with pytest.raises(ValueError, match="need chunk_ms > 0, repeat >= 1 and threads >= 1; got chunk_ms=100.0, "
                                         "repeat=0, threads=1"):
        bench.bench_engine(tiny_recognizer, bench.synthetic_audio(0.5), repeat=0)
