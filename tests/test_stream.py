"""The streaming engine. Above all the invariant: chunk size never changes the output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from streamasr.engine import stream
from streamasr.engine.audio import load_audio, resample
from streamasr.engine.beam import DecoderConfig
from streamasr.engine.endpoint import EndpointConfig
from streamasr.errors import AudioError
from streamasr.results import Result
from streamasr.engine.stream import Recognizer, StreamState, finish, flush_segment, step, step_many

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# A short silence rule, so that the tiny random model's output falls into several segments.
SHORT = EndpointConfig(silence_after_speech=0.3)


@pytest.fixture
def recorded_log_probs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[np.ndarray]]:
    """Collects the log-probs of stream 0 from every model call step() makes."""
    calls: list[np.ndarray] = []
    original = stream._run_model

    def recording(rec: Recognizer, states: list[StreamState], frames: list[torch.Tensor]) -> list[
            tuple[np.ndarray, torch.Tensor]]:
        out = original(rec, states, frames)
        if len(out[0][0]):
            calls.append(out[0][0])
        return out

    monkeypatch.setattr(stream, "_run_model", recording)
    yield calls


def run(rec: Recognizer, audio: np.ndarray, chunk: int, rate: int = 16000,
        cfg: EndpointConfig = SHORT) -> tuple[list[Result], list[Result]]:
    """Feed ``audio`` in chunks; returns (finals, partials)."""
    state, results = rec.initial_state(rate, cfg), []
    for start in range(0, len(audio), chunk):
        state, out = step(rec, state, audio[start:start + chunk])
        results += out
    state, out = finish(rec, state)
    results += out
    assert state.finished
    return [r for r in results if r.is_final], [r for r in results if not r.is_final]


def whole_log_probs(rec: Recognizer, audio16k: np.ndarray) -> np.ndarray:
    """The model on the whole file at once, from the state a stream starts in."""
    with torch.no_grad():
        return rec.model(rec.features(torch.from_numpy(audio16k))[None], rec.start_hidden[:, None])[0][0].numpy()


def check_finals_equal(got: list[Result], expected: list[Result]) -> None:
    assert [(r.segment, r.text, r.start, r.end) for r in got] == [
        (r.segment, r.text, r.start, r.end) for r in expected]
    for a, b in zip(got, expected):
        assert [(w.word, w.start, w.end) for w in a.words] == [(w.word, w.start, w.end) for w in b.words]
        assert [w.conf for w in a.words] == pytest.approx([w.conf for w in b.words], abs=2e-3)


@pytest.mark.parametrize("lookahead", [0, 2])
@pytest.mark.parametrize("chunk_ms", [10, 37, 100, 1000, None])  # None: the whole file in one step
def test_streaming_equals_whole_signal(tiny_model_path: Path, lookahead_model_path: Path, speech_wav: Path,
                                       recorded_log_probs: list[np.ndarray], chunk_ms: int | None,
                                       lookahead: int) -> None:
    rec = Recognizer.load(lookahead_model_path if lookahead else tiny_model_path,
                          decoder=DecoderConfig(method="greedy"))
    # A lookahead of two 40 ms steps: two steps of digital silence close every stream, after the
    # 0.3 s of silence that every stream ends with (DecoderConfig.tail_seconds).
    assert rec.lookahead_samples == 640 * lookahead and rec.tail_samples == rec.lookahead_samples + 4800
    audio = load_audio(speech_wav)
    reference = whole_log_probs(rec, np.concatenate([audio, np.zeros(rec.tail_samples, np.float32)]))
    ref_finals, _ = run(rec, audio, len(audio))
    recorded_log_probs.clear()
    finals, _ = run(rec, audio, len(audio) if chunk_ms is None else 16 * chunk_ms)
    streamed = np.concatenate(recorded_log_probs)
    # Every 40 ms of audio and tail gets its output; a lookahead only delays them.
    length = len(audio) + rec.tail_samples - rec.lookahead_samples
    assert streamed.shape == reference.shape == (rec.feature_cfg.num_frames(length) // 4, 29)
    np.testing.assert_allclose(streamed, reference, atol=1e-4, rtol=0)
    assert len(ref_finals) >= 2, "the test needs several segments to be meaningful"
    check_finals_equal(finals, ref_finals)
    # The offline decode of the whole-signal log-probs gives the same text.
    tokens, _ = stream.ctc.greedy(reference, 0, 0)
    assert " ".join(r.text for r in finals).replace(" ", "") == "".join(
        rec.tokenizer.vocab[t.id] for t in tokens).replace(" ", "")


def test_lookahead_delays_each_output_by_its_steps(lookahead_model_path: Path, speech_wav: Path) -> None:
    rec = Recognizer.load(lookahead_model_path, decoder=DecoderConfig(method="greedy"))
    state, _ = step(rec, rec.initial_state(), load_audio(speech_wav)[:16000])
    # One second gives 98 frames, 24 whole stacks; the last two wait for their lookahead.
    assert state.frame == 22 and state.pending.shape == (10, 80)


def test_lookahead_streams_batch_like_single_ones(lookahead_model_path: Path) -> None:
    rec = Recognizer.load(lookahead_model_path, decoder=DecoderConfig(method="greedy"))
    inputs = [(load_audio(ASSETS / "sample_flite_rms.wav"), 1600), (load_audio(ASSETS / "sample_allison_real.flac"), 592)]
    alone = [run(rec, audio, chunk)[0] for audio, chunk in inputs]
    states = [rec.initial_state(16000, SHORT) for _ in inputs]
    together: list[list[Result]] = [[] for _ in inputs]
    for i in range(max(len(a) // k + 1 for a, k in inputs)):
        for n, (state, out) in enumerate(step_many(rec, states, [a[i * k:(i + 1) * k] for a, k in inputs])):
            states[n] = state
            together[n] += out
    for n, state in enumerate(states):
        states[n], out = finish(rec, state)
        together[n] += out
        check_finals_equal([r for r in together[n] if r.is_final], alone[n])


def test_non_16k_stream(tiny_recognizer: Recognizer, recorded_log_probs: list[np.ndarray]) -> None:
    data, rate = sf.read(ASSETS / "sample_espeak_stereo_22k.flac", dtype="float32")
    mono = data.mean(axis=1)
    tail = np.zeros(tiny_recognizer.tail_samples, np.float32)  # the silence that closes every stream
    reference = whole_log_probs(tiny_recognizer, np.concatenate([resample(mono, rate), tail]))
    finals, _ = run(tiny_recognizer, mono, 816, rate=rate)  # 37 ms at 22.05 kHz
    np.testing.assert_allclose(np.concatenate(recorded_log_probs), reference, atol=1e-4, rtol=0)
    expected, _ = run(tiny_recognizer, load_audio(ASSETS / "sample_espeak_stereo_22k.flac"), 16000)
    check_finals_equal(finals, expected)


def test_streams_start_from_the_state_silence_leaves(tiny_model_path: Path) -> None:
    unprimed = Recognizer.load(tiny_model_path, decoder=DecoderConfig(method="greedy", prime_seconds=0.0))
    primed = Recognizer.load(tiny_model_path, decoder=DecoderConfig(method="greedy", prime_seconds=0.2))
    assert not unprimed.initial_state().hidden.any()
    # A primed stream starts where an unprimed one is after 0.2 s of silence (whole 40 ms steps).
    after_silence, _ = step(unprimed, unprimed.initial_state(), np.zeros(3200, np.float32))
    assert after_silence.frame == 4
    torch.testing.assert_close(primed.initial_state().hidden, after_silence.hidden, atol=1e-6, rtol=0)
    assert primed.initial_state().hidden.abs().max() > 1e-3


def test_int16_bytes_equal_float_input(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    pcm, _ = sf.read(speech_wav, dtype="int16")
    state_b, state_f = tiny_recognizer.initial_state(), tiny_recognizer.initial_state()
    out_b: list[Result] = []
    out_f: list[Result] = []
    for start in range(0, len(pcm), 1600):
        state_b, r = step(tiny_recognizer, state_b, pcm[start:start + 1600].tobytes(), "pcm_s16le")
        out_b += r
        state_f, r = step(tiny_recognizer, state_f, pcm[start:start + 1600].astype(np.float32) / 32768)
        out_f += r
    assert [r.text for r in out_b] == [r.text for r in out_f] and out_b


def test_step_many_equals_each_alone(tiny_recognizer: Recognizer) -> None:
    rec = tiny_recognizer
    data, rate = sf.read(ASSETS / "sample_espeak_stereo_22k.flac", dtype="float32")
    inputs = [(load_audio(ASSETS / "sample_flite_rms.wav"), 16000, 1600),
              (load_audio(ASSETS / "sample_allison_real.flac"), 16000, 592),  # ragged batch rows
              (data.mean(axis=1), rate, 2205)]
    alone = [run(rec, audio, chunk, audio_rate) for audio, audio_rate, chunk in inputs]
    states = [rec.initial_state(r, SHORT) for _, r, _ in inputs]
    together: list[list[Result]] = [[] for _ in inputs]
    for i in range(max(len(a) // k + 1 for a, _, k in inputs)):
        chunks = [a[i * k:(i + 1) * k] for a, _, k in inputs]
        for n, (state, out) in enumerate(step_many(rec, states, list(chunks))):
            states[n] = state
            together[n] += out
    for n, state in enumerate(states):
        states[n], out = finish(rec, state)
        together[n] += out
    for n, (finals, partials) in enumerate(alone):
        check_finals_equal([r for r in together[n] if r.is_final], finals)
        assert [r.text for r in together[n] if not r.is_final] == [r.text for r in partials]


def test_flush_segment(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    rec, audio = tiny_recognizer, load_audio(speech_wav)
    state = rec.initial_state()
    state, _ = step(rec, state, audio[:24000])
    assert state.tokens and state.segment == 0
    state, results = flush_segment(rec, state)
    assert len(results) == 1 and results[0].is_final and results[0].segment == 0 and results[0].text
    assert state.segment == 1 and state.tokens == () and state.segment_start == state.frame
    again, nothing = flush_segment(rec, state)  # nothing buffered: no final, same segment
    assert nothing == [] and again.segment == 1
    state, results = step(rec, state, audio[24000:])
    assert all(r.segment >= 1 for r in results)
    state, results = finish(rec, state)
    assert all(r.is_final and r.segment >= 1 for r in results)


def test_audio_after_finish_raises(tiny_recognizer: Recognizer) -> None:
    state, _ = finish(tiny_recognizer, tiny_recognizer.initial_state())
    with pytest.raises(AudioError, match="audio after finish"):
        step(tiny_recognizer, state, np.zeros(160, np.float32))


@pytest.mark.parametrize("pcm, message", [
    (np.array([0.0, np.nan], np.float32), "NaN or inf"),
    (b"\x00\x00\x00", "3 bytes is not a whole number"),
    (np.zeros(10, np.int64), "dtype int64 is not supported"),
])
def test_bad_chunks_raise_and_leave_the_state_usable(tiny_recognizer: Recognizer, pcm: object,
                                                     message: str) -> None:
    state = tiny_recognizer.initial_state()
    with pytest.raises(AudioError, match=message):
        step(tiny_recognizer, state, pcm)  # type: ignore[arg-type]
    state, _ = step(tiny_recognizer, state, np.zeros(1600, np.float32))
    assert state.samples == 1600


def test_float32_wire_bytes(tiny_recognizer: Recognizer) -> None:
    """Read-only buffers from np.frombuffer must not trigger torch's non-writable warning."""
    pcm = (0.1 * np.random.default_rng(0).standard_normal(1600)).astype("<f4").tobytes()
    state, _ = step(tiny_recognizer, tiny_recognizer.initial_state(), pcm, "pcm_f32le")
    assert state.frame == 2  # 1600 samples: 8 feature frames, 2 model frames of 4


@pytest.mark.parametrize("rate", [0, 999, 16000.0, 500000])
def test_bad_sample_rate(tiny_recognizer: Recognizer, rate: object) -> None:
    with pytest.raises(AudioError, match="is not supported; expected an integer in"):
        tiny_recognizer.initial_state(rate)  # type: ignore[arg-type]


def test_results_identical_alone_and_among_50_others(tiny_recognizer: Recognizer) -> None:
    """Batching must not change any stream's output: each of 51 streams, run alone and all together.

    The streams differ in audio, start offset, chunk size and sample rate (so batch rows are ragged
    and some go through the resampler), and start and end at different steps.
    """
    rec = tiny_recognizer
    sources = [load_audio(ASSETS / name) for name in ("sample_flite_rms.wav", "sample_allison_real.flac")]
    rng = np.random.default_rng(0)
    streams = []
    for n in range(51):
        audio = sources[n % 2][int(rng.integers(0, 16000)):]
        rate = (16000, 16000, 22050, 8000)[n % 4]
        streams.append((resample(audio, 16000, rate) if rate != 16000 else audio, rate,
                        int(rng.integers(1, 40)) * rate // 100, int(rng.integers(0, 5))))  # chunk, first step
    alone = [run(rec, audio, chunk, rate) for audio, rate, chunk, _ in streams]
    states = [rec.initial_state(rate, SHORT) for _, rate, _, _ in streams]
    together: list[list[Result]] = [[] for _ in streams]
    ended = [False] * len(streams)
    for i in range(max(first + len(a) // k + 1 for a, _, k, first in streams)):
        active = [n for n, (a, _, k, first) in enumerate(streams) if first <= i and (i - first) * k < len(a)]
        chunks = [streams[n][0][(i - streams[n][3]) * streams[n][2]:(i - streams[n][3] + 1) * streams[n][2]]
                  for n in active]
        for n, (state, out) in zip(active, step_many(rec, [states[n] for n in active], chunks)):
            states[n] = state
            together[n] += out
        for n, (a, _, k, first) in enumerate(streams):
            if not ended[n] and (i - first + 1) * k >= len(a):
                states[n], out = finish(rec, states[n])
                together[n] += out
                ended[n] = True
    assert all(ended)
    for n, (finals, partials) in enumerate(alone):
        check_finals_equal([r for r in together[n] if r.is_final], finals)
        assert [(r.segment, r.text, r.start, r.end) for r in together[n] if not r.is_final] == [
            (r.segment, r.text, r.start, r.end) for r in partials]
    assert sum(len(f) for f, _ in alone) > 50  # the streams really produce text


def test_partial_words_equal_those_of_the_whole_segment(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    """Partials are built from the words kept in the state plus the word being spoken."""
    rec, audio = tiny_recognizer, load_audio(speech_wav)
    state = rec.initial_state(16000, SHORT)
    checked = 0
    for start in range(0, len(audio), 592):
        state, results = step(rec, state, audio[start:start + 592])
        for r in results:
            if not r.is_final:
                assert r.words == tuple(stream.ctc.words_from_tokens(state.tokens, rec.tokenizer.vocab,
                                                                    rec.tokenizer.space, rec.frame_seconds))
                assert r.text == " ".join(w.word for w in r.words)
                checked += 1
    assert checked > 10


def test_quantized_recognizer(tiny_model_path: Path, speech_wav: Path) -> None:
    # Greedy: the test is about the int8 model; with a random tiny model the LM can rightly prefer silence.
    rec = Recognizer.load(tiny_model_path, quantize=True, decoder=DecoderConfig(method="greedy"))
    assert rec.name == "tiny-int8" and rec.meta["quantized"] == "int8-dynamic"
    finals, _ = run(rec, load_audio(speech_wav), 1600)
    assert finals and all(r.text for r in finals)


def test_times_end_with_the_audio(real_speech_flac: Path) -> None:
    """The closing silence (tail_seconds) may hold the last characters' spikes; times stay in the audio."""
    rec = Recognizer.load(decoder=DecoderConfig(method="greedy"))
    for seconds in (0.5, 1.0, 3.0):
        audio = load_audio(real_speech_flac)[:int(seconds * 16000)]
        state, results = step(rec, rec.initial_state(), audio)
        state, last = finish(rec, state)
        finals = [r for r in results + last if r.is_final and r.words]
        assert finals and all(r.end <= seconds and all(w.end <= seconds for w in r.words) for r in finals)
        # A word cut off mid-way is emitted in the silence; it keeps the audio's last frame.
        assert all(r.start < r.end and all(w.start < w.end for w in r.words) for r in finals)


def test_the_resampler_cache_stays_bounded(tiny_model_path: Path) -> None:
    from streamasr.engine.stream import RESAMPLERS

    rec = Recognizer.load(tiny_model_path, decoder=DecoderConfig(method="greedy"))
    for rate in range(8001, 8001 + 3 * RESAMPLERS):
        rec.initial_state(rate)
    assert len(rec._resamplers) == RESAMPLERS
    assert list(rec._resamplers)[-1] == 8000 + 3 * RESAMPLERS  # the most recent kept
    state = rec.initial_state(44100)
    state, _ = step(rec, state, np.zeros(4410, np.float32))  # a rate evicted meanwhile is rebuilt as it was
    for rate in range(9001, 9001 + RESAMPLERS):
        rec.initial_state(rate)
    state, _ = step(rec, state, np.zeros(4410, np.float32))
    assert state.samples == 8820
