"""CTC prefix beam search with the character and word LMs: greedy equivalence, LM fusion, streaming invariant."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamasr.training import lm_build
from streamasr.engine import ctc, lm
from streamasr.engine.audio import load_audio
from streamasr.engine.beam import DEFAULT_OOV_PENALTY, BeamDecoder, Beams, DecoderConfig
from streamasr.cli import main
from streamasr.engine.endpoint import EndpointConfig
from streamasr.engine.hotwords import UNKNOWN_PENALTY, Grammar, Hotwords, read_hotwords, read_phrases
from streamasr.errors import ModelError
from streamasr.results import Result
from streamasr.engine.stream import Recognizer, finish, flush_segment, step, step_many
from streamasr.engine.text import DEFAULT_VOCAB, Tokenizer

TOK = Tokenizer()
ID = {c: i for i, c in enumerate(DEFAULT_VOCAB)}
SHORT = EndpointConfig(silence_after_speech=0.3)  # several segments from the tiny random model


@pytest.fixture(scope="module")
def beam_recognizer(tiny_model_path: Path, tiny_lm_path: Path) -> Recognizer:
    # Weights pinned, not the tuned defaults: at a higher word weight the tiny model's words lose to silence.
    cfg = DecoderConfig(method="beam", beam_size=4, lm=str(tiny_lm_path), insertion_bonus=2.0, word_weight=0.2)
    return Recognizer.load(tiny_model_path, decoder=cfg)


def frames(spec: list[dict[str, float] | str], floor: float = 1e-4) -> np.ndarray:
    """float32 (frames, vocab) log-probs; a frame is a char ('_' = blank, prob 0.97) or {char: prob}."""
    out = np.full((len(spec), len(DEFAULT_VOCAB)), floor)
    for t, f in enumerate(spec):
        for c, p in ({f: 0.97} if isinstance(f, str) else f).items():
            out[t, 0 if c == "_" else ID[c]] = p
    return np.log(out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def decode(dec: BeamDecoder, log_probs: np.ndarray, beams: Beams | None = None,
           hotwords: Hotwords | None = None, grammar: Grammar | None = None) -> Beams:
    beams = dec.initial() if beams is None else beams
    for t, row in enumerate(log_probs.tolist()):
        beams = dec.advance(beams, row, t, hotwords, grammar)
    return beams


def end_score(dec: BeamDecoder, log_probs: np.ndarray, text: str) -> float:
    """What the sentence end adds to the prefix ``text`` after decoding ``log_probs``."""
    beams = decode(dec, log_probs)
    return float(dec.end_scores(beams)[[b.text for b in beams].index(text)])


def test_beam_one_without_lm_is_greedy() -> None:
    """Best prefix and best path coincide when each frame has one clear winner, as CTC posteriors do."""
    dec = BeamDecoder(DecoderConfig(method="beam", beam_size=1, lm_weight=0.0, insertion_bonus=0.0), TOK)
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 60))
        ids = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 29, n))
        probs = rng.dirichlet(np.ones(29), n) * 0.08
        probs[np.arange(n), ids] += 0.92
        log_probs = np.log(probs).astype(np.float32)
        greedy, _ = ctc.greedy(log_probs, 0, 0)
        best = decode(dec, log_probs)[0]
        assert [(t.id, t.frame) for t in best.tokens] == [(t.id, t.frame) for t in greedy]
        assert [t.prob for t in best.tokens] == pytest.approx([t.prob for t in greedy], rel=1e-6)


def test_lm_flips_an_ambiguous_character_to_a_word(tiny_lm_path: Path) -> None:
    # "the numb?r" where the acoustics slightly prefer "o" to "e".
    spec: list[dict[str, float] | str] = [*"t_h_e_ _n_u_m_b_", {"o": 0.5, "e": 0.42, "_": 0.08}, "_", "r", "_", "_"]
    log_probs = frames(spec)
    plain = BeamDecoder(DecoderConfig(method="beam", lm_weight=0.0, insertion_bonus=0.0), TOK)
    fused = BeamDecoder(DecoderConfig(method="beam", lm_weight=1.0, insertion_bonus=1.0), TOK,
                        lm.CharLM.load(tiny_lm_path))
    assert plain.end(decode(plain, log_probs)).text == "the numbor"
    best = fused.end(decode(fused, log_probs))
    assert best.text == "the number"
    # Word times still come from the spikes of the chosen path.
    words = ctc.words_from_tokens(best.tokens, TOK.vocab, TOK.space, 0.04)
    assert [(w.word, w.start, w.end) for w in words] == [("the", 0.0, 0.2), ("number", 0.32, 0.76)]


def test_space_bonus_is_paid_per_space_and_insertion_bonus_per_letter() -> None:
    # "ab" or "a b": the frame between the letters is more likely blank (0.6) than a space (0.4).
    log_probs = frames(["a", {" ": 0.4, "_": 0.6}, "b", "_"])
    cfg = DecoderConfig(method="beam", lm_weight=0.0, word_weight=0.0, insertion_bonus=0.0, space_bonus=0.0)
    for space_bonus, insertion_bonus, said in ((0.0, 0.0, "ab"), (1.0, 0.0, "a b"), (0.0, 5.0, "ab")):
        dec = BeamDecoder(replace(cfg, space_bonus=space_bonus, insertion_bonus=insertion_bonus), TOK)
        assert dec.end(decode(dec, log_probs)).text == said


def test_repeat_collapses_across_a_segment_restart(tiny_lm_path: Path) -> None:
    dec = BeamDecoder(DecoderConfig(method="beam", beam_size=4), TOK, lm.CharLM.load(tiny_lm_path))
    beams = decode(dec, frames(["_", "a", "a"]))
    assert beams[0].text == "a"
    beams = dec.restart(dec.end(beams))  # the segment ends while "a" still sounds
    assert len(beams) == 1 and beams[0].text == "" and beams[0].lm_state == dec.initial()[0].lm_state
    beams = decode(dec, frames(["a"]), beams)
    assert beams[0].text == "" and beams[0].tokens == ()
    beams = decode(dec, frames(["_", "a"]), beams)
    assert beams[0].text == "a"


def test_an_empty_result_pays_the_lm_cost_of_an_empty_sentence(tiny_lm_path: Path) -> None:
    # A bonus at which the faint word below is still behind the empty prefix before the end.
    dec = BeamDecoder(DecoderConfig(method="beam", beam_size=8, insertion_bonus=1.5), TOK, lm.CharLM.load(tiny_lm_path))
    # A faint word: each character at 0.5 against blank. Before the sentence end, nothing leads.
    beams = decode(dec, frames(["_"] + [f for c in "number" for f in ({c: 0.5, "_": 0.5}, "_")] + ["_"]))
    assert [b.text for b in beams[:2]] == ["", "number"]
    # At the end, the empty prefix pays for ending a sentence that never started: the word wins.
    assert dec.end(beams).text == "number"
    assert dec.end(decode(dec, frames(["_"] * 10))).text == ""  # silence stays empty


def test_oov_penalty_keeps_words_of_the_lm_text(tiny_lm_path: Path) -> None:
    # "the numbor" where the acoustics prefer "o" to "e", and a little LM weight does not flip it.
    log_probs = frames([*"t_h_e_ _n_u_m_b_", {"o": 0.6, "e": 0.3, "_": 0.1}, "_", "r", "_", "_"])
    model = lm.CharLM.load(tiny_lm_path)
    cfg = DecoderConfig(method="beam", lm_weight=0.1, insertion_bonus=0.0, oov_penalty=0.0)
    plain = BeamDecoder(cfg, TOK, model)
    assert plain.end(decode(plain, log_probs)).text == "the numbor"
    strict = BeamDecoder(replace(cfg, oov_penalty=3.0), TOK, model)
    assert strict.end(decode(strict, log_probs)).text == "the number"
    words_only = BeamDecoder(replace(cfg, lm_weight=0.0, oov_penalty=3.0), TOK, model)  # the word list alone
    assert words_only.lm is None and words_only.end(decode(words_only, log_probs)).text == "the number"
    # A word start that is not a word ("numb") pays when the sentence ends it, like any other word.
    short = frames([*"t_h_e_ _n_u_m_b_", "_"])
    assert plain.end(decode(plain, short)).text == "the numb"
    numb = [next(b for b in decode(dec, short) if b.text == "the numb") for dec in (plain, strict)]
    assert numb[1].score == pytest.approx(numb[0].score)  # "numb" starts words of the list: nothing paid yet
    assert end_score(strict, short, "the numb") == pytest.approx(end_score(plain, short, "the numb") - 3.0)


def test_oov_penalty_by_default_wherever_the_lm_has_a_word_list(tiny_lm_path: Path) -> None:
    log_probs = frames([*"t_h_e_ _n_u_m_b_", {"o": 0.6, "e": 0.3, "_": 0.1}, "_", "r", "_", "_"])
    model = lm.CharLM.load(tiny_lm_path)
    cfg = DecoderConfig(method="beam", lm_weight=0.1, insertion_bonus=0.0)
    assert cfg.oov_penalty is None
    auto = BeamDecoder(cfg, TOK, model)
    assert auto.oov_penalty == DEFAULT_OOV_PENALTY == 2.0
    assert auto.end(decode(auto, log_probs)).text == "the number"
    # No word list in use, so no penalty: an LM file without one, no LM, or the LM turned off.
    without_words = lm.CharLM(model.order, model.vocab, model.tables)
    for decoder in (BeamDecoder(cfg, TOK, without_words), BeamDecoder(cfg, TOK, None),
                    BeamDecoder(replace(cfg, lm_weight=0.0), TOK, model)):
        assert decoder.oov_penalty == 0.0 and not decoder._listed
    plain = BeamDecoder(cfg, TOK, without_words)
    assert plain.end(decode(plain, log_probs)).text == "the numbor"


def test_oov_penalty_needs_a_word_list(tiny_lm_path: Path) -> None:
    model = lm.CharLM.load(tiny_lm_path)
    with pytest.raises(ModelError, match="oov_penalty 2.0 needs an LM file with a word list .*got no LM"):
        BeamDecoder(DecoderConfig(oov_penalty=2.0), TOK, None)
    with pytest.raises(ModelError, match="got an LM without one"):
        BeamDecoder(DecoderConfig(oov_penalty=2.0), TOK, lm.CharLM(model.order, model.vocab, model.tables))


WORD_TEXT = ["please hold the line", "please hold", "hold the line please", "fold the paper twice",
             "fold it", "the line is busy"] * 3


def test_word_lm_flips_a_word_its_context_predicts() -> None:
    # "please ?old" where the acoustics slightly prefer "f": "fold" is a word, but never after "please".
    log_probs = frames([*"p_l_e_a_s_e_ _", {"f": 0.5, "h": 0.42, "_": 0.08}, "_", *"o_l_d_", "_"])
    words = lm_build.build_words(WORD_TEXT, order=3, prune=0.0)
    cfg = DecoderConfig(method="beam", lm_weight=0.0, insertion_bonus=0.0, space_bonus=0.0, word_weight=0.0)
    plain = BeamDecoder(cfg, TOK, None, words)
    assert plain.words is None and plain.end(decode(plain, log_probs)).text == "please fold"
    fused = BeamDecoder(replace(cfg, word_weight=0.5), TOK, None, words)
    assert fused.end(decode(fused, log_probs)).text == "please hold"
    # Paid where a word closes: on its space, or at the end with the sentence end.
    closing = frames([*"p_l_e_a_s_e_ _h_o_l_d_ _"])
    closed = decode(fused, closing)[0]
    assert closed.text == "please hold "
    assert end_score(fused, log_probs, "please hold") == pytest.approx(
        0.5 * (words.log_prob(["please"], "hold") + words.log_prob(["please", "hold"], None)))
    assert end_score(fused, closing, "please hold ") == pytest.approx(0.5 * words.log_prob(["please", "hold"], None))
    assert closed.lm == pytest.approx(0.5 * (words.log_prob([], "please") + words.log_prob(["please"], "hold")))


def test_word_lm_with_the_character_lm(tiny_lm_path: Path, tmp_path: Path, tiny_model_path: Path,
                                       speech_wav: Path) -> None:
    """Both LMs fuse (each term on its own weight), and a Recognizer loads the word LM its config names."""
    path = tmp_path / "words.npz"
    lm_build.build_words(WORD_TEXT, order=3, prune=0.0).save(path)
    cfg = DecoderConfig(method="beam", beam_size=4, lm=str(tiny_lm_path), word_lm=str(path))
    rec = Recognizer.load(tiny_model_path, decoder=cfg)
    assert rec.beam is not None and rec.beam.words is not None and rec.beam.lm is not None
    assert rec.beam.words.words == lm.WordLM.load(path).words
    off = Recognizer.load(tiny_model_path, decoder=replace(cfg, word_weight=0.0, word_lm=str(tmp_path / "nope.npz")))
    assert off.beam is not None and off.beam.words is None  # not loaded at weight 0
    with pytest.raises(ModelError, match=r"nope\.npz does not exist; expected a streamasr word LM"):
        Recognizer.load(tiny_model_path, decoder=replace(cfg, word_lm=str(tmp_path / "nope.npz")))
    audio = load_audio(speech_wav)
    whole, chunked = run(rec, audio, len(audio)), run(rec, audio, 16 * 37)
    assert whole and [(r.text, r.start, r.end) for r in chunked] == [(r.text, r.start, r.end) for r in whole]


def run(rec: Recognizer, audio: np.ndarray, chunk: int, hotwords: Hotwords | None = None) -> list[Result]:
    state, results = rec.initial_state(16000, SHORT, hotwords=hotwords), []
    for start in range(0, len(audio), chunk):
        state, out = step(rec, state, audio[start:start + chunk])
        results += out
    state, out = finish(rec, state)
    return [r for r in results + out if r.is_final]


@pytest.mark.parametrize("chunk_ms", [10, 37, 1000])
def test_streaming_equals_whole_signal(beam_recognizer: Recognizer, speech_wav: Path, chunk_ms: int) -> None:
    audio = load_audio(speech_wav)
    whole = run(beam_recognizer, audio, len(audio))
    assert len(whole) >= 2 and all(r.text for r in whole), "the test needs several segments with text"
    chunked = run(beam_recognizer, audio, 16 * chunk_ms)
    assert [(r.segment, r.text, r.start, r.end) for r in chunked] == [
        (r.segment, r.text, r.start, r.end) for r in whole]
    for a, b in zip(chunked, whole):
        assert [(w.word, w.start, w.end) for w in a.words] == [(w.word, w.start, w.end) for w in b.words]
        assert [w.conf for w in a.words] == pytest.approx([w.conf for w in b.words], abs=2e-3)


def test_partials_and_flush(beam_recognizer: Recognizer, speech_wav: Path) -> None:
    rec, audio = beam_recognizer, load_audio(speech_wav)
    state = rec.initial_state()
    state, results = step(rec, state, audio[:24000])
    partials = [r for r in results if not r.is_final]
    assert partials and partials[-1].text == " ".join(
        w.word for w in ctc.words_from_tokens(state.beams[0].tokens, TOK.vocab, TOK.space, rec.frame_seconds))
    assert state.tokens == state.beams[0].tokens and 1 <= len(state.beams) <= 4
    state, results = flush_segment(rec, state)
    assert len(results) == 1 and results[0].is_final and results[0].segment == 0 and results[0].text
    assert state.segment == 1 and state.tokens == () and len(state.beams) == 1 and state.beams[0].text == ""
    state, results = finish(rec, state)
    assert all(r.is_final and r.segment >= 1 for r in results) and state.finished


@pytest.mark.parametrize("field, value, message", [
    ("method", "viterbi", "DecoderConfig.method must be 'greedy' or 'beam', got 'viterbi'"),
    ("beam_size", 0, r"DecoderConfig.beam_size must be an integer in \[1, 256\], got 0"),
    ("beam_size", 2.5, r"DecoderConfig.beam_size must be an integer in \[1, 256\], got 2.5"),
    ("lm_weight", -1.0, r"DecoderConfig.lm_weight must be a number in \[0.0, 10.0\], got -1.0"),
    ("insertion_bonus", float("nan"), r"DecoderConfig.insertion_bonus must be a number in \[-20.0, 20.0\], got nan"),
    ("space_bonus", 21, r"DecoderConfig.space_bonus must be a number in \[-20.0, 20.0\], got 21"),
    ("min_log_prob", 1.0, r"DecoderConfig.min_log_prob must be a number in \[-100.0, 0.0\], got 1.0"),
    ("lm", "", "DecoderConfig.lm must be a path to an LM file or None"),
    ("word_lm", "", "DecoderConfig.word_lm must be a path to a word LM file or None"),
    ("word_weight", 11, r"DecoderConfig.word_weight must be a number in \[0.0, 10.0\], got 11"),
    ("prime_seconds", -0.2, r"DecoderConfig.prime_seconds must be a number in \[0.0, 5.0\], got -0.2"),
    ("tail_seconds", 6, r"DecoderConfig.tail_seconds must be a number in \[0.0, 5.0\], got 6"),
    ("oov_penalty", -1, r"DecoderConfig.oov_penalty must be a number in \[0.0, 100.0\], got -1"),
])
def test_config_error_text(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecoderConfig(**{field: value})  # type: ignore[arg-type]


def test_lm_must_match_the_alphabet(tiny_lm_path: Path) -> None:
    with pytest.raises(ModelError, match="does not match the model's"):
        BeamDecoder(DecoderConfig(), Tokenizer(DEFAULT_VOCAB[:-1]), lm.CharLM.load(tiny_lm_path))


def test_cli_decoder_options(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, tiny_lm_path: Path,
                             speech_wav: Path, tmp_path: Path) -> None:
    common = ["transcribe", "--model", str(tiny_model_path), "--method", "beam", "--lm", str(tiny_lm_path)]
    assert main([*common, "--beam-size", "3", "--lm-weight", "0.8", str(speech_wav)]) == 0
    assert capsys.readouterr().out.strip()
    assert main([*common, "--beam-size", "0", str(speech_wav)]) == 2
    assert "DecoderConfig.beam_size must be an integer in [1, 256], got 0" in capsys.readouterr().err
    assert main([*common[:-1], str(tmp_path / "nope.npz"), str(speech_wav)]) == 2
    assert "nope.npz does not exist; expected a streamasr LM (.npz)" in capsys.readouterr().err


def test_a_stream_decodes_the_same_alone_and_among_fifty(tiny_model_path: Path, tiny_lm_path: Path,
                                                          speech_wav: Path) -> None:
    """The batched search gives each stream exactly what it gets alone: text, word times and
    confidences, whatever its neighbours hear and however their chunks are cut."""
    cfg = DecoderConfig(method="beam", beam_size=16, lm=str(tiny_lm_path), insertion_bonus=2.0, word_weight=0.2)
    rec = Recognizer.load(tiny_model_path, decoder=cfg)
    audio = load_audio(speech_wav)
    mine = Hotwords.compile([("the number", 1.5)], TOK)
    alone = run(rec, audio, 16 * 100, mine)
    rng = np.random.default_rng(5)
    others = [np.roll(audio, int(rng.integers(len(audio)))) * float(rng.uniform(0.3, 1.5)) for _ in range(50)]
    signals = [audio] + others
    chunks = [1600] + [int(rng.integers(300, 4000)) for _ in others]  # ragged: streams get different frame counts
    theirs = Hotwords.compile(["ten", ("an apple", 3.0)], TOK)  # a third of the others boost words of their own
    states = [rec.initial_state(16000, SHORT, hotwords=mine if i == 0 else theirs if i % 3 == 0 else None)
              for i in range(len(signals))]
    finals: list[list[Result]] = [[] for _ in signals]
    pos = [0] * len(signals)
    while any(p < len(x) for p, x in zip(pos, signals)):
        going = [i for i, x in enumerate(signals) if pos[i] < len(x)]
        done = step_many(rec, [states[i] for i in going], [signals[i][pos[i]:pos[i] + chunks[i]] for i in going])
        for i, (state, results) in zip(going, done):
            states[i] = state
            finals[i] += [r for r in results if r.is_final]
            pos[i] += chunks[i]
    state, results = finish(rec, states[0])
    together = finals[0] + [r for r in results if r.is_final]
    assert len(alone) >= 2 and [r.to_dict() for r in together] == [r.to_dict() for r in alone]


def test_n_best_texts(beam_recognizer: Recognizer, tiny_model_path: Path, speech_wav: Path) -> None:
    audio = load_audio(speech_wav)
    state = beam_recognizer.initial_state(16000, SHORT, nbest=4)
    state, results = step(beam_recognizer, state, audio)
    state, last = finish(beam_recognizer, state)
    finals = [r for r in results + last if r.is_final]
    assert finals and all(r.alternatives[0].text == r.text and len(r.alternatives) <= 4 for r in finals)
    assert any(len(r.alternatives) > 1 for r in finals)
    greedy = Recognizer.load(tiny_model_path, decoder=DecoderConfig(method="greedy"))
    state = greedy.initial_state(16000, SHORT, nbest=2)  # the greedy decoder has only its own text
    state, results = step(greedy, state, audio)
    assert all([(a.text, a.score) for a in r.alternatives] == [(r.text, 0.0)] for r in results if r.is_final)
    with pytest.raises(ValueError, match=r"nbest must be an integer in \[1, 10\], got 0"):
        beam_recognizer.initial_state(nbest=0)


def test_hotwords_boost_whole_phrases_only(tmp_path: Path) -> None:
    # "please ?old" where the acoustics prefer "f" to "h" a little.
    log_probs = frames([*"p_l_e_a_s_e_ _", {"f": 0.5, "h": 0.42, "_": 0.08}, "_", *"o_l_d_", "_"])
    cfg = DecoderConfig(method="beam", lm_weight=0.0, insertion_bonus=0.0, space_bonus=0.0, word_weight=0.0)
    dec = BeamDecoder(cfg, TOK)
    assert dec.end(decode(dec, log_probs)).text == "please fold"
    hot = Hotwords.compile([("hold", 1.0)], TOK)
    assert dec.end(decode(dec, log_probs, hotwords=hot), hot).text == "please hold"
    assert dec.end(decode(dec, log_probs, hotwords=hot), hot).text == "please hold"
    # A word that only starts like a hotword keeps nothing of the boost: "holding" is not "hold".
    longer = frames([*"p_l_e_a_s_e_ _", {"f": 0.5, "h": 0.42, "_": 0.08}, "_", *"o_l_d_i_n_g_", "_"])
    assert dec.end(decode(dec, longer, hotwords=hot), hot).text == "please folding"
    # A phrase of several words is boosted as a whole, and only where a word starts.
    phrase = Hotwords.compile(["please hold"], TOK)
    assert dec.end(decode(dec, log_probs, hotwords=phrase), phrase).text == "please hold"
    # Only from the start of a word: "fold" gains nothing from "old".
    inside = Hotwords.compile([("old", 5.0)], TOK)
    fold = [next(b for b in decode(dec, log_probs, hotwords=h) if b.text == "please fold") for h in (None, inside)]
    assert fold[0].score == fold[1].score
    path = tmp_path / "hot.txt"
    path.write_text("# names\nAcme Corp 3\n\nhold\n")
    assert read_hotwords(path) == [("Acme Corp", 3.0), ("hold", 2.0)]
    assert Hotwords.compile(read_hotwords(path), TOK).phrases == (("acme corp", 3.0), ("hold", 2.0))
    with pytest.raises(ValueError, match="spells nothing the model can say"):
        Hotwords.compile(["!!"], TOK)
    with pytest.raises(ValueError, match=r"boost must be a number of nats in \(0, 10.0\], got 0"):
        Hotwords.compile([("hold", 0)], TOK)


def test_a_phrase_list_keeps_the_text_to_its_phrases(beam_recognizer: Recognizer, tiny_model_path: Path,
                                                     speech_wav: Path, tmp_path: Path) -> None:
    log_probs = frames([*"p_l_e_a_s_e_ _", {"f": 0.5, "h": 0.42, "_": 0.08}, "_", *"o_l_d_", "_"])
    cfg = DecoderConfig(method="beam", lm_weight=0.0, insertion_bonus=0.0, space_bonus=0.0, word_weight=0.0)
    dec = BeamDecoder(cfg, TOK)
    menu = Grammar.compile(["please hold", "yes", "no"], TOK)
    assert dec.end(decode(dec, log_probs, grammar=menu), grammar=menu).text == "please hold"
    # Sequences of phrases are allowed; a text that stops inside a phrase is not.
    seq = frames([*"y_e_s_ _n_o_", "_"])
    assert dec.end(decode(dec, seq, grammar=menu), grammar=menu).text == "yes no"
    cut = frames([*"p_l_e_a_s_e_", "_"])
    assert dec.end(decode(dec, cut, grammar=menu), grammar=menu).text == ""
    assert dec.end(decode(dec, frames(["_"] * 5), grammar=menu), grammar=menu).text == ""  # silence stays empty
    # Through the engine: every final is made of the listed phrases.
    audio = load_audio(speech_wav)
    phrases = ["to", "go", "the number"]
    state = beam_recognizer.initial_state(16000, SHORT, grammar=phrases)
    state, results = step(beam_recognizer, state, audio)
    results += finish(beam_recognizer, state)[1]
    said = [r.text for r in results if r.is_final and r.text]
    assert said and all(set(t.replace("the number", "").split()) <= {"to", "go"} for t in said)
    greedy = Recognizer.load(tiny_model_path, decoder=DecoderConfig(method="greedy"))
    with pytest.raises(ValueError, match="needs the beam search"):
        greedy.initial_state(grammar=phrases)
    with pytest.raises(ValueError, match="a grammar needs 1 to 1000 phrases besides <unk>, got 0"):
        Grammar.compile(["<unk>"], TOK)
    # With <unk>, another word may stand between phrases, at a price per word: a faint one stays out.
    open_menu = Grammar.compile(["please hold", "yes", "no", "<unk>"], TOK)
    other = frames([*"m_a_y_b_e_", "_"])
    assert dec.end(decode(dec, other, grammar=menu), grammar=menu).text == ""
    assert dec.end(decode(dec, other, grammar=open_menu), grammar=open_menu).text == "maybe"
    assert dec.end(decode(dec, seq, grammar=open_menu), grammar=open_menu).text == "yes no"
    beams = decode(dec, frames([*"y_e_p_", "_"]), grammar=open_menu)
    plain = decode(dec, frames([*"y_e_p_", "_"]))
    yep = [next(b for b in x if b.text == "yep") for x in (beams, plain)]
    assert yep[0].lm == pytest.approx(yep[1].lm - UNKNOWN_PENALTY)  # "ye" could be "yes": charged once it is not
    path = tmp_path / "menu.txt"
    path.write_text("# a menu\nyes\n\nno thanks\n")
    assert read_phrases(path) == ["yes", "no thanks"]


def test_a_hotword_is_no_out_of_vocabulary_word(tiny_lm_path: Path) -> None:
    """A listed phrase's words do not pay the OOV penalty: once the phrase is whole, what they paid comes back."""
    model = lm.CharLM.load(tiny_lm_path)
    cfg = DecoderConfig(method="beam", lm_weight=0.1, insertion_bonus=0.0, oov_penalty=3.0, word_weight=0.0)
    dec = BeamDecoder(cfg, TOK, model)
    hot = Hotwords.compile([("numbor", 0.5)], TOK)
    closed = frames([*"t_h_e_ _n_u_m_b_o_r_ _", "_"])

    def lm_term(hotwords: Hotwords | None, log_probs: np.ndarray, text: str) -> float:
        return next(b.lm for b in decode(dec, log_probs, hotwords=hotwords) if b.text == text)

    assert lm_term(hot, closed, "the numbor ") == pytest.approx(lm_term(None, closed, "the numbor ") + 6 * 0.5 + 3.0)
    # Open at the end: the refund comes with the sentence end; a word that only starts like it gets none.
    open_ = frames([*"t_h_e_ _n_u_m_b_o_r_", "_"])
    beams = decode(dec, open_, hotwords=hot)
    plain = decode(dec, open_)
    i, j = ([b.text for b in x].index("the numbor") for x in (beams, plain))
    assert beams[i].score + dec.end_scores(beams, hot)[i] == pytest.approx(
        plain[j].score + dec.end_scores(plain)[j] + 6 * 0.5 + 3.0)
