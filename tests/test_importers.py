"""Importers: Debian sentence sources, LibriSpeech, Common Voice and the Asterisk dev set."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamasr.importers import (
    asterisk_devset,
    asterisk_transcripts,
    clean_sentence,
    common_voice_rows,
    fortune_sentences,
    librispeech_rows,
    load_or_make_text,
    split_sentences,
    split_text,
    wordnet_sentences,
    write_manifest,
)
from streamasr.text import normalize

HAVE_FFMPEG = shutil.which("ffmpeg") is not None


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def ffmpeg_tone(path: Path, seconds: float, *fmt: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-ar", "16000", "-ac", "1",
                    *fmt, str(path)], check=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  the cat  sat on the mat ", "the cat sat on the mat."),
        ('He said "no" to me twice.', 'He said "no" to me twice.'),
        ('"He said so," she replied.', "He said so, she replied."),  # unbalanced once stripped
        ("Call me at 555 today please.", None),  # digits
        ("Too short.", None),
        ("x " * 21, None),  # too long
        ("Email me @ home right now.", None),  # symbol
    ],
)
def test_clean_sentence(raw: str, expected: str | None) -> None:
    assert clean_sentence(raw) == expected


def test_split_sentences() -> None:
    text = "It was late. The lights went out! Who turned them off? Ok. Nobody knows why at all."
    # "It was late." and "Ok." are shorter than four words.
    assert split_sentences(text) == ["The lights went out!", "Who turned them off?",
                                     "Nobody knows why at all."]


def test_wordnet_and_fortune_fixtures(tmp_path: Path) -> None:
    (tmp_path / "data.verb").write_text(
        "  1 This software is provided \"as is\" and without warranty of any kind\n"
        '00002724 29 v 01 choke 0 002 | breathe with difficulty; "She choked with emotion '
        'when she spoke"; "he choked on 2 bones"\n')
    assert list(wordnet_sentences([tmp_path])) == ["She choked with emotion when she spoke."]
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "misc").write_text("A gift of a flower will soon be made.\n%\nGo home now.\n"
                                   "\t\t-- Anonymous\n%\nPrepare to be assimilated by us.\n")
    (fortunes / "misc.dat").write_bytes(b"\0\1")
    assert list(fortune_sentences(fortunes)) == ["A gift of a flower will soon be made.",
                                                 "Prepare to be assimilated by us."]


def test_split_text_has_no_overlap(tmp_path: Path) -> None:
    sentences = [f"Sentence number {normalize(str(i))} is here." for i in range(50)]
    text = split_text(sentences, seed=3, n_valid=5, n_test=7)
    assert (len(text["test"]), len(text["valid"]), len(text["train"])) == (7, 5, 38)
    assert not set(text["train"]) & set(text["valid"])
    assert not set(text["train"]) & set(text["test"])
    assert not set(text["valid"]) & set(text["test"])
    assert split_text(sentences, seed=3, n_valid=5, n_test=7) == text
    with pytest.raises(ValueError, match="need more than 12 sentences, got 5"):
        split_text(sentences[:5], seed=3, n_valid=5, n_test=7)
    # Once written, the split is read back rather than extracted again.
    (tmp_path / "text").mkdir()
    for split, lines in text.items():
        (tmp_path / "text" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    assert load_or_make_text(tmp_path / "text", 9, 1, 1) == text


def test_librispeech_layout(tmp_path: Path) -> None:
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    sf.write(chapter / "84-121123-0000.flac", tone(0.5), 16000)
    sf.write(chapter / "84-121123-0001.flac", tone(0.25), 16000)
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n"
        "84-121123-0002 MISSING AUDIO\n")
    rows = list(librispeech_rows(tmp_path))
    assert rows == [
        {"audio": str((chapter / "84-121123-0000.flac").resolve()), "text": "go do you hear",
         "duration": 0.5, "voice": "84"},
        {"audio": str((chapter / "84-121123-0001.flac").resolve()),
         "text": "but in less than five minutes", "duration": 0.25, "voice": "84"},
    ]
    assert write_manifest(tmp_path / "m.jsonl", rows) == 2
    assert [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()] == rows


@pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg is not installed (needed to make mp3)")
def test_common_voice_tsv(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    ffmpeg_tone(tmp_path / "clips" / "common_voice_en_1.mp3", 1.0)
    (tmp_path / "validated.tsv").write_text(
        "client_id\tpath\tsentence\tup_votes\n"
        "abc123\tcommon_voice_en_1.mp3\tHello, \"world\" 2 times!\t2\n"
        "abc123\tmissing.mp3\tNo audio here.\t2\n")
    rows = list(common_voice_rows(tmp_path))
    assert len(rows) == 1
    assert rows[0]["text"] == "hello world two times" and rows[0]["voice"] == "abc123"
    assert rows[0]["duration"] == pytest.approx(1.0, abs=0.08)
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="expected columns 'path' and 'sentence'"):
        list(common_voice_rows(tmp_path, "bad.tsv"))


def test_asterisk_transcripts(tmp_path: Path) -> None:
    path = tmp_path / "sounds.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("; Core sounds\n\nbeep: [this is a simple beep tone]\ndigits/1: one\n"
                "demo: Dial 500, press * or # [pause] for a 28.8 modem.\n"
                "silence/2: (2 seconds of silence)\nconfbridge-join: <beep ascending>\n"
                "spy-iax2: IAX (note: does not say \"2\")\n"
                "vm-intro: Please leave your message. (simple tone sound plays)\n")
    assert asterisk_transcripts(path) == {
        "digits/1": "one",
        "demo": "dial five hundred press star or pound for a twenty eight point eight modem",
        "spy-iax2": "iax",
        "vm-intro": "please leave your message",
    }


@pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg is not installed (needed for G.722)")
def test_asterisk_devset(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    ffmpeg_tone(sounds / "digits" / "1.g722", 0.5, "-c:a", "g722", "-f", "g722")
    ffmpeg_tone(sounds / "beep.g722", 0.5, "-c:a", "g722", "-f", "g722")
    text = tmp_path / "t.txt"
    text.write_text("digits/1: One.\nbeep: [beep]\n")
    assert asterisk_devset(tmp_path / "dev", sounds, text) == 1
    row = json.loads((tmp_path / "dev" / "dev.jsonl").read_text())
    assert row["text"] == "one" and row["voice"] == "allison"
    assert sf.info(row["audio"]).samplerate == 16000
    assert row["duration"] == pytest.approx(0.5, abs=0.05)
