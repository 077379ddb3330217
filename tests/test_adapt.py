"""Speaker adaptation on real recordings: what it learns, what it leaves alone, and the eval option."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from streamasr.adapt import AdaptConfig, SpeakerAdapter
from streamasr.beam import DecoderConfig
from streamasr.cli import main
from streamasr.data import Utterance, read_pcm
from streamasr.evaluate import evaluate, recognise
from streamasr.model import AcousticModel, ModelConfig
from streamasr.stream import Recognizer


@pytest.fixture(scope="module")
def default_greedy() -> Recognizer:
    return Recognizer.load(None, decoder=DecoderConfig(method="greedy"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": -0.1}, "AdaptConfig.lr must be a step size in [0, 0.1], got -0.1"),
    ({"lr": 0.5}, "AdaptConfig.lr must be a step size in [0, 0.1], got 0.5"),
    ({"steps": 0}, "AdaptConfig.steps must be an integer in [1, 100], got 0"),
    ({"max_seconds": 0.5}, "AdaptConfig.max_seconds must be in [1, 600] s, got 0.5"),
    ({"max_recordings": 0}, "AdaptConfig.max_recordings must be an integer in [1, 1e6], got 0"),
])
def test_config_errors_name_field_and_value(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        AdaptConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_learning_makes_the_model_surer_of_the_speaker_and_leaves_the_shared_model_alone(
        default_greedy: Recognizer, real_speech_flac: Path) -> None:
    rec = default_greedy
    shared = {k: v.clone() for k, v in rec.model.state_dict().items()}
    audio = read_pcm(str(real_speech_flac))
    adapter = SpeakerAdapter(rec, AdaptConfig(lr=3e-3, steps=3))
    assert adapter.rec is rec and adapter.recordings == 0
    with torch.no_grad():
        before = float(adapter.entropy(audio))
    adapter.learn(audio)
    with torch.no_grad():
        after = float(adapter.entropy(audio))
    assert after < before - 0.01  # nats per frame
    assert adapter.recordings == 1 and adapter.rec is not rec and adapter.rec.model is not rec.model
    assert adapter.rec.tokenizer is rec.tokenizer and adapter.rec.features is rec.features
    # Only the LayerNorm moved, in the copy; the shared model is bit-identical.
    assert all(torch.equal(v, rec.model.state_dict()[k]) for k, v in shared.items())
    moved = {k for k, v in adapter.model.state_dict().items() if not torch.equal(v, shared[k])}
    assert moved == {"norm.weight", "norm.bias"}
    assert not any(p.requires_grad for p in adapter.model.parameters())


def test_learning_stops_after_max_recordings(default_greedy: Recognizer, real_speech_flac: Path) -> None:
    audio = read_pcm(str(real_speech_flac))
    adapter = SpeakerAdapter(default_greedy, AdaptConfig(lr=3e-3, max_recordings=1))
    adapter.learn(audio)
    learnt = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    rec = adapter.rec
    adapter.learn(audio)
    assert adapter.recordings == 1 and adapter.rec is rec
    assert all(torch.equal(v, adapter.model.state_dict()[k]) for k, v in learnt.items())


def test_off_learns_nothing(default_greedy: Recognizer, real_speech_flac: Path) -> None:
    adapter = SpeakerAdapter(default_greedy, AdaptConfig())
    adapter.learn(read_pcm(str(real_speech_flac)))
    assert not adapter.cfg.enabled and adapter.recordings == 0 and adapter.rec is default_greedy


def test_eval_adapts_per_voice_and_never_to_the_recording_it_scores(
        default_greedy: Recognizer, real_speech_flac: Path, speech_wav: Path) -> None:
    items = [Utterance(str(real_speech_flac), "x", 3.0, "allison"), Utterance(str(speech_wav), "x", 3.8, "rms"),
             Utterance(str(real_speech_flac), "x", 3.0, "allison")]
    plain = [recognise(default_greedy, read_pcm(u.audio), 1600) for u in items]
    report, hyps = evaluate(default_greedy, items, 100, adapt=AdaptConfig(lr=0.02, steps=3))
    # The first recording of each voice comes before any learning; the third is the first voice's second.
    assert [h.hyp for h in hyps[:2]] == plain[:2]
    assert report["adapt"] == {"lr": 0.02, "steps": 3, "max_seconds": 30.0, "max_recordings": 1000}
    # What one voice learnt, replayed by hand, gives the third result.
    adapter = SpeakerAdapter(default_greedy, AdaptConfig(lr=0.02, steps=3))
    adapter.learn(read_pcm(str(real_speech_flac)))
    assert hyps[2].hyp == recognise(adapter.rec, read_pcm(str(real_speech_flac)), 1600)
    assert hyps[2].hyp != plain[2]  # what it learnt changed the result
    assert "adapt" not in evaluate(default_greedy, items[:1], 100)[0]


def test_with_model_shares_the_rest_and_checks_the_shape(default_greedy: Recognizer, speech_wav: Path) -> None:
    audio = read_pcm(str(speech_wav))
    twin = default_greedy.with_model(copy.deepcopy(default_greedy.model))
    assert twin.beam is default_greedy.beam and torch.equal(twin.start_hidden, default_greedy.start_hidden)
    assert recognise(twin, audio, 1600) == recognise(default_greedy, audio, 1600)
    with pytest.raises(ValueError, match="with_model expects a model like"):
        default_greedy.with_model(AcousticModel(ModelConfig(hidden=32, layers=2)))


def test_eval_option(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, speech_wav: Path,
                     tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": str(speech_wav), "text": "a test", "duration": 3.765}) + "\n")
    argv = ["eval", "--manifest", str(manifest), "--model", str(tiny_model_path), "--method", "greedy"]
    assert main([*argv, "--adapt-lr", "0.003", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[str(manifest)]["adapt"]["lr"] == 0.003
    assert main([*argv, "--adapt-lr", "0.003", "--quantize"]) == 2
    assert capsys.readouterr().err == "streamasr eval: error: --adapt-lr needs the float model: drop --quantize\n"
    assert main([*argv, "--adapt-steps", "0"]) == 2
    assert "AdaptConfig.steps must be an integer in [1, 100], got 0" in capsys.readouterr().err


def test_transcribe_option_treats_the_files_as_one_speaker(capsys: pytest.CaptureFixture[str],
                                                            real_speech_flac: Path) -> None:
    argv = ["transcribe", "--method", "greedy", str(real_speech_flac), str(real_speech_flac)]
    assert main(argv) == 0
    plain = capsys.readouterr().out.splitlines()
    assert main([*argv, "--adapt-lr", "0.02", "--adapt-steps", "3"]) == 0
    adapted = capsys.readouterr().out.splitlines()
    assert plain[0] == plain[1] == adapted[0] != adapted[1]  # the second file heard what the first taught
    assert main([*argv, "--adapt-lr", "0.003", "--quantize"]) == 2
    assert capsys.readouterr().err == "streamasr transcribe: error: --adapt-lr needs the float model: drop --quantize\n"
