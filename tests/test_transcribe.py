"""File transcription: library API, every output format, chunk-size independence, bad input via the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamasr import formats
from streamasr.engine.checkpoint import save_checkpoint
from streamasr.cli import main
from streamasr.engine.endpoint import EndpointConfig
from streamasr.errors import AudioError
from streamasr.engine.features import FeatureConfig
from streamasr.results import Word
from streamasr.engine.stream import Recognizer
from streamasr.engine.text import Tokenizer
from streamasr.transcribe import Segment, Transcript, transcribe_audio, transcribe_file
from tests.conftest import make_tiny_model

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHORT = ["--silence-after-speech", "0.3"]  # several segments even from the tiny random model


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def without_conf(d: dict[str, Any]) -> dict[str, Any]:
    """A transcript dict with word confidences removed (they may differ in the last rounded digit)."""
    return {**d, "segments": [{**s, "words": [{k: v for k, v in w.items() if k != "conf"} for w in s["words"]]}
                              for s in d["segments"]]}


# --- library -----------------------------------------------------------------------------------


def test_transcribe_file_result(tiny_recognizer: Recognizer, real_speech_flac: Path) -> None:
    t = transcribe_file(tiny_recognizer, real_speech_flac, endpoint_cfg=EndpointConfig(silence_after_speech=0.3))
    assert t.file == str(real_speech_flac) and t.duration == pytest.approx(3.159, abs=1e-3)
    assert len(t.segments) >= 2 and t.text == " ".join(s.text for s in t.segments)
    for s in t.segments:
        assert s.text == " ".join(w.word for w in s.words)
        assert 0 <= s.start <= s.words[0].start and s.words[-1].end == s.end <= t.duration
    ends = [s.end for s in t.segments]
    assert ends == sorted(ends)
    d = t.to_dict()
    assert list(d) == ["file", "text", "duration", "segments"]
    assert list(d["segments"][0]) == ["start", "end", "text", "words"]
    assert list(d["segments"][0]["words"][0]) == ["word", "start", "end", "conf"]


def test_result_does_not_depend_on_chunk_size(tiny_recognizer: Recognizer, real_speech_flac: Path) -> None:
    cfg = EndpointConfig(silence_after_speech=0.3)
    results = [transcribe_file(tiny_recognizer, real_speech_flac, ms, cfg).to_dict() for ms in (10, 37, 100, 1000)]
    for other in results[1:]:
        assert without_conf(other) == without_conf(results[0])


def test_audio_in_memory(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    pcm, _ = sf.read(speech_wav, dtype="int16")
    as_int = transcribe_audio(tiny_recognizer, pcm)
    as_float = transcribe_audio(tiny_recognizer, pcm.astype(np.float64) / 32768)
    assert as_int.text == as_float.text and as_int.file == "" and as_int.duration == 3.765
    seen: list[tuple[float, float]] = []
    transcribe_audio(tiny_recognizer, pcm, chunk_ms=1000, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (1.0, 3.765) and seen[-1] == (3.765, 3.765) and len(seen) == 4


@pytest.mark.parametrize("audio, message", [
    (np.zeros(100, np.int32), "PCM dtype int32 is not supported; expected int16 or float32"),
    (np.zeros((2, 100), np.float32), "PCM must be 1-D"),
    (np.zeros(0, np.float32), "audio has 0 samples"),
    (np.array([0.1, np.nan], np.float32), "NaN or inf"),
    ([0.0, 0.1], "audio must be a numpy array of samples, got list"),
])
def test_bad_audio_in_memory(tiny_recognizer: Recognizer, audio: Any, message: str) -> None:
    with pytest.raises(AudioError, match=re.escape(message)):
        transcribe_audio(tiny_recognizer, audio)


def test_bad_chunk_ms(tiny_recognizer: Recognizer) -> None:
    with pytest.raises(ValueError, match="chunk_ms must be a positive number of milliseconds, got 0"):
        transcribe_audio(tiny_recognizer, np.zeros(100, np.float32), chunk_ms=0)


# --- formats -----------------------------------------------------------------------------------


def parse_cues(text: str, kind: str) -> list[tuple[float, float, str]]:
    """Parse srt/vtt strictly: fails on any structural error. Returns (start, end, text) per cue."""
    sep = "," if kind == "srt" else r"\."
    stamp = rf"(\d\d):(\d\d):(\d\d){sep}(\d\d\d)"
    if kind == "vtt":
        assert text.startswith("WEBVTT\n\n") or text == "WEBVTT\n"
        text = text[len("WEBVTT\n\n"):]
    cues = []
    blocks = text.split("\n\n") if text else []
    for number, block in enumerate(blocks, start=1):
        lines = block.rstrip("\n").split("\n")
        if kind == "srt":
            assert lines.pop(0) == str(number)
        m = re.fullmatch(rf"{stamp} --> {stamp}", lines[0])
        assert m, lines[0]
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        assert len(lines) >= 2 and all(line.strip() for line in lines[1:])
        cues.append((start, end, " ".join(lines[1:])))
    assert text == "" or text.endswith("\n") and not text.endswith("\n\n")
    return cues


def check_cues(cues: list[tuple[float, float, str]], duration: float) -> None:
    assert cues
    previous_end = 0.0
    for start, end, _ in cues:
        assert previous_end <= start < end <= duration + 0.05
        previous_end = end


def long_transcript() -> Transcript:
    """One 20 s segment of 40 words, 0.5 s apart."""
    words = tuple(Word(f"word{i:02d}", 0.5 * i, 0.5 * i + 0.3, 0.9) for i in range(40))
    segment = Segment(0.0, words[-1].end, " ".join(w.word for w in words), words)
    return Transcript("long.wav", segment.text, 20.0, (segment,))


def test_long_segments_split_at_word_boundaries() -> None:
    t = long_transcript()
    cues = formats.cues(t)
    assert len(cues) > 3
    assert " ".join(c.text for c in cues) == t.text  # nothing lost or split inside a word
    for c in cues:
        assert c.end - c.start <= formats.MAX_CUE_SECONDS and len(c.text) <= formats.MAX_CUE_CHARS
    by_time = formats.cues(t, max_seconds=2.0, max_chars=1000)
    assert all(c.end - c.start <= 2.0 for c in by_time) and len(by_time) == 10
    for kind, writer in (("srt", formats.to_srt), ("vtt", formats.to_vtt)):
        parsed = parse_cues(writer(t), kind)
        check_cues(parsed, t.duration)
        assert [p[2] for p in parsed] == [c.text for c in cues]


def test_single_long_word_and_empty_transcript() -> None:
    word = Word("x" * 100, 1.0, 9.0, 0.5)
    t = Transcript("w.wav", word.word, 10.0, (Segment(1.0, 9.0, word.word, (word,)),))
    assert formats.cues(t) == [formats.Cue(1.0, 9.0, word.word)]
    empty = Transcript("e.wav", "", 1.0)
    assert formats.to_srt(empty) == "" and formats.to_vtt(empty) == "WEBVTT\n"
    assert formats.to_txt(empty) == "\n" and json.loads(formats.to_jsonl(empty))["segments"] == []


def test_timestamps_and_vtt_escaping() -> None:
    seg = Segment(3725.5, 3726.25, "a<b & c", ())
    t = Transcript("t.wav", seg.text, 3727.0, (seg,))
    assert formats.to_srt(t) == "1\n01:02:05,500 --> 01:02:06,250\na<b & c\n"
    assert formats.to_vtt(t) == "WEBVTT\n\n01:02:05.500 --> 01:02:06.250\na&lt;b &amp; c\n"


# --- command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["txt", "json", "jsonl", "srt", "vtt"])
def test_every_format_on_a_real_file(capsys: pytest.CaptureFixture[str], tiny_model_path: Path,
                                     tiny_recognizer: Recognizer, real_speech_flac: Path, fmt: str) -> None:
    code, out, err = cli(capsys, "transcribe", "--model", tiny_model_path, "--method", "greedy", "--format", fmt,
                         *SHORT, real_speech_flac)
    assert code == 0 and err == ""
    expected = transcribe_file(tiny_recognizer, real_speech_flac, endpoint_cfg=EndpointConfig(silence_after_speech=0.3))
    if fmt == "txt":
        assert out == expected.text + "\n"
    elif fmt == "json":
        assert json.loads(out) == [json.loads(json.dumps(expected.to_dict()))]
    elif fmt == "jsonl":
        assert [json.loads(line) for line in out.splitlines()] == [json.loads(json.dumps(expected.to_dict()))]
    else:
        cues = parse_cues(out, fmt)
        check_cues(cues, expected.duration)
        assert [c[2] for c in cues] == [s.text for s in expected.segments]


def test_cli_chunk_ms_does_not_change_output(capsys: pytest.CaptureFixture[str], tiny_model_path: Path,
                                             speech_wav: Path) -> None:
    outputs = []
    for ms in ("10", "37", "1000"):
        code, out, _ = cli(capsys, "transcribe", "--model", tiny_model_path, "--format", "jsonl",
                           "--chunk-ms", ms, *SHORT, speech_wav)
        assert code == 0
        outputs.append(without_conf(json.loads(out)))
    assert outputs[0] == outputs[1] == outputs[2]


def test_every_bad_input_through_the_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         tiny_model_path: Path, speech_wav: Path, real_speech_flac: Path) -> None:
    bad: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes | None, reason: str) -> None:
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        bad[name] = (path, reason)

    wav = speech_wav.read_bytes()
    add("missing.wav", None, "no such file")
    add("empty.wav", b"", "file is empty (0 bytes)")
    add("truncated.wav", wav[: len(wav) // 2], "truncated")
    add("corrupt.flac", b"fLaC" + np.random.default_rng(1).bytes(3000), "not a readable audio file")
    add("garbage.mp3", np.random.default_rng(2).bytes(3000), "not a readable audio file")
    add("notes.xyz", b"just some text\n" * 40, "not a readable audio file")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    bad["zero.wav"] = (tmp_path / "zero.wav", "decoded to 0 samples")
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        audio = np.full(1600, 0.1, np.float32)
        audio[5] = value
        sf.write(tmp_path / name, audio, 16000, subtype="FLOAT")
        bad[name] = (tmp_path / name, "1 of 1600 samples are NaN or inf")
    files = [speech_wav, *(p for p, _ in bad.values()), real_speech_flac]
    code, out, err = cli(capsys, "transcribe", "--model", tiny_model_path, "--format", "jsonl", *files)
    assert code == 1
    assert [json.loads(line)["file"] for line in out.splitlines()] == [str(speech_wav), str(real_speech_flac)]
    lines = err.splitlines()
    assert lines[-1] == f"streamasr transcribe: {len(bad)} of {len(files)} files failed"
    for path, reason in bad.values():
        line = next(line for line in lines if str(path) in line)
        assert line.startswith(f"streamasr transcribe: error: {path}") and reason in line, line
    assert "Traceback" not in err


def test_output_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_path: Path,
                    speech_wav: Path) -> None:
    shutil.copy(speech_wav, tmp_path / "talk.wav")
    sf.write(tmp_path / "talk.flac", sf.read(speech_wav)[0], 16000)  # same stem: must not overwrite
    out_dir = tmp_path / "out" / "srt"
    code, out, err = cli(capsys, "transcribe", "--model", tiny_model_path, "--format", "srt", *SHORT,
                         "-o", out_dir, tmp_path / "talk.wav", tmp_path / "talk.flac", tmp_path / "nope.wav")
    assert code == 1 and out == "" and "nope.wav: no such file" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["talk.flac.srt", "talk.srt"]
    assert (out_dir / "talk.srt").read_text() == (out_dir / "talk.flac.srt").read_text()
    check_cues(parse_cues((out_dir / "talk.srt").read_text(), "srt"), 3.765)
    code, _, _ = cli(capsys, "transcribe", "--model", tiny_model_path, "--format", "json", "-o", out_dir, speech_wav)
    assert code == 0 and json.loads((out_dir / "sample_flite_rms.json").read_text())["file"] == str(speech_wav)


def test_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, speech_wav: Path) -> None:
    code, out, err = cli(capsys, "transcribe", "--model", tiny_model_path, "--progress", speech_wav)
    assert code == 0 and "files" in err and "100%" in err
    code, quiet_out, quiet_err = cli(capsys, "transcribe", "--model", tiny_model_path, speech_wav)
    assert out == quiet_out and quiet_err == ""  # stderr is not a terminal under pytest: no bars


@pytest.mark.parametrize("argv, message", [
    (["--format", "srt", "a.wav", "b.wav"], "--format srt writes one subtitle file per input; with 2 input "
                                            "files give -o DIR"),
    (["--chunk-ms", "0", "a.wav"], "--chunk-ms must be a positive number of milliseconds, got 0.0"),
    (["--threads", "0", "a.wav"], "--threads must be at least 1, got 0"),
    (["--silence-after-speech", "0", "a.wav"], "EndpointConfig.silence_after_speech must be a number of "
                                               "seconds in [0.04, 3600], got 0.0"),
])
def test_bad_options(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, argv: list[str],
                     message: str) -> None:
    code, out, err = cli(capsys, "transcribe", "--model", tiny_model_path, *argv)
    assert code == 2 and out == "" and err == f"streamasr transcribe: error: {message}\n"


def test_cli_quantize(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, speech_wav: Path,
                      tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "transcribe", "--model", tiny_model_path, "--quantize", "--format", "json", speech_wav)
    assert code == 0 and json.loads(out)[0]["text"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": str(speech_wav), "text": "a test", "duration": 3.765}) + "\n")
    code, out, _ = cli(capsys, "eval", "--manifest", manifest, "--model", tiny_model_path, "--quantize", "--json")
    assert code == 0 and json.loads(out)[str(manifest)]["all"]["utterances"] == 1


def test_eval_plot_draws_a_png_per_voice(capsys: pytest.CaptureFixture[str], tiny_model_path: Path,
                                         speech_wav: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    rows = [{"audio": str(speech_wav), "text": "a test", "duration": 3.765, "voice": v} for v in ("alice", "bob")]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = tmp_path / "eval.png"
    code, out, _ = cli(capsys, "eval", "--manifest", manifest, "--model", tiny_model_path, "--method", "greedy",
                       "--plot", png)
    assert code == 0 and "alice" in out and "bob" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_eval_scores_models_side_by_side(capsys: pytest.CaptureFixture[str], tiny_model_path: Path,
                                         speech_wav: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    save_checkpoint(other, make_tiny_model(seed=5), FeatureConfig(), Tokenizer(), {"name": "other"})
    manifests = []
    for name in ("a", "b"):
        manifest = tmp_path / f"{name}.jsonl"
        manifest.write_text(json.dumps({"audio": str(speech_wav), "text": "a test", "duration": 3.765}) + "\n")
        manifests += ["--manifest", manifest]
    argv = ["eval", *manifests, "--model", tiny_model_path, "--model", other, "--method", "greedy"]
    code, out, _ = cli(capsys, *argv, "--json")
    report = json.loads(out)
    assert code == 0 and list(report) == [str(tiny_model_path), str(other)]
    assert all(list(r) == [str(m) for m in manifests[1::2]] for r in report.values())
    png = tmp_path / "compare.png"
    code, out, _ = cli(capsys, *argv, "--plot", png)
    lines = out.splitlines()
    assert code == 0 and lines[1].startswith("a.jsonl") and lines[2].startswith("b.jsonl")
    assert len(lines[1].split("/")) == 3  # WER / CER for each of the two models
    assert f"model 2: {other}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
