"""Benchmarks: the engine breakdown, and a smoke run of the server load test (structure, not timing)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from streamasr.manifest import read_manifest
from streamasr import bench

from streamasr.bench import loadtest

from streamasr.engine import stream
from streamasr.engine.adapt import AdaptConfig
from streamasr.engine.audio import load_audio
from streamasr.engine.beam import DecoderConfig
from streamasr.cli import main
from streamasr.engine.stream import Recognizer


@pytest.fixture(scope="module")
def default_recognizer_greedy() -> Recognizer:
    return Recognizer.load(None, decoder=DecoderConfig(method="greedy"))


def test_bench_engine_breakdown(tiny_recognizer: Recognizer) -> None:
    originals = {attr: getattr(stream, attr) for attr in bench.STAGES.values()}
    threads = torch.get_num_threads()
    result = bench.bench_engine(tiny_recognizer, bench.synthetic_audio(2.0), chunk_ms=100, repeat=2)
    assert {attr: getattr(stream, attr) for attr in bench.STAGES.values()} == originals
    assert torch.get_num_threads() == threads
    assert result.audio_seconds == 2.0 and len(result.wall) == 2 and result.rtf > 0
    assert set(result.stages) == {"front_end", "model", "decoder", "adapt", "other"}
    assert all(result.stages[k] > 0 for k in ("front_end", "model", "decoder"))
    assert sum(result.shares().values()) == pytest.approx(1.0)
    table = bench.format_engine(result)
    assert "real-time factor" in table and "front_end" in table


def test_bench_cli_json(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, speech_wav: Path) -> None:
    assert main(["bench", "engine", "--model", str(tiny_model_path), "--file", str(speech_wav),
                 "--repeat", "1", "--chunk-ms", "37", "--threads", "1", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["runs"]
    assert report["audio"] == str(speech_wav) and report["audio_seconds"] == 3.765
    assert report["chunk_ms"] == 37 and report["threads"] == 1 and 0 < report["rtf"]
    assert set(report["ms_per_audio_second"]) == {"front_end", "model", "decoder", "adapt", "other"}


def test_bench_engine_times_speaker_adaptation(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    audio = load_audio(speech_wav)
    plain = bench.bench_engine(tiny_recognizer, audio, repeat=1)
    adapted = bench.bench_engine(tiny_recognizer, audio, repeat=1, adapt=AdaptConfig(lr=3e-3))
    # The learning step at the end is a forward and a backward pass over the whole file.
    assert adapted.stages["adapt"] > plain.stages["adapt"] + 0.5 * adapted.stages["model"]
    assert adapted.state_bytes > plain.state_bytes + 3.0 * 100 * 80 * 4  # 3 s of features kept to learn from


def test_bench_engine_threads_and_quantized_table(capsys: pytest.CaptureFixture[str], tiny_model_path: Path) -> None:
    # A run on all threads is left out: a second torch thread crawls while other tests hold a core.
    assert main(["bench", "engine", "--model", str(tiny_model_path), "--quantize", "--repeat", "1",
                 "--chunk-ms", "1000", "--threads", "1,1"]) == 0
    out = capsys.readouterr().out
    assert "model tiny-int8" in out and out.count("1 thread(s)") == 2
    assert bench._thread_counts("1,all") == [1, os.cpu_count()]  # the default
    with pytest.raises(ValueError, match="--threads takes thread counts >= 1 or 'all'"):
        bench._thread_counts("1,none")


def test_bench_bad_arguments(tiny_recognizer: Recognizer) -> None:
    with pytest.raises(ValueError, match="need chunk_ms > 0, repeat >= 1 and threads >= 1; got chunk_ms=100.0, "
                                         "repeat=0, threads=1"):
        bench.bench_engine(tiny_recognizer, bench.synthetic_audio(0.5), repeat=0)


def test_bench_data_times_the_training_pipeline(capsys: pytest.CaptureFixture[str], speech_wav: Path,
                                               real_speech_flac: Path, tmp_path: Path) -> None:
    from streamasr.training import augment, data

    manifest = tmp_path / "m.jsonl"
    rows = [{"audio": str(p), "text": "hello", "duration": len(load_audio(p)) / 16000}
            for p in (speech_wav, real_speech_flac)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    originals = (data.read_pcm, augment.prepare, augment.apply_waveform, augment.apply_features)
    assert main(["bench", "data", "--manifest", str(manifest), "--repeat", "2", "--json"]) == 0
    assert (data.read_pcm, augment.prepare, augment.apply_waveform, augment.apply_features) == originals
    report = json.loads(capsys.readouterr().out)
    assert report["utterances"] == 2 and len(report["wall"]) == 2
    assert report["audio_seconds"] == pytest.approx(sum(r["duration"] for r in rows))
    assert all(report["stages"][k] > 0 for k in bench.DATA_STAGES)
    assert report["audio_seconds_per_second"] > 0 and report["device_audio_seconds_per_second"] is None
    assert main(["bench", "data", "--manifest", str(manifest), "--repeat", "1", "--augment-on-device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "augmentation and log-mel on cpu" in out and "one worker prepares" in out
    on_device = bench.bench_data(read_manifest(manifest), "m", augment.AugmentConfig(), repeat=1, device="cpu")
    assert on_device.stages["prepare"] > 0 and on_device.stages["waveform_aug"] == 0.0  # not in the worker
    assert on_device.device_rate is not None and on_device.device_rate > 0
    plain = bench.bench_data(read_manifest(manifest), "m", None, repeat=1)
    assert plain.stages["waveform_aug"] == plain.stages["feature_aug"] == 0.0 and plain.stages["features"] > 0
    assert "one worker prepares" in bench.format_data(plain)
    assert main(["bench", "data", "--manifest", str(manifest), "--utterances", "0"]) == 2
    assert "--utterances must be at least 1, got 0" in capsys.readouterr().err
    assert main(["bench", "data", "--manifest", str(manifest), "--augment-on-device", "tpu"]) == 2
    assert "--augment-on-device takes cpu or cuda[:N], got 'tpu'" in capsys.readouterr().err
    assert main(["bench", "data", "--manifest", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err


def _program() -> loadtest.Program:
    """Two segments: "a b" ending after chunk 3, "c" closed by stop (chunk index 5 = len(chunks))."""
    return loadtest.Program("p", (b"\0\0",) * 5, (("a b", 3), ("c", 5)), ((("a", 1), ("b", 2)), (("c", 4),)))


def _log(received: list[tuple[float, dict[str, object]]]) -> loadtest.StreamLog:
    log = loadtest.StreamLog(_program(), sent=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    log.received = [(t, json.dumps(m, separators=(",", ":"))) for t, m in received]
    return log


def test_score_stream_latencies_and_checks() -> None:
    messages = [(0.15, {"type": "partial", "segment": 0, "text": "a"}),
                (0.17, {"type": "partial", "segment": 0, "text": "a"}),  # nothing new
                (0.33, {"type": "partial", "segment": 0, "text": "a b"}),
                (0.35, {"type": "final", "segment": 0, "text": "a b"}),
                (0.58, {"type": "final", "segment": 1, "text": "c"}),
                (0.59, {"type": "done"})]
    score = loadtest.score_stream(_log(messages))
    assert score.partial == pytest.approx([0.05, 0.13, 0.18])  # a: from chunk 1, b: chunk 2, c: chunk 4
    assert score.final == pytest.approx([0.05, 0.08])  # segment 0 from chunk 3, segment 1 from stop
    assert score.done == pytest.approx(0.09) and not score.missing and not score.mismatch
    summary = loadtest.summarise([_log(messages)], lag_limit=0.1)
    assert summary["behind"] == 1 and summary["words"] == 3  # the 130 ms / 180 ms words exceed 100 ms
    assert loadtest.summarise([_log(messages)], lag_limit=1.0)["exact"]


def test_score_stream_detects_a_mixed_up_stream() -> None:
    messages = [(0.35, {"type": "final", "segment": 0, "text": "a x"}),
                (0.58, {"type": "final", "segment": 1, "text": "c"}), (0.59, {"type": "done"})]
    score = loadtest.score_stream(_log(messages))
    assert score.mismatch and score.missing == 1  # "b" never arrived
    summary = loadtest.summarise([_log(messages)], lag_limit=1.0)
    assert summary["realtime"] and not summary["exact"] and summary["mismatched"] == 1


@pytest.mark.slow
def test_bench_server_smoke(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, tmp_path: Path) -> None:
    """Two streams for a few seconds against a real ``streamasr serve`` child process."""
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["bench", "server", "--model", str(tiny_model_path), "--method", "greedy", "--levels", "2",
                 "--seconds", "2", "--ramp", "0.2", "--programs", "2", "--out", str(out), "--plot", str(png)]) == 0
    assert "real-time" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["kind"] == "server" and report["model"] == "tiny" and report["machine"]["vcpus"]
    (level,) = report["runs"][0]
    assert level["streams"] == 2 and level["passes"] == 2 and level["errors"] == {}
    assert level["mismatched"] == 0 and level["missing"] == 0 and level["words"] > 0
    assert set(level["partial_ms"]) == {"p50", "p95", "p99", "max"} and level["server_rss_mb"] > 0
    assert level["server_cpu"] >= 0 and level["loadgen_cpu"] >= 0
    assert report["summary"][0]["streams"] == 2 and png.stat().st_size > 10000
    merged = tmp_path / "m.json"
    assert main(["bench", "server", "--merge", str(out), str(out), "--out", str(merged)]) == 0
    assert json.loads(merged.read_text())["summary"][0]["runs"] == 2
    # With speaker adaptation, in the server and in the references: every final must still match.
    assert main(["bench", "server", "--model", str(tiny_model_path), "--method", "greedy", "--levels", "2",
                 "--seconds", "4", "--ramp", "0.2", "--programs", "2", "--out", str(out),
                 "--adapt-lr", "0.02", "--adapt-steps", "3"]) == 0
    report = json.loads(out.read_text())
    assert "--adapt-lr=0.02" in report["server"]["args"] and report["adapt"]["lr"] == 0.02
    (level,) = report["runs"][0]
    assert level["errors"] == {} and level["mismatched"] == 0 and level["missing"] == 0


def test_references_learn_as_the_server_does(default_recognizer_greedy: Recognizer, real_speech_flac: Path) -> None:
    audio = load_audio(real_speech_flac)
    two = np.concatenate([audio, np.zeros(24000, np.float32), audio])  # two segments
    plain = loadtest.make_program(default_recognizer_greedy, two, 1600, "two")
    adapted = loadtest.make_program(default_recognizer_greedy, two, 1600, "two", AdaptConfig(lr=0.02, steps=3))
    assert len(plain.finals) == len(adapted.finals) == 2
    assert plain.finals[0] == adapted.finals[0] and plain.finals[1] != adapted.finals[1]


def test_join_files_puts_the_gap_between_files() -> None:
    load = {"a": np.full(8000, 0.5, np.float32), "b": np.full(4000, -0.5, np.float32)}.__getitem__
    [(name, audio)] = loadtest.join_files(["a", "b"], 2.0, 1, 0, load, gap=0.25)
    assert len(audio) == 32000 and name.count("+") >= 1
    starts = np.flatnonzero(np.diff((audio != 0).astype(int)) == 1) + 1  # where each file begins again
    assert audio[0] != 0 and len(starts) >= 2
    for s in starts:  # every file after the first follows 0.25 s of silence
        assert np.all(audio[s - 4000:s] == 0) and audio[s - 4001] != 0
    assert len(loadtest.join_files(["a"], 1.0, 1, 0, load)[0][1]) == 16000  # no gap: as before


def test_bench_decoder_times_the_batched_search(capsys: pytest.CaptureFixture[str], tiny_model_path: Path,
                                                tiny_lm_path: Path, tiny_recognizer: Recognizer) -> None:
    assert main(["bench", "decoder", "--model", str(tiny_model_path), "--lm", str(tiny_lm_path), "--beam-size", "8",
                 "--streams", "1,3", "--repeat", "1", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["streams"] for r in runs] == [1, 3] and all(r["beam_size"] == 8 for r in runs)
    assert all(r["cpu_s_per_audio_s_per_stream"] > 0 and r["audio_seconds_per_stream"] > 1 for r in runs)
    with pytest.raises(ValueError, match="times the beam search; drop --method greedy"):
        bench.bench_decoder(tiny_recognizer, [np.zeros(16000, np.float32)], 1)
