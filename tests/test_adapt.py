"""Speaker adaptation on real recordings: what it learns, when, what it leaves alone, and the options."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import soundfile as sf
import torch

from streamasr.engine import adapt

from streamasr.client import mic
from streamasr.engine.adapt import AdaptConfig, AdaptState, Speaker
from streamasr.engine.beam import DecoderConfig
from streamasr.cli import build_parser, main
from streamasr.client import ServerError, StreamClient, start_from_args
from streamasr.training.data import read_pcm
from streamasr.manifest import Utterance
from streamasr.engine.endpoint import EndpointConfig
from streamasr.training.evaluate import evaluate, recognise
from streamasr.engine.features import FeatureConfig
from streamasr.service.protocol import Start
from streamasr.results import Result
from streamasr.service.server import ServerConfig, StreamServer
from streamasr.engine.stream import Recognizer, finish, flush_segment, learn_rest, step, step_many
from streamasr.engine.text import Tokenizer
from streamasr.transcribe import transcribe_audio
from conftest import make_tiny_model


@pytest.fixture(scope="module")
def default_greedy() -> Recognizer:
    return Recognizer.load(None, decoder=DecoderConfig(method="greedy"))


def _frames(rec: Recognizer, audio: np.ndarray) -> np.ndarray:
    """Whole stacks of log-mel of ``audio``: what a stream collects to learn from."""
    feats = rec.features(torch.from_numpy(audio)).numpy()
    return feats[: len(feats) - len(feats) % rec.model.cfg.stack]


def _speaker(rec: Recognizer, audio: np.ndarray, cfg: AdaptConfig) -> AdaptState:
    """A new speaker at a stream's start holding ``audio`` to learn from."""
    fresh = adapt.initial(rec.model, cfg.for_decoder(rec.decoder.method), rec.start_hidden)
    return adapt.collect(fresh, _frames(rec, audio), rec.adapt_limit(cfg))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": -0.1}, "AdaptConfig.lr must be a step size in [0, 0.1], got -0.1"),
    ({"lr": 0.5}, "AdaptConfig.lr must be a step size in [0, 0.1], got 0.5"),
    ({"steps": 0}, "AdaptConfig.steps must be an integer in [1, 100], got 0"),
    ({"max_seconds": 0.5}, "AdaptConfig.max_seconds must be in [1, 600] s, got 0.5"),
    ({"max_segments": 0}, "AdaptConfig.max_segments must be an integer in [1, 1e6], got 0"),
    ({"pull": 1.5}, "AdaptConfig.pull must be a share in [0, 1], got 1.5"),
    ({"delay": -1}, "AdaptConfig.delay must be in [0, 60] s, got -1"),
    ({"target": "labels"}, "AdaptConfig.target must be 'auto', 'entropy', 'transcript' or 'both', got 'labels'"),
])
def test_config_errors_name_field_and_value(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        AdaptConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_target_auto_learns_towards_the_transcript_only_where_an_lm_corrects_it(default_greedy: Recognizer) -> None:
    auto = AdaptConfig(lr=3e-3)
    assert auto.target == "auto" and auto.for_decoder("beam").target == "both"
    assert auto.for_decoder("greedy").target == "entropy"
    assert AdaptConfig(lr=3e-3, target="transcript").for_decoder("greedy").target == "transcript"
    state = default_greedy.initial_state(adapt=auto)
    assert state.adapt is not None and state.adapt.cfg.target == "entropy"
    with pytest.raises(ValueError, match="target 'auto' depends on the decoder"):
        adapt.initial(default_greedy.model, auto, default_greedy.start_hidden)


def test_learning_makes_the_model_surer_of_the_speaker_and_leaves_the_shared_model_alone(
        default_greedy: Recognizer, real_speech_flac: Path) -> None:
    rec = default_greedy
    shared = {k: v.clone() for k, v in rec.model.state_dict().items()}
    held = _speaker(rec, read_pcm(str(real_speech_flac)), AdaptConfig(lr=3e-3, steps=3))
    with torch.no_grad():
        before = float(adapt.entropy(rec.model, [held])[0])
    [taught] = adapt.learn_many(rec.model, [held])
    assert taught.segments == 1 and taught.steps == 3 and len(taught.frames) == 0
    with torch.no_grad():
        after = float(adapt.entropy(rec.model, [replace(taught, frames=held.frames)])[0])
    assert after < before - 0.01  # nats per frame
    assert not torch.equal(taught.weight, rec.model.norm.weight) and not torch.equal(taught.bias, rec.model.norm.bias)
    assert all(torch.equal(v, rec.model.state_dict()[k]) for k, v in shared.items())
    assert not any(p.grad is not None for p in rec.model.parameters())


def test_steps_are_torch_adam_on_the_layernorm(speech_wav: Path) -> None:
    """Three learning calls equal three steps of torch.optim.Adam on a model copy's own LayerNorm."""
    model = make_tiny_model()
    rec = Recognizer(model, FeatureConfig(), Tokenizer(), decoder=DecoderConfig(method="greedy"))
    cfg = AdaptConfig(lr=0.01)
    held = _speaker(rec, read_pcm(str(speech_wav)), cfg)
    state = held
    for _ in range(3):
        [state] = adapt.learn_many(model, [replace(state, frames=held.frames)])
    twin = copy.deepcopy(model)
    optimizer = torch.optim.Adam([twin.norm.weight, twin.norm.bias], lr=cfg.lr)
    for _ in range(3):
        log_probs, _ = twin(torch.from_numpy(held.frames)[None], held.hidden[:, None])
        loss = -(log_probs.exp() * log_probs).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert state.steps == 3
    torch.testing.assert_close(state.weight, twin.norm.weight.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(state.bias, twin.norm.bias.detach(), rtol=0, atol=1e-6)


def test_pull_draws_a_speaker_back_towards_the_model(default_greedy: Recognizer, real_speech_flac: Path) -> None:
    rec, audio = default_greedy, read_pcm(str(real_speech_flac))
    shipped = rec.model.norm.weight.detach()
    moved = {}
    for pull in (0.0, 0.25, 1.0):
        held = _speaker(rec, audio, AdaptConfig(lr=3e-3, pull=pull))
        [moved[pull]] = adapt.learn_many(rec.model, [held])
    assert torch.equal(moved[1.0].weight, shipped) and moved[1.0].steps == 1  # all the way back
    torch.testing.assert_close(moved[0.25].weight - shipped, 0.75 * (moved[0.0].weight - shipped),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(moved[0.25].moments, moved[0.0].moments)  # Adam's own state is untouched


@pytest.mark.parametrize("target", ["transcript", "both"])
def test_learning_towards_the_transcript_makes_it_likelier(default_greedy: Recognizer, real_speech_flac: Path,
                                                           target: Literal["transcript", "both"]) -> None:
    rec, audio = default_greedy, read_pcm(str(real_speech_flac))
    cfg = AdaptConfig(lr=3e-3, steps=3, target=target)
    held = replace(_speaker(rec, audio, cfg), text="and i'm so glad to be here")
    ids = [rec.tokenizer.encode(held.text)]
    with torch.no_grad():
        before = float(adapt.transcript_loss(rec.model, [held], ids, rec.tokenizer.blank)[0])
    [taught] = adapt.learn_many(rec.model, [held], rec.tokenizer.encode, rec.tokenizer.blank)
    with torch.no_grad():
        after = float(adapt.transcript_loss(rec.model, [replace(taught, frames=held.frames)], ids,
                                            rec.tokenizer.blank)[0])
    assert after < before - 0.01 and taught.segments == 1 and taught.text == ""
    if target == "both":  # the sum moves it otherwise than the transcript alone
        [alone] = adapt.learn_many(rec.model, [replace(held, cfg=replace(cfg, target="transcript"))],
                                   rec.tokenizer.encode, rec.tokenizer.blank)
        assert not torch.allclose(alone.weight, taught.weight)
    # Without text there is nothing to learn towards: what it held is dropped, nothing learnt.
    [silent] = adapt.learn_many(rec.model, [replace(held, text="")], rec.tokenizer.encode)
    assert silent.segments == 0 and len(silent.frames) == 0 and torch.equal(silent.weight, held.weight)
    with pytest.raises(ValueError, match="learning towards the transcript needs the tokenizer's encode"):
        adapt.learn_many(rec.model, [held])


def test_a_stream_learns_towards_its_own_finals(default_greedy: Recognizer, real_speech_flac: Path) -> None:
    rec = default_greedy
    audio = read_pcm(str(real_speech_flac))
    state = rec.initial_state(endpoint_cfg=EndpointConfig(silence_after_speech=3.0),
                              adapt=AdaptConfig(lr=3e-3, target="transcript"))
    state, _ = step(rec, state, audio)
    state, [final] = flush_segment(rec, state)
    assert state.adapt is not None and state.adapt.text == final.text and final.text
    held = state.adapt
    state, _ = step(rec, state, audio[:1600])  # it starts learning before this audio ...
    assert state.adapt is not None and state.adapt.lesson is not None and state.adapt.text == ""
    assert torch.equal(state.adapt.weight, held.weight)  # ... and uses it only cfg.delay s later
    [expected] = adapt.learn_many(rec.model, [held], rec.tokenizer.encode, rec.tokenizer.blank)
    settled = state.adapt.settle()
    assert settled.segments == 1 and settled.lesson is None and torch.equal(settled.weight, expected.weight)


def test_streams_learn_together_as_they_would_alone(default_greedy: Recognizer, real_speech_flac: Path,
                                                    speech_wav: Path) -> None:
    rec, cfg = default_greedy, AdaptConfig(lr=3e-3)
    held = [_speaker(rec, read_pcm(str(real_speech_flac)), cfg), _speaker(rec, read_pcm(str(speech_wav)), cfg)]
    assert len(held[0].frames) != len(held[1].frames)  # ragged: the packed path
    together = adapt.learn_many(rec.model, held)
    for one, both in zip(held, together):
        [alone] = adapt.learn_many(rec.model, [one])
        torch.testing.assert_close(both.weight, alone.weight, rtol=0, atol=1e-6)
        torch.testing.assert_close(both.bias, alone.bias, rtol=0, atol=1e-6)
    assert not torch.equal(together[0].weight, together[1].weight)


def test_the_learner_thread_batches_what_queues_while_it_learns(default_greedy: Recognizer, real_speech_flac: Path,
                                                                speech_wav: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rec, cfg = default_greedy, AdaptConfig(lr=3e-3)
    held = [_speaker(rec, read_pcm(str(real_speech_flac)), cfg), _speaker(rec, read_pcm(str(speech_wav)), cfg)]
    started, release = threading.Event(), threading.Event()
    batches: list[int] = []
    learn_many = adapt.learn_many

    def held_up(model: torch.nn.Module, states: list[AdaptState], *args: object) -> list[AdaptState]:
        batches.append(len(states))
        started.set()
        release.wait(30)
        return learn_many(model, states, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(adapt, "learn_many", held_up)
    learner = adapt.Learner(rec.model, rec.tokenizer.encode, rec.tokenizer.blank)
    first = learner.submit(held[:1])
    assert started.wait(30)
    later = learner.submit(held) + learner.submit(held[1:])  # these queue while the first is learnt
    assert not any(f.done() for f in first + later)
    release.set()
    taught = [f.result(30) for f in first + later]
    learner.close()
    assert batches == [1, 3]
    expected = learn_many(rec.model, held)
    for got, want in zip(taught, [expected[0], *expected, expected[1]]):
        torch.testing.assert_close(got.weight, want.weight, rtol=0, atol=1e-6)
        assert got.segments == 1
    with pytest.raises(RuntimeError, match="learner closed"):
        learner.submit(held)
    # Lessons that come within ``gather`` of the first wait for each other (close stops the wait).
    batches.clear()
    learner = adapt.Learner(rec.model, rec.tokenizer.encode, rec.tokenizer.blank, gather=60)
    gathered = learner.submit(held[:1]) + learner.submit(held[1:])
    learner.close()
    assert batches == [2] and all(f.done() for f in gathered)

    def broken(*args: object) -> list[AdaptState]:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(adapt, "learn_many", broken)
    learner = adapt.Learner(rec.model, rec.tokenizer.encode, rec.tokenizer.blank)
    [failed] = learner.submit(held[:1])
    with pytest.raises(RuntimeError, match="out of memory"):  # the stream that waits for it gets the error
        replace(held[0], lesson=failed).settle()
    learner.close()


def test_a_stream_learns_when_each_segment_ends(default_greedy: Recognizer, real_speech_flac: Path) -> None:
    rec = default_greedy
    audio = read_pcm(str(real_speech_flac))
    two = np.concatenate([audio, np.zeros(24000, np.float32), audio])  # 1.5 s pause: two segments
    state = rec.initial_state(adapt=AdaptConfig(lr=3e-3))
    assert state.adapt is not None and torch.equal(state.adapt.weight, rec.model.norm.weight)
    started_at: list[int] = []  # how many finals had come when each lesson started
    used_at: list[tuple[int, int]] = []  # the model frames of the step that first used it
    ended_in = (0, 0)  # the model frames of the step in which the first segment ended
    finals: list[Result] = []
    since = 0  # the model frame up to which the last lesson learnt
    for i in range(0, len(two), 1600):
        before, lesson = state.frame, state.adapt.lesson if state.adapt else None
        state, results = step(rec, state, two[i:i + 1600])
        assert state.adapt is not None
        if state.adapt.lesson is not None and state.adapt.lesson is not lesson:  # it started, then ran this chunk
            started_at.append(len(finals))
            due = state.adapt.due
            since = due - rec.adapt_delay(state.adapt.cfg)  # the frame where the segment ended ...
            assert ended_in[0] < since <= ended_in[1]  # ... within the step that gave the final
        if lesson is not None and state.adapt.lesson is None:
            used_at.append((before, state.frame))
            assert state.adapt.segments == 1 and not torch.equal(state.adapt.weight, rec.model.norm.weight)
        # Every frame the model ran since the start or the last lesson's end is kept to learn from.
        assert len(state.adapt.frames) == (state.frame - since) * rec.model.cfg.stack
        if any(r.is_final for r in results) and not finals:
            ended_in = (before, state.frame)
        finals += [r for r in results if r.is_final]
    assert started_at == [1]  # after the first final, before the next audio
    assert len(used_at) == 1 and used_at[0][0] <= due <= used_at[0][1]  # cfg.delay s later, to the frame
    state, results = finish(rec, state)
    finals += results
    # finish leaves the last segment's learning out (a live stream ends with its speaker) ...
    assert state.adapt is not None and state.adapt.segments == 1 and len(state.adapt.frames) > 0
    # ... which learn_rest does, for a speaker whose next stream is to come.
    rested = learn_rest(rec, state).adapt
    assert rested is not None and rested.segments == 2 and len(rested.frames) == 0
    # The first segment was heard before any learning, the second after.
    plain_state = rec.initial_state()
    plain = []
    for i in range(0, len(two), 1600):
        plain_state, results = step(rec, plain_state, two[i:i + 1600])
        plain += [r for r in results if r.is_final]
    plain += finish(rec, plain_state)[1]
    assert finals[0].text == plain[0].text and len(finals) == len(plain) == 2


def test_what_a_stream_learns_and_when_does_not_depend_on_its_chunks(default_greedy: Recognizer,
                                                                     real_speech_flac: Path) -> None:
    """Segments end by endpoint mid-chunk; chunks shorter than cfg.delay, regular or not, and a
    learner thread give the same finals and the same LayerNorm as 100 ms chunks learnt inline."""
    rec, cfg = default_greedy, AdaptConfig(lr=0.02, steps=3)
    audio = read_pcm(str(real_speech_flac))
    pause = np.zeros(24000, np.float32)
    three = np.concatenate([audio, pause, audio, pause, audio])

    def run(sizes: list[int], learner: adapt.Learner | None = None) -> tuple[list[str], torch.Tensor]:
        state, texts, at, k = rec.initial_state(adapt=cfg), [], 0, 0
        while at < len(three):
            size = sizes[k % len(sizes)]
            [(state, results)] = step_many(rec, [state], [three[at:at + size]], learner=learner)
            texts += [r.text for r in results if r.is_final]
            at, k = at + size, k + 1
        state, results = finish(rec, state)
        assert state.adapt is not None and state.adapt.segments == 2  # learnt from the first two segments
        return texts + [r.text for r in results if r.is_final], state.adapt.settle().weight

    texts, weight = run([1600])
    assert len(texts) == 3 and texts[1:] != [recognise(rec, audio, 1600)] * 2  # the later two heard otherwise
    learner = adapt.Learner(rec.model, rec.tokenizer.encode, rec.tokenizer.blank)
    try:
        for sizes, by in (([4800], None), ([160, 7200, 3200, 800], None), ([2400, 1600], learner)):
            other_texts, other_weight = run(sizes, by)
            assert other_texts == texts
            torch.testing.assert_close(other_weight, weight, rtol=0, atol=1e-5)  # float rounding
    finally:
        learner.close()


def test_silence_is_dropped_not_learnt(default_greedy: Recognizer) -> None:
    rec = default_greedy
    state = rec.initial_state(adapt=AdaptConfig(lr=3e-3))
    silence = np.zeros(1600, np.float32)
    for _ in range(80):  # 8 s: the segment restarts after 5 s without speech
        state, _ = step(rec, state, silence)
    assert state.adapt is not None and state.adapt.segments == 0
    assert len(state.adapt.frames) < 3.5 * 100  # only what came after the restart
    assert torch.equal(state.adapt.weight, rec.model.norm.weight)


def test_learning_stops_after_max_segments_and_a_speaker_goes_on_in_a_new_stream(
        default_greedy: Recognizer, real_speech_flac: Path) -> None:
    rec = default_greedy
    audio = read_pcm(str(real_speech_flac))
    speaker = Speaker(AdaptConfig(lr=3e-3, max_segments=1))
    recognise(rec, audio, 1600, speaker)
    first = speaker.adapt
    assert isinstance(first, AdaptState) and first.segments == 1
    state = rec.initial_state(adapt=first)
    assert state.adapt is not None and state.adapt.weight is first.weight and torch.equal(state.hidden, rec.start_hidden)
    recognise(rec, audio, 1600, speaker)
    assert speaker.adapt is not first and speaker.adapt.segments == 1  # type: ignore[union-attr]
    assert torch.equal(speaker.adapt.weight, first.weight)  # type: ignore[union-attr]


def test_adapted_and_plain_streams_batch_together(default_greedy: Recognizer, real_speech_flac: Path,
                                                  speech_wav: Path) -> None:
    rec = default_greedy
    speaker = Speaker(AdaptConfig(lr=0.02, steps=3))
    recognise(rec, read_pcm(str(real_speech_flac)), 1600, speaker)  # something learnt, to make it differ
    audios = [read_pcm(str(real_speech_flac)), read_pcm(str(speech_wav))]
    alone = [recognise(rec, audios[0], 1600, copy.copy(speaker)), recognise(rec, audios[1], 1600)]
    states = [rec.initial_state(adapt=speaker.adapt), rec.initial_state()]
    texts: list[list[str]] = [[], []]
    for i in range(0, max(map(len, audios)), 1600):
        done = step_many(rec, states, [a[i:i + 1600] for a in audios])
        states = [s for s, _ in done]
        for t, (_, results) in zip(texts, done):
            t += [r.text for r in results if r.is_final]
    for i in range(2):
        states[i], results = finish(rec, states[i])
        texts[i] += [r.text for r in results if r.is_final]
    assert [" ".join(t for t in ts if t) for ts in texts] == alone
    assert alone[0] != recognise(rec, audios[0], 1600)  # the adapted stream did read differently


def test_off_and_quantized(default_greedy: Recognizer, tiny_model_path: Path) -> None:
    assert default_greedy.initial_state(adapt=AdaptConfig()).adapt is None  # lr 0: off
    int8 = Recognizer.load(tiny_model_path, quantize=True, decoder=DecoderConfig(method="greedy"))
    with pytest.raises(ValueError, match="speaker adaptation needs the float model; tiny-int8 is quantized"):
        int8.initial_state(adapt=AdaptConfig(lr=3e-3))


def test_eval_adapts_per_voice(default_greedy: Recognizer, real_speech_flac: Path, speech_wav: Path) -> None:
    items = [Utterance(str(real_speech_flac), "x", 3.0, "allison"), Utterance(str(speech_wav), "x", 3.8, "rms"),
             Utterance(str(real_speech_flac), "x", 3.0, "allison")]
    plain = [recognise(default_greedy, read_pcm(u.audio), 1600) for u in items]
    report, hyps = evaluate(default_greedy, items, 100, adapt=AdaptConfig(lr=0.02, steps=3))
    # Each file is one segment: the first file of each voice comes before any learning.
    assert [h.hyp for h in hyps[:2]] == plain[:2]
    assert report["adapt"] == {"lr": 0.02, "steps": 3, "max_seconds": 30.0, "max_segments": 1000,
                               "target": "entropy", "pull": 0.0, "delay": 0.5, "passes": 1}
    # What one voice learnt, replayed by hand, gives the third result.
    speaker = Speaker(AdaptConfig(lr=0.02, steps=3))
    recognise(default_greedy, read_pcm(str(real_speech_flac)), 1600, speaker)
    assert hyps[2].hyp == recognise(default_greedy, read_pcm(str(real_speech_flac)), 1600, speaker)
    assert hyps[2].hyp != plain[2]  # what it learnt changed the result
    assert "adapt" not in evaluate(default_greedy, items[:1], 100)[0]
    # Two passes: the second hears every recording with what the whole first pass taught.
    report, again = evaluate(default_greedy, items, 100, adapt=AdaptConfig(lr=0.02, steps=3), passes=2)
    # ``speaker`` has heard the voice's two recordings above: its first pass, by hand.
    assert again[0].hyp == recognise(default_greedy, read_pcm(str(real_speech_flac)), 1600, speaker) != plain[0]
    assert report["adapt"]["passes"] == 2 and len(again) == 3
    with pytest.raises(ValueError, match="--adapt-passes 2 hears the files again with what the voice taught: "
                                         "it needs --adapt-lr"):
        evaluate(default_greedy, items, 100, passes=2)


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
    # Two passes: only the second is written, every file heard with what the first pass taught.
    assert main([*argv, "--adapt-lr", "0.02", "--adapt-steps", "3", "--adapt-passes", "2"]) == 0
    twice = capsys.readouterr().out.splitlines()
    speaker = Speaker(AdaptConfig(lr=0.02, steps=3))
    rec = Recognizer.load(None, decoder=DecoderConfig(method="greedy"))
    for _ in range(3):  # the first pass's two files, then the second pass's first
        text = transcribe_audio(rec, read_pcm(str(real_speech_flac)), speaker=speaker).text
    assert len(twice) == 2 and twice[0] == text and twice[0] not in (adapted[0], adapted[1])
    for bad, message in (("0", "--adapt-passes must be an integer in [1, 100], got 0"),
                         ("2", "--adapt-passes 2 hears the files again with what the voice taught: it needs "
                               "--adapt-lr (e.g. 0.003)")):
        extra = ["--adapt-lr", "0.003"] if bad == "0" else []
        assert main([*argv, *extra, "--adapt-passes", bad]) == 2
        assert capsys.readouterr().err == f"streamasr transcribe: error: {message}\n"
    assert main([*argv, "--adapt-lr", "0.003", "--quantize"]) == 2
    assert capsys.readouterr().err == "streamasr transcribe: error: --adapt-lr needs the float model: drop --quantize\n"


def test_server_streams_learn_their_own_speaker_unless_they_decline(default_greedy: Recognizer,
                                                                    real_speech_flac: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A real server on port 0: the segment after a flush is heard with what the one before taught,
    exactly as the engine does it alone; a stream that declines, and a server without it, do not learn."""
    rec, cfg = default_greedy, AdaptConfig(lr=0.02, steps=3)
    audio = read_pcm(str(real_speech_flac))
    long_pause = EndpointConfig(silence_after_speech=3.0)  # only the flush ends the first segment

    def engine(adapt_cfg: AdaptConfig | None) -> list[str]:
        state = rec.initial_state(endpoint_cfg=long_pause, adapt=adapt_cfg)
        state, r1 = step(rec, state, audio)
        state, r2 = flush_segment(rec, state)
        state, r3 = step(rec, state, audio)
        state, r4 = finish(rec, state)
        return [r.text for r in r1 + r2 + r3 + r4 if r.is_final]

    async def client(url: str, adapt_wanted: bool) -> tuple[bool, list[str]]:
        start = Start(encoding="pcm_f32le", partials=False, endpoint=long_pause, adapt=adapt_wanted)
        async with StreamClient(url, start) as c:
            for i in range(0, len(audio), 1600):
                await c.send_audio(audio[i:i + 1600])
            await c.flush()
            first = await anext(c.results())
            for i in range(0, len(audio), 2400):  # other chunks: learning must not depend on them
                await c.send_audio(audio[i:i + 2400])
            await c.stop()
            return c.ready.adapt, [first.text] + [r.text async for r in c.results() if r.is_final]

    metrics: list[str] = []

    async def main() -> list[tuple[bool, list[str]]]:
        async with StreamServer(rec, ServerConfig(port=0), adapt=cfg) as server:
            both = await asyncio.gather(client(server.url, True), client(server.url, False))
            metrics.append(server.metrics.render(0, server.worker))
        async with StreamServer(rec, ServerConfig(port=0)) as server:
            return [*both, await client(server.url, True)]

    with caplog.at_level(logging.INFO, logger="streamasr.service.server"):
        adapted, declined, unoffered = asyncio.run(asyncio.wait_for(main(), 60))
    # The adapted stream's first segment went to the learner thread (the finish learns nothing).
    assert "streamasr_lessons_total 1\n" in metrics[0] and "streamasr_learn_seconds_total 0\n" not in metrics[0]
    assert "at most 64 streams, speaker adaptation lr 0.02 towards entropy)" in caplog.text
    plain = engine(None)
    assert adapted == (True, engine(cfg)) and declined == unoffered == (False, plain)
    assert adapted[1][0] == plain[0] and adapted[1][1] != plain[1]  # learnt from the first, for the second
    int8 = Recognizer.load(None, quantize=True, decoder=DecoderConfig(method="greedy"))
    with pytest.raises(ValueError, match=f"speaker adaptation needs the float model; {int8.name} is quantized"):
        StreamServer(int8, ServerConfig(port=0), adapt=cfg)


def test_mic_learns_locally_and_the_options_refuse_what_cannot_work(
        default_greedy: Recognizer, real_speech_flac: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec, cfg = default_greedy, AdaptConfig(lr=0.02, steps=3)
    audio = read_pcm(str(real_speech_flac))
    clip = tmp_path / "two.wav"  # two segments: a 1.5 s pause between them
    sf.write(clip, np.concatenate([audio, np.zeros(24000, np.float32), audio]), 16000, subtype="FLOAT")
    shown: list[Result] = []
    learnt_on: list[str] = []  # the threads that learnt
    learn_many = adapt.learn_many

    def recorded(*args: object) -> list[AdaptState]:
        learnt_on.append(threading.current_thread().name)
        return learn_many(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(adapt, "learn_many", recorded)
    asyncio.run(mic.run_local(mic.FileSource(clip, realtime=False), rec, shown.append, adapt=cfg))
    assert learnt_on == ["streamasr-learn"]  # the first segment, off the captions' thread
    monkeypatch.undo()
    texts = " ".join(r.text for r in shown if r.is_final and r.text)
    both = read_pcm(str(clip))
    # FileSource gives 100 ms blocks, the chunks recognise() is given here.
    assert texts == recognise(rec, both, 1600, Speaker(cfg)) != recognise(rec, both, 1600)

    assert main(["serve", "--adapt-lr", "0.003", "--quantize"]) == 2
    assert capsys.readouterr().err == "streamasr serve: error: --adapt-lr needs the float model: drop --quantize\n"
    assert main(["mic", "--from-file", str(clip), "--url", "ws://127.0.0.1:9/v1/stream", "--adapt-lr", "0.003"]) == 2
    assert "--adapt-lr is for local recognition; with --url the server's own --adapt-lr decides" in \
        capsys.readouterr().err
    parser = build_parser()
    assert start_from_args(parser.parse_args(["mic"]), 16000, "pcm_f32le").adapt is True
    assert start_from_args(parser.parse_args(["client", str(clip), "--no-adapt"]), 16000, "pcm_f32le").adapt is False
    named = parser.parse_args(["mic", "--url", "ws://127.0.0.1:9/v1/stream", "--speaker", "ana"])
    assert start_from_args(named, 16000, "pcm_f32le").speaker == "ana"  # the server's profile of that name


def test_a_speaker_profile_keeps_the_voice_between_runs(capsys: pytest.CaptureFixture[str], real_speech_flac: Path,
                                                         tiny_model_path: Path, tmp_path: Path) -> None:
    cfg = AdaptConfig(lr=0.02, steps=3)
    speaker = Speaker(cfg)
    rec = Recognizer.load(None, decoder=DecoderConfig(method="greedy"))
    for _ in range(2):
        transcribe_audio(rec, read_pcm(str(real_speech_flac)), speaker=speaker)
    assert isinstance(speaker.adapt, AdaptState)
    per_run = speaker.adapt.segments
    argv = ["transcribe", "--method", "greedy", "--adapt-lr", "0.02", "--adapt-steps", "3",
            str(real_speech_flac), str(real_speech_flac)]
    assert main([*argv, "--adapt-passes", "2"]) == 0
    twice = capsys.readouterr().out
    profile = tmp_path / "voice.spk"
    assert main([*argv, "--speaker", str(profile)]) == 0  # no such file yet: a new voice, kept at the end
    first = capsys.readouterr()
    assert f"streamasr transcribe: speaker profile {profile}: {per_run} segments learnt in all\n" in first.err
    kept = torch.load(profile, weights_only=True)
    assert torch.equal(kept["weight"], speaker.adapt.weight) and torch.equal(kept["bias"], speaker.adapt.bias)
    # The next run starts where this one ended: the same as hearing the files a second time.
    assert main([*argv, "--speaker", str(profile)]) == 0
    second = capsys.readouterr()
    assert second.out == twice != first.out
    assert f"speaker profile {profile}: {2 * per_run} segments learnt in all" in second.err

    saved = profile.read_bytes()
    not_profile = tmp_path / "notes.spk"
    not_profile.write_text("my voice\n")
    old = dict(kept, version=99)
    old_profile = tmp_path / "old.spk"
    torch.save(old, old_profile)
    for extra, message in (
            (["--speaker", str(not_profile)], f"{not_profile} is not a speaker profile (--speaker writes those)\n"),
            (["--speaker", str(old_profile)], f"speaker profile {old_profile} has version 99; this streamasr "
                                              f"reads version 1\n"),
            (["--speaker", str(profile), "--model", str(tiny_model_path)],
             f"speaker profile {profile} was learnt by another model (fingerprint {kept['model']}, this model's "),
    ):
        assert main([*argv, *extra]) == 2
        assert capsys.readouterr().err.startswith(f"streamasr transcribe: error: {message}")
    assert profile.read_bytes() == saved  # a refused run leaves the profile alone
    assert main([*argv, "--speaker", str(tmp_path / "nowhere" / "voice.spk")]) == 2
    assert capsys.readouterr().err == (f"streamasr transcribe: error: --speaker {tmp_path / 'nowhere' / 'voice.spk'}: "
                                       f"there is no directory {tmp_path / 'nowhere'} to keep it in\n")
    plain = [a for a in argv if a not in ("--adapt-lr", "0.02", "--adapt-steps", "3")]
    assert main([*plain, "--speaker", str(profile)]) == 2
    assert capsys.readouterr().err == (f"streamasr transcribe: error: --speaker {profile} keeps what the voice "
                                       f"taught between runs: it needs --adapt-lr (e.g. 0.003)\n")


def test_mic_keeps_the_voice_in_a_speaker_profile(default_greedy: Recognizer, real_speech_flac: Path,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = read_pcm(str(real_speech_flac))[:32000]  # 2 s: the file plays at real-time pace
    clip = tmp_path / "clip.wav"
    sf.write(clip, audio, 16000, subtype="FLOAT")
    profile = tmp_path / "me.spk"
    argv = ["mic", "--from-file", str(clip), "--method", "greedy", "--adapt-lr", "0.02", "--adapt-steps", "3",
            "--speaker", str(profile)]
    speaker = Speaker(AdaptConfig(lr=0.02, steps=3))
    for session in range(2):  # the second session starts from what the first taught
        expected = recognise(default_greedy, audio, 1600, speaker)
        assert main(argv) == 0
        out = capsys.readouterr()
        assert " ".join(out.out.split()) == expected
        assert isinstance(speaker.adapt, AdaptState)
        assert f"speaker profile {profile}: {speaker.adapt.segments} segments learnt in all" in out.err
        kept = torch.load(profile, weights_only=True)
        assert torch.equal(kept["weight"], speaker.adapt.weight) and kept["segments"] == speaker.adapt.segments
    assert main([*argv, "--no-adapt"]) == 2
    assert f"--speaker {profile} keeps what the voice taught: drop --no-adapt" in capsys.readouterr().err


def test_server_keeps_named_speakers_profiles(default_greedy: Recognizer, real_speech_flac: Path,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real server on port 0 with --speakers: a stream that names its speaker starts from what the
    speaker's last stream taught and keeps what it teaches, as the engine does with a Speaker."""
    rec, cfg = default_greedy, AdaptConfig(lr=0.02, steps=3)
    audio = read_pcm(str(real_speech_flac))
    speakers = tmp_path / "voices"
    speakers.mkdir()
    (speakers / "bob.spk").write_text("not a profile\n")

    async def client(url: str, name: str | None, adapt_wanted: bool = True) -> list[str]:
        start = Start(encoding="pcm_f32le", partials=False, adapt=adapt_wanted, speaker=name)
        async with StreamClient(url, start) as c:
            for i in range(0, len(audio), 1600):
                await c.send_audio(audio[i:i + 1600])
            await c.stop()
            return [r.text async for r in c.results() if r.is_final]

    async def refused(url: str, name: str | None, adapt_wanted: bool = True) -> str:
        with pytest.raises(ServerError) as info:
            await client(url, name, adapt_wanted)
        return str(info.value)

    metrics: list[str] = []

    async def serve() -> tuple[list[list[str]], list[str]]:
        async with StreamServer(rec, ServerConfig(port=0, speakers=str(speakers)), adapt=cfg) as server:
            runs = [await client(server.url, "alice"), await client(server.url, "alice"),
                    await client(server.url, None)]
            errors = [await refused(server.url, "../alice"), await refused(server.url, "bob"),
                      await refused(server.url, "alice", adapt_wanted=False)]
            metrics.append(server.metrics.render(0, server.worker))
        async with StreamServer(rec, ServerConfig(port=0), adapt=cfg) as server:
            errors.append(await refused(server.url, "alice"))
        return runs, errors

    runs, errors = asyncio.run(asyncio.wait_for(serve(), 120))
    speaker = Speaker(cfg)
    for run in runs[:2]:  # the second stream starts where the first one's profile left off
        assert " ".join(run) == recognise(rec, audio, 1600, speaker)
    assert runs[2] != runs[1] and " ".join(runs[2]) == recognise(rec, audio, 1600, Speaker(cfg))
    kept = torch.load(speakers / "alice.spk", weights_only=True)
    assert isinstance(speaker.adapt, AdaptState)
    assert torch.equal(kept["weight"], speaker.adapt.weight) and kept["segments"] == speaker.adapt.segments == 2
    assert errors[0].startswith("bad_field: start.speaker must be null or a name of 1 to 64 letters")
    assert errors[1] == ("bad_field: start.speaker 'bob': the server's profile of that name cannot be used "
                         "(another model's, or damaged); start with another name")
    assert errors[2] == "bad_field: start.speaker 'alice' learns the speaker's voice: it needs start.adapt true"
    assert errors[3] == ("bad_field: start.speaker 'alice': this server keeps no speaker profiles "
                         "(serve --speakers DIR)")
    assert (speakers / "bob.spk").read_text() == "not a profile\n"
    assert sorted(p.name for p in speakers.iterdir()) == ["alice.spk", "bob.spk"]  # no temporary file left
    assert ('streamasr_speaker_profiles_total{event="kept"} 2\n'
            'streamasr_speaker_profiles_total{event="loaded"} 1\n'
            'streamasr_speaker_profiles_total{event="new"} 1\n') in metrics[0]
    with pytest.raises(ValueError, match="--speakers .* keeps what streams' speakers taught: it needs --adapt-lr"):
        StreamServer(rec, ServerConfig(port=0, speakers=str(speakers)))
    assert main(["serve", "--speakers", str(speakers)]) == 2
    assert capsys.readouterr().err == (f"streamasr serve: error: --speakers {speakers} keeps what streams' "
                                       f"speakers taught: it needs --adapt-lr (e.g. 0.003)\n")
