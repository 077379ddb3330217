"""The character and word n-gram LMs: normalised distributions, exact backoff, ranking, file round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_LM_TEXT, load_script

from streamasr.training import lm_build
from streamasr.engine import lm
from streamasr.errors import ModelError
from streamasr.engine.text import DEFAULT_VOCAB, normalize

ID = {c: i for i, c in enumerate(DEFAULT_VOCAB)}
HISTORIES = ["", "the ", "the numb", "followed the", "don't", "zzqx", "xq the nu", "'''", "  "]


@pytest.fixture(scope="module")
def tiny() -> lm.CharLM:
    return lm_build.build(TINY_LM_TEXT, order=5, prune=0.0)


@pytest.fixture(scope="module")
def pruned() -> lm.CharLM:
    return lm_build.build(TINY_LM_TEXT * 3, order=6, prune=4.0)


def state_after(model: lm.CharLM, history: str) -> int:
    state = model.start
    for c in history:
        state = model.advance(state, ID[c])
    return state


def reference_log_prob(model: lm.CharLM, history: str, symbol: int) -> float:
    """The backoff query written out over the full context, without memos or state minimisation."""
    context = ([lm.BOUNDARY] + [ID[c] for c in history])[-(model.order - 1):]

    def query(ctx: list[int]) -> float:
        code = 1
        for s in ctx:
            code = (code << lm.BITS) | s
        t = model.tables[len(ctx)]
        rows = np.flatnonzero(t["codes"] == code)
        if not rows.size:
            return query(ctx[1:])
        lo, hi = t["offsets"][rows[0]], t["offsets"][rows[0] + 1]
        hit = np.flatnonzero(t["symbols"][lo:hi] == symbol)
        if hit.size:
            return float(t["logp"][lo + hit[0]])
        shorter = query(ctx[1:]) if ctx else -math.log(len(model.vocab))
        return float(t["logbow"][rows[0]]) + shorter

    return query(context)


@pytest.mark.parametrize("history", HISTORIES)
def test_distributions_normalise(tiny: lm.CharLM, pruned: lm.CharLM, history: str) -> None:
    for model in (tiny, pruned):
        probs = np.exp(np.array(model.log_probs(state_after(model, history)), np.float64))
        assert probs.shape == (len(DEFAULT_VOCAB),)
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("history", HISTORIES)
def test_minimised_states_give_the_full_backoff(pruned: lm.CharLM, history: str) -> None:
    got = pruned.log_probs(state_after(pruned, history))
    expected = [reference_log_prob(pruned, history, s) for s in range(len(DEFAULT_VOCAB))]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_seen_text_beats_scrambled_text(tiny: lm.CharLM) -> None:
    text = "the man followed the number"
    scrambled = "".join(np.random.default_rng(0).permutation(list(text)))
    assert tiny.score(text) > tiny.score(scrambled) + 20
    assert tiny.score("the number") > tiny.score("the nober")
    # The sentence end is part of the score: a finished word ends a sentence more likely.
    assert tiny.score("call the number") > tiny.score("call the numbe")


def test_save_load_round_trip(tiny: lm.CharLM, tmp_path: Path) -> None:
    path = tmp_path / "lm.npz"
    tiny.save(path)
    loaded = lm.CharLM.load(path)
    assert loaded.order == tiny.order and loaded.vocab == tiny.vocab == DEFAULT_VOCAB
    for history in HISTORIES:
        a, b = tiny.log_probs(state_after(tiny, history)), loaded.log_probs(state_after(loaded, history))
        np.testing.assert_allclose(a, b, atol=0.02)  # log-probs are stored as float16
        assert np.exp(np.array(b, np.float64)).sum() == pytest.approx(1.0, abs=5e-3)
    assert loaded.words == tiny.words


def test_word_list_holds_the_normalised_training_words(tiny: lm.CharLM) -> None:
    assert tiny.words is not None and {"number", "don't", "conference"} <= tiny.words
    assert not {"the number", "Don't", ""} & tiny.words
    assert {"n", "nu", "numbe", "number", "don'"} <= tiny.prefixes and "umber" not in tiny.prefixes
    model = lm.CharLM(tiny.order, tiny.vocab, tiny.tables)  # as loaded from a file without words
    with pytest.raises(ModelError, match="holds no word list; rebuild it with scripts/build_lm.py"):
        model.prefixes


def test_bundled_lm() -> None:
    path = lm.default_lm_path()
    assert path.is_file() and path.stat().st_size <= 20_000_000  # a size the repository and the wheel can carry
    model = lm.CharLM.load()
    assert model.vocab == DEFAULT_VOCAB and model.order >= 6
    assert model.words is not None and {"please", "number", "k", "nineteen"} <= model.words
    assert model.score("please call the number again") > model.score("plaese clal teh nmuber agian") + 10
    assert normalize("It's 5 o'clock") == "it's five o'clock"
    assert np.exp(np.array(model.log_probs(state_after(model, "it's five")), np.float64)).sum() == pytest.approx(
        1.0, abs=5e-3)


def test_build_errors() -> None:
    with pytest.raises(ValueError, match=r"LM order must be in \[2, 12\], got 1"):
        lm_build.build(TINY_LM_TEXT, order=1)
    with pytest.raises(ValueError, match="training text is empty after normalisation"):
        lm_build.build(["", "!!!"], order=3)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing\.npz does not exist; expected a streamasr LM \(\.npz\)"):
        lm.CharLM.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="bad.npz is not a readable streamasr language model"):
        lm.CharLM.load(bad)


def build_with_script(tmp_path: Path, name: str, *options: str) -> lm.CharLM:
    """An order-5 LM of the tiny text built by scripts/build_lm.py with ``options``."""
    text = tmp_path / "train.txt"
    text.write_text("".join(s + "\n" for s in TINY_LM_TEXT))
    out = tmp_path / f"{name}.npz"
    assert load_script("build_lm").main(["--text", str(text), "--out", str(out), "--order", "5", *options]) == 0
    return lm.CharLM.load(out)


@pytest.mark.parametrize(("option", "likelier"), [
    (("--short", "200"), ("number", "followed", "the river")),  # a lone word is a likely utterance
    (("--codes", "60"), ("k", "j o h n", "four one five two", "nine")),  # spelled letters, digits
    (("--numbers", "300"), ("the nineteenth", "march third", "ten thirty", "five dollars")),
])
def test_build_script_extra_phrases(tmp_path: Path, option: tuple[str, str], likelier: tuple[str, ...]) -> None:
    plain, extra = build_with_script(tmp_path, "plain"), build_with_script(tmp_path, "extra", *option)
    for phrase in likelier:
        assert extra.score(phrase) > plain.score(phrase) + 1.0
    # Whole sentences stay likely.
    assert extra.score(TINY_LM_TEXT[0]) > plain.score(TINY_LM_TEXT[0]) - 2.0


def test_build_script_word_list(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("zebra\nQuokka's\nwell-known\n")
    plain, listed = build_with_script(tmp_path, "plain"), build_with_script(tmp_path, "listed", "--words",
                                                                           str(tmp_path / "words.txt"))
    assert plain.words is not None and listed.words == plain.words | {"zebra", "quokka's", "well", "known"}
    assert listed.score("zebra") == plain.score("zebra")  # listed words are not n-gram text


def test_build_script_word_lm(tmp_path: Path) -> None:
    """--word-out writes a word LM of the same text, short phrases and codes included."""
    build_with_script(tmp_path, "chars", "--codes", "60", "--word-out", str(tmp_path / "words.npz"),
                      "--word-prune", "0")
    words = lm.WordLM.load(tmp_path / "words.npz")
    assert words.order == 3 and {"number", "the", "k"} <= set(words.words)
    assert words.score(TINY_LM_TEXT[0]) > words.score(" ".join(reversed(normalize(TINY_LM_TEXT[0]).split())))


@pytest.mark.parametrize(("args", "message"), [
    (["--words", "MISSING"], "--words: [Errno 2] No such file or directory"),
    (["--text", "MISSING"], "--text: [Errno 2] No such file or directory"),
    (["--short", "-1"], "--short must be >= 0, got -1"),
    (["--codes", "-2"], "--codes must be >= 0, got -2"),
    (["--numbers", "-3"], "--numbers must be >= 0, got -3"),
    (["--word-prune", "-1"], "--word-prune must be >= 0, got -1.0"),
    (["--word-order", "0"], "--word-order must be >= 1, got 0"),
    (["--short", "5", "--text", "DOTS"], "no short phrase found in 2 sentences"),
])
def test_build_script_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                             message: str) -> None:
    (tmp_path / "dots.txt").write_text("... !!\n")
    (tmp_path / "train.txt").write_text("?? !!\n")
    args = [str(tmp_path / "dots.txt") if a == "DOTS" else str(tmp_path / "missing.txt") if a == "MISSING" else a
            for a in args]
    with pytest.raises(SystemExit):
        load_script("build_lm").main(["--text", str(tmp_path / "train.txt"), "--out", str(tmp_path / "x.npz"), *args])
    assert message in capsys.readouterr().err


def test_build_script_word_order_fails_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An order the vocabulary cannot hold in 64-bit codes fails before the character LM is built or written."""
    (tmp_path / "train.txt").write_text("\n".join(TINY_LM_TEXT) + "\n")
    with pytest.raises(SystemExit):
        load_script("build_lm").main(["--text", str(tmp_path / "train.txt"), "--out", str(tmp_path / "x.npz"),
                                      "--word-out", str(tmp_path / "w.npz"), "--word-order", "20"])
    assert "--word-order 20: word LM order 20 with" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "w.npz").exists()


# ---------------------------------------------------------------------------------------------
# The word LM

WORD_HISTORIES = [(), ("the",), ("followed", "the"), ("zzqx",), ("the", "zzqx"), ("zzqx", "the")]


@pytest.fixture(scope="module")
def tiny_words() -> lm.WordLM:
    return lm_build.build_words(TINY_LM_TEXT, order=3, prune=0.0)


@pytest.fixture(scope="module")
def pruned_words() -> lm.WordLM:
    return lm_build.build_words(TINY_LM_TEXT * 3, order=3, prune=2.0)


@pytest.mark.parametrize("history", WORD_HISTORIES)
def test_word_distributions_normalise(tiny_words: lm.WordLM, pruned_words: lm.WordLM,
                                      history: tuple[str, ...]) -> None:
    for model in (tiny_words, pruned_words):
        total = sum(math.exp(model.log_prob(history, w)) for w in (*model.words, None))
        assert total == pytest.approx(1.0, abs=1e-4)
        # A word outside the vocabulary gets what an unseen one would: the uniform share, backed off.
        assert 0 < math.exp(model.log_prob(history, "zzqx")) < 0.05


def test_word_pruning_drops_entries_and_keeps_the_ranking(tiny_words: lm.WordLM, pruned_words: lm.WordLM) -> None:
    full = lm_build.build_words(TINY_LM_TEXT * 3, order=3, prune=0.0)
    assert sum(len(t["symbols"]) for t in pruned_words.tables) < sum(len(t["symbols"]) for t in full.tables)
    for model in (tiny_words, pruned_words):
        assert model.score(TINY_LM_TEXT[0]) > model.score(" ".join(reversed(normalize(TINY_LM_TEXT[0]).split())))


def test_word_context_matters() -> None:
    """A word seen after its context is likelier there than after a context that never preceded it."""
    model = lm_build.build_words(["Please hold the line.", "Please hold on.", "Hold the door.", "Call the line again.",
                            "The line is busy.", "Please call again."] * 2, order=3, prune=0.0)
    assert model.log_prob(["please"], "hold") > model.log_prob(["the"], "hold") + 1.0
    assert model.log_prob(["hold", "the"], "line") > model.log_prob(["call", "the"], "door") + 1.0
    assert model.log_prob(["please", "hold"], None) < model.log_prob(["hold", "on"], None)  # sentence ends
    # A history shorter than the context starts at the sentence start: "the" opens a sentence once.
    assert model.log_prob(["the"], "line") > model.log_prob(["zzqx", "the"], "line")


def test_word_lm_save_load_round_trip(pruned_words: lm.WordLM, tmp_path: Path) -> None:
    path = tmp_path / "words.npz"
    pruned_words.save(path)
    loaded = lm.WordLM.load(path)
    assert loaded.order == 3 and loaded.words == pruned_words.words
    for history in WORD_HISTORIES:
        for word in (*pruned_words.words[:20], None, "zzqx"):
            # float16 storage: within a thousandth of a nat per stored value, two values per query at most
            assert loaded.log_prob(history, word) == pytest.approx(pruned_words.log_prob(history, word), abs=2e-2)


def test_word_lm_errors(tmp_path: Path, tiny_lm_path: Path) -> None:
    with pytest.raises(ValueError, match="word LM training text is empty after normalisation"):
        lm_build.build_words(["", "!!!"])
    with pytest.raises(ValueError, match=r"word LM order 20 with \d+ words does not fit 64-bit codes"):
        lm_build.build_words(TINY_LM_TEXT, order=20)
    with pytest.raises(ValueError, match="word LM order must be an integer >= 1, got 0"):
        lm_build.build_words(TINY_LM_TEXT, order=0)
    with pytest.raises(ModelError, match=r"missing\.npz does not exist; expected a streamasr word LM"):
        lm.WordLM.load(tmp_path / "missing.npz")
    with pytest.raises(ModelError, match="is not a streamasr word LM .*a character LM goes to DecoderConfig.lm"):
        lm.WordLM.load(tiny_lm_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="bad.npz is not a readable streamasr word LM"):
        lm.WordLM.load(bad)


def test_bundled_word_lm() -> None:
    path = lm.default_word_lm_path()
    assert path.is_file() and path.stat().st_size <= 10_000_000
    model = lm.WordLM.load()
    assert model.order == 3 and {"please", "call", "nineteen", "k"} <= set(model.words)
    assert model.score("click the button to save the file") > model.score("click the but on to save the file") + 10
    assert model.score("the file is saved in your home folder") > model.score(
        "the file is saved in you're home fold her") + 10
