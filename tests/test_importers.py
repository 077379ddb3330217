"""Importers: Debian sentence sources, LibriSpeech, Common Voice and the Asterisk dev set."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamasr.corpus.importers import (
    asterisk_devset,
    asterisk_transcripts,
    clean_sentence,
    common_voice_rows,
    fortune_sentences,
    help_sentences,
    librispeech_rows,
    lm_extra_text,
    load_or_make_text,
    split_sentences,
    split_text,
    ui_strings,
    wordnet_glosses,
    wordnet_sentences,
)
from streamasr.manifest import write_manifest
from streamasr.engine.text import normalize
from conftest import load_script

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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Press 1 to hear your messages.", "Press 1 to hear your messages."),
        ("Set the volume to 50% or more.", "Set the volume to 50% or more."),
        ("Use Ctrl+C to copy the cell.", "Use Ctrl+C to copy the cell."),
        ("It starts on the 3rd of May.", "It starts on the 3rd of May."),  # an ordinal
        ("Version 3.2 fixed it for most.", None),  # decimals and versions
        ("See section 6.1.2 for the details.", None),
        ("The meeting starts at 10:30 sharp.", None),  # times
        ("Call 5550199 for more help today.", None),  # long digit strings
        ("SUMX2MY2 returns the sum of squares.", None),  # letters and digits in one word
        ("Email me at <home> right now.", None),  # other symbols
    ],
)
def test_clean_sentence_with_numbers_for_lm_text(raw: str, expected: str | None) -> None:
    assert clean_sentence(raw, numbers=True) == expected


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


WORDNET_LINES = (
    "  1 This software is provided \"as is\" and without warranty of any kind\n"
    '00002724 29 v 01 choke 0 002 | breathe with difficulty; "She choked with emotion '
    'when she spoke"; (of an engine) fail to start\n'
    "00002725 29 v 01 open 0 002 | cause to open or to become open; make available\n")
HELP_HTML = ("<html><head><title>Help</title></head><body><header><p>Site menu goes here</p></header>"
             "<p>Press the <b>Enter</b> key to continue. Then wait.</p>"
             "<pre>rm -rf all of these files</pre><ul><li>Select a mailbox from the list.</li></ul>"
             "<p>Version 3.2 fixed it for most of us.</p><p>Press 1 to hear your messages again.</p>"
             "</body></html>")
HELP_PAGE = ('<page xmlns="http://projectmallard.org/1.0/"><title>Sound</title>'
             "<p>Open the <gui>Sound</gui> panel to change the volume.</p>"
             "<screen>pactl set sink volume now</screen><p>Mute the microphone if you need to.</p></page>")
HELP_DOCBOOK = ("<chapter><title>Accounts</title><para>Choose <menuchoice><guimenu>File</guimenu><guimenuitem>"
                "New</guimenuitem></menuchoice> to open a new book.</para><para>Use the <accel>F</accel>ile "
                "menu to save the book.</para><programlisting>gnucash --help me right now</programlisting></chapter>")
HELP_KDE = "<chapter><para>Start &kmail; from the &kde; menu.</para></chapter>"  # KDE's entities


def help_fixture(root: Path) -> Path:
    (root / "help" / "gnome").mkdir(parents=True)
    (root / "help" / "index.html").write_text(HELP_HTML)
    (root / "help" / "gnome" / "sound.page").write_text(HELP_PAGE)
    (root / "help" / "guide.xml").write_text(HELP_DOCBOOK)
    (root / "help" / "index.docbook").write_text(HELP_KDE)
    (root / "help" / "notes.txt").write_text("Plain text files are not help pages at all.\n")
    (root / "wordnet").mkdir()
    (root / "wordnet" / "data.verb").write_text(WORDNET_LINES)
    return root


def test_wordnet_glosses_are_the_definitions_without_examples(tmp_path: Path) -> None:
    (tmp_path / "data.verb").write_text(WORDNET_LINES)
    assert list(wordnet_glosses([tmp_path])) == ["breathe with difficulty", "of an engine fail to start",
                                                 "cause to open or to become open", "make available"]


def test_help_sentences_from_html_mallard_and_docbook(tmp_path: Path) -> None:
    help_fixture(tmp_path)
    # Page furniture (<header>), code (<pre>, <screen>, <programlisting>) and numbers the LM
    # cannot read ("3.2") are left out; inline markup stays part of its sentence, menu items
    # stay apart, an access key stays inside its word and an unknown entity is its name.
    assert sorted(help_sentences([tmp_path / "help", tmp_path / "missing"])) == [
        "Choose File New to open a new book.", "Mute the microphone if you need to.",
        "Open the Sound panel to change the volume.", "Press 1 to hear your messages again.",
        "Press the Enter key to continue.", "Select a mailbox from the list.",
        "Start kmail from the kde menu.", "Use the File menu to save the book."]


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU message catalog as msgfmt writes it: header, then sorted (length, offset) tables."""
    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    ids = [k.encode() for k, _ in entries]
    strs = [v.encode() for _, v in entries]
    start = 28 + 16 * len(entries)
    blob, tables = b"", []
    for group in (ids, strs):
        table = []
        for data in group:
            table.append((len(data), start + len(blob)))
            blob += data + b"\0"
        tables.append(table)
    header = struct.pack("<7I", 0x950412DE, 0, len(entries), 28, 28 + 8 * len(entries), 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(struct.pack("<2I", *e) for table in tables for e in table) + blob)


UI_MESSAGES = {
    "_Save As…": "Speichern _unter …",  # access key and ellipsis go
    "&Open File": "Datei ö&ffnen",
    "Call ended": "Anruf beendet",
    "Do you want to save your changes?": "Änderungen speichern?",
    "menu\x04Quit": "Beenden",  # a message with a context
    "One new message\x00%d new messages": "Eine neue Nachricht\x00%d neue Nachrichten",  # plural forms
    "%s is not a valid file": "%s ist keine gültige Datei",  # format fields, markup, identifiers and
    "Click <b>here</b>": "Klicken Sie <b>hier</b>",  # paths are not what people say
    "file_name": "Dateiname",
    "Open /etc/hosts": "/etc/hosts öffnen",
    "NAME OF TRANSLATORS": "Jemand",  # credits, not a message
    "Printing stopped.\nPress Resume to go on": "Druck angehalten.\nFortsetzen drücken",  # one line each
    "Drag && Drop": "Ziehen && Ablegen",
    "Version 3.2": "Version 3.2",  # numbers the LM cannot read
}


def test_ui_strings_from_message_catalogs(tmp_path: Path) -> None:
    write_mo(tmp_path / "ui" / "app.mo", UI_MESSAGES)
    (tmp_path / "ui" / "broken.mo").write_bytes(b"not a catalog at all")  # skipped with a warning
    (tmp_path / "ui" / "notes.txt").write_text("Not a catalog either.\n")
    assert sorted(ui_strings([tmp_path / "ui", tmp_path / "missing"])) == [
        "call ended", "do you want to save your changes", "drag and drop", "one new message", "open file",
        "press resume to go on", "printing stopped", "quit", "save as"]


def test_lm_extra_text_keeps_held_out_sentences_out(tmp_path: Path) -> None:
    help_fixture(tmp_path)
    (tmp_path / "help" / "copy.html").write_text("<p>Press the Enter key to continue.</p>")  # a duplicate
    held_out = ["Select a mailbox from the list", "the Sound panel to change", "make available"]
    write_mo(tmp_path / "ui" / "app.mo", {"Call ended": "Anruf beendet", "Make available": "Bereitstellen",
                                          "Mute the microphone": "Mikrofon stumm schalten"})  # one held out
    lines = lm_extra_text(held_out, [tmp_path / "wordnet"], [tmp_path / "help"], [tmp_path / "ui"])
    assert lines == ["breathe with difficulty", "of an engine fail to start", "cause to open or to become open",
                     "press the enter key to continue", "mute the microphone if you need to",
                     "choose file new to open a new book", "use the file menu to save the book",
                     "start kmail from the kde menu", "press one to hear your messages again",
                     "call ended", "mute the microphone"]


def test_make_lm_text_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    help_fixture(tmp_path)
    (tmp_path / "valid.txt").write_text("Breathe with difficulty.\n")
    (tmp_path / "dev.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "make available", "duration": 1.0}) + "\n")
    out = tmp_path / "text" / "lm_extra.txt"
    script = load_script("make_lm_text")
    write_mo(tmp_path / "ui" / "app.mo", {"Call ended": "Anruf beendet"})
    dirs = ["--wordnet-dir", str(tmp_path / "wordnet"), "--help-dir", str(tmp_path / "help"),
            "--ui-dir", str(tmp_path / "ui")]
    assert script.main(["--out", str(out), "--exclude", str(tmp_path / "valid.txt"),
                        "--exclude", str(tmp_path / "dev.jsonl"), *dirs]) == 0
    assert out.read_text().splitlines() == [
        "of an engine fail to start", "cause to open or to become open",
        "open the sound panel to change the volume", "mute the microphone if you need to",
        "choose file new to open a new book", "use the file menu to save the book",
        "start kmail from the kde menu", "press the enter key to continue",
        "select a mailbox from the list", "press one to hear your messages again", "call ended"]
    assert "11 lines, 71 words, 2 held-out sentences kept out" in capsys.readouterr().err


@pytest.mark.parametrize(("exclude", "content", "message"), [
    ("bad.jsonl", '{"audio": "a.wav"}\n', "bad.jsonl:1: bad manifest line ('text'); expected JSON with audio"),
    ("bad.jsonl", "not json\n", "bad.jsonl:1: bad manifest line (Expecting value"),
    ("missing.txt", None, "missing.txt: [Errno 2] No such file or directory"),
])
def test_make_lm_text_script_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], exclude: str,
                                    content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / exclude).write_text(content)
    with pytest.raises(SystemExit):
        load_script("make_lm_text").main(["--out", str(tmp_path / "x.txt"), "--exclude", str(tmp_path / exclude)])
    assert message in capsys.readouterr().err


def test_make_lm_text_script_without_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_script("make_lm_text").main(["--out", str(tmp_path / "x.txt"), "--wordnet-dir", str(tmp_path),
                                          "--help-dir", str(tmp_path / "none"), "--ui-dir", str(tmp_path / "no")])
    dirs = f"{tmp_path}, {tmp_path / 'none'}, {tmp_path / 'no'}"
    assert f"no text found in {dirs}: expected WordNet data.* files" in capsys.readouterr().err
