"""Turn data found on the machine into streamasr's formats.

- Sentences for synthesis from Debian packages (WordNet, fortunes, GCIDE, KJV bible).
- Extra language-model text: WordNet's definitions and installed user help (GNOME and its
  applications, LibreOffice, the Debian handbook): modern, instructional English that the
  synthesis sentences lack.
- Real speech into manifests: LibriSpeech layout, Common Voice TSV, and the Asterisk prompts
  (a real-speech development set).

Manifests are JSON lines ``{"audio": abs path, "text": normalised, "duration": s, "voice": id}``.
"""

from __future__ import annotations

import csv
import gettext
import gzip
import logging
import random
import re
import shutil
import struct
import subprocess
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import soundfile as sf

from streamasr.atomic import atomic_path
from streamasr.manifest import write_manifest
from streamasr.engine.text import ORDINAL_SUFFIX, normalize

logger = logging.getLogger(__name__)

WORDNET_DIRS = (Path("/usr/share/wordnet"), Path("/usr/share/wordnet/dict"))
FORTUNE_DIR = Path("/usr/share/games/fortunes")
GCIDE_DICT = Path("/usr/share/dictd/gcide.dict.dz")
HELP_DIRS = (Path("/usr/share/help/C"),  # gnome-user-docs and GNOME applications (Mallard, DocBook)
             Path("/usr/share/libreoffice/help/en-US"),  # libreoffice-help-en-us (HTML)
             Path("/usr/share/doc/debian-handbook/html/en-US"),  # debian-handbook (HTML)
             # GIMP, KDE and more GNOME applications' help, Debian's reference and FAQ, unpacked
             # by scripts/install_data_deps.sh without the applications themselves.
             Path("/usr/local/share/streamasr/help"))
# Message catalogs (*.mo) of desktop applications, gathered by scripts/install_data_deps.sh.
UI_DIRS = (Path("/usr/local/share/streamasr/ui"),)
MIN_WORDS, MAX_WORDS = 4, 20
SPLITS = ("train", "valid", "test")

# Letters and ordinary punctuation only: a digit or a symbol disqualifies a sentence.
_CLEAN = re.compile(r"^[A-Za-z][A-Za-z ,.;:'\"!?()\-]*$")
# LM text may also hold numbers and the symbols normalize() spells out ("press 1", "50 %"), but not
# what it cannot read: decimals, times, versions, section numbers ("6.1.2"), long digit strings
# and words of letters and digits ("SUMX2MY2") other than ordinals ("3rd").
_LM_CLEAN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ,.;:'\"!?()\-%#*+&@/]*$")
_LM_UNREADABLE = re.compile(rf"\d[.,:/]\d|[A-Za-z]\d|\d(?!{ORDINAL_SUFFIX})[A-Za-z]|\d{{5}}")


def _lm_readable(text: str) -> bool:
    """Whether LM text may hold ``text``: letters, numbers and spelled-out symbols that read one way."""
    return bool(_LM_CLEAN.match(text)) and not _LM_UNREADABLE.search(text)


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]?\s+(?=[\"'(]?[A-Z])")


# ---------------------------------------------------------------- sentences for synthesis


def clean_sentence(text: str, numbers: bool = False) -> str | None:
    """Tidy one candidate sentence, or None if it is not 4-20 plain English words.

    ``numbers`` also admits plain numbers and spelled-out symbols: for LM text, which is never
    read aloud, so a TTS engine's reading of "1998" need not match its normalised transcript.
    """
    text = " ".join(text.replace("``", '"').replace("''", '"').replace("--", ", ").split())
    text = text.strip(" \"'()-,;:")
    if not (_lm_readable(text) if numbers else _CLEAN.match(text)):
        return None
    if text.count('"') % 2 or text.count("(") != text.count(")"):
        text = text.replace('"', "").replace("(", "").replace(")", "")
    words = normalize(text).split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or len(text.split()) > MAX_WORDS:
        return None
    if text[-1] not in ".!?":
        text += "."
    return text


def split_sentences(text: str, numbers: bool = False) -> list[str]:
    """Split running text at sentence ends and keep the clean sentences (see :func:`clean_sentence`)."""
    out = []
    for part in _SENTENCE_END.split(" ".join(text.split())):
        sentence = clean_sentence(part, numbers)
        if sentence is not None:
            out.append(sentence)
    return out


def _wordnet_glosses_raw(dirs: Iterable[Path]) -> Iterator[str]:
    """The gloss of every synset in WordNet's ``data.noun`` etc.: definitions and quoted examples."""
    for root in dirs:
        for path in sorted(root.glob("data.*")):
            with open(path, encoding="latin-1") as f:
                for line in f:
                    if line.startswith(" ") or "|" not in line:
                        continue  # licence header
                    yield line.split("|", 1)[1]


def wordnet_sentences(dirs: Iterable[Path] = WORDNET_DIRS) -> Iterator[str]:
    """Quoted usage examples from WordNet glosses (``data.noun`` etc.)."""
    for gloss in _wordnet_glosses_raw(dirs):
        for example in re.findall(r'"([^"]+)"', gloss):
            yield from split_sentences(example)


def fortune_sentences(root: Path = FORTUNE_DIR) -> Iterator[str]:
    """Sentences from plain fortune files (``%``-separated); the offensive ``off/`` is skipped."""
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink():
            continue
        text = path.read_text(encoding="latin-1")
        for entry in text.split("\n%\n"):
            # Drop attributions ("-- Mark Twain") and quoted dialogue markers.
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith("--")]
            yield from split_sentences(" ".join(lines))


def gcide_sentences(path: Path = GCIDE_DICT) -> Iterator[str]:
    """Attributed quotations (``--Shak.``) from the GCIDE dictionary."""
    if not path.exists():
        return
    block: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("      ") and line.strip():
                block.append(line.strip())
                continue
            if block:
                quote = " ".join(block)
                match = re.search(r"\s--\s?[A-Z][^-]*$", quote)
                if match:
                    yield from split_sentences(quote[: match.start()])
                block = []


def bible_sentences() -> Iterator[str]:
    """Verses of the King James bible (``bible-kjv``), split into sentences."""
    if shutil.which("bible") is None:
        return
    proc = subprocess.run(["bible", "-l1000", "Gen1:1-Rev22:21"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, check=False)
    for line in proc.stdout.splitlines():
        match = re.match(r"^\s*\d+\s+(.*)$", line)
        if match:
            yield from split_sentences(match.group(1))


def wordnet_glosses(dirs: Iterable[Path] = WORDNET_DIRS) -> Iterator[str]:
    """The definitions of WordNet glosses, normalised, one per ``;``-separated part.

    The quoted examples are removed: they are :func:`wordnet_sentences`, which the corpus
    splits into train, valid and test, while the definitions are never read aloud.
    """
    for gloss in _wordnet_glosses_raw(dirs):
        for part in re.sub(r'"[^"]*"', " ", gloss).split(";"):
            phrase = normalize(part)
            if len(phrase.split()) >= 2:
                yield phrase


_ENTITY = re.compile(r"&([A-Za-z][\w.-]*);")


class _HelpText(HTMLParser):
    """The text of each block element of a help page: HTML, Mallard (GNOME) or DocBook XML.

    Code, commands, file names and page furniture are skipped; inline markup (``<gui>``,
    ``<key>``, links) stays part of its sentence.
    """

    BLOCKS = frozenset("p li dd td th h1 h2 h3 h4 title desc div para simpara entry term listitem".split())
    SKIPPED = frozenset("pre code cmd screen script style tt header nav footer programlisting literal "
                        "command filename userinput computeroutput".split())
    # Menu items and keys written side by side (<gui>Edit</gui><gui>Copy</gui>) are separate words;
    # other inline markup may sit inside a word (an underlined access key: <accel>F</accel>ile).
    WORDS = frozenset("gui key guiseq keyseq guimenu guisubmenu guimenuitem guibutton guilabel keycap "
                      "keycombo menuchoice br".split())

    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[str] = []
        self._parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skipping += tag in self.SKIPPED
        if tag in self.BLOCKS:
            self.flush()
        if tag in self.WORDS:
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        if tag in self.BLOCKS:
            self.flush()
        if tag in self.WORDS:
            self._parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._parts.append(data)

    def flush(self) -> None:
        # An entity the parser does not know is a DocBook name (KDE's "&kmail;", GnuCash's "&app;").
        text = " ".join(_ENTITY.sub(r"\1", "".join(self._parts)).split())
        self._parts = []
        if text:
            self.paragraphs.append(text)


def help_sentences(dirs: Iterable[Path] = HELP_DIRS) -> Iterator[str]:
    """Clean sentences (numbers allowed) of installed user help: ``*.html``, Mallard ``*.page`` and
    DocBook ``*.xml`` or ``*.docbook``."""
    for root in dirs:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix not in (".html", ".page", ".xml", ".docbook") or not path.is_file():
                continue
            parser = _HelpText()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            parser.flush()
            for paragraph in parser.paragraphs:
                yield from split_sentences(paragraph, numbers=True)


# A UI string is kept only if, with access keys and trailing dots gone, it is plain words: no
# format fields ("%s", "{0}", "%1"), markup, paths or options.
_UI_ACCESS_KEY = re.compile(r"(?<![\w&])[_&](?=\w)")
_UI_UNWANTED = re.compile(r"[%{}<>\\$=/|\[\]@#*+~^`]|\b[A-Za-z]+_[A-Za-z]|https?:|\.\w+\.")
_UI_CREDITS = ("NAME OF TRANSLATORS", "EMAIL OF TRANSLATORS", "Your names", "Your emails", "translator-credits")


def ui_strings(dirs: Iterable[Path] = UI_DIRS) -> Iterator[str]:
    """Normalised messages of applications' gettext catalogs (``*.mo``): buttons, menus, notices.

    The English message ids are what a program shows people ("Call ended", "Do you want to save
    your changes?"): short and spoken-like, unlike the sentences of books and help. Every locale's
    catalog holds the same ids; the caller gathers one locale's.
    """
    for root in dirs:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.mo")):
            try:
                with open(path, "rb") as f:
                    catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
            except (OSError, ValueError, struct.error) as e:  # a broken catalog costs only itself
                logger.warning("skipping message catalog %s: %s", path, e)
                continue
            for key in catalog:
                if isinstance(key, tuple):  # plural forms: (singular, n) for each n; the plural is not kept
                    if key[1]:
                        continue
                    key = key[0]
                message = key.split("\x04")[-1]  # without its context
                if not message or message.startswith(_UI_CREDITS):
                    continue
                for line in message.splitlines():
                    line = _UI_ACCESS_KEY.sub("", line).replace("&&", "&").strip().rstrip(":.…").strip()
                    if not line or _UI_UNWANTED.search(line) or not _lm_readable(line) \
                            or len(line.split()) > MAX_WORDS:
                        continue
                    phrase = normalize(line)
                    if phrase:
                        yield phrase


def lm_extra_text(held_out: Iterable[str], wordnet_dirs: Iterable[Path] = WORDNET_DIRS,
                  help_dirs: Iterable[Path] = HELP_DIRS, ui_dirs: Iterable[Path] = UI_DIRS) -> list[str]:
    """Normalised, deduplicated lines of WordNet definitions, user help and UI strings for the LM.

    A line that equals a ``held_out`` sentence (validation, test, evaluation transcripts) or
    contains one of four or more words is dropped, so that no scored sentence is in the LM.
    """
    exact: set[str] = set()
    by_start: dict[tuple[str, ...], list[list[str]]] = {}  # first four words -> sentences
    for sentence in held_out:
        words = normalize(sentence).split()
        if len(words) >= MIN_WORDS:
            by_start.setdefault(tuple(words[:MIN_WORDS]), []).append(words)
        elif words:
            exact.add(" ".join(words))

    def held(line: str) -> bool:
        words = line.split()
        return line in exact or any(
            words[i:i + len(sentence)] == sentence
            for i in range(len(words) - MIN_WORDS + 1)
            for sentence in by_start.get(tuple(words[i:i + MIN_WORDS]), ()))

    seen: dict[str, None] = {}
    for name, source in (("wordnet glosses", wordnet_glosses(wordnet_dirs)),
                         ("help", (normalize(s) for s in help_sentences(help_dirs))),
                         ("ui strings", ui_strings(ui_dirs))):
        before, dropped = len(seen), 0
        for line in source:
            if line in seen:
                continue
            if held(line):
                dropped += 1
                continue
            seen[line] = None
        logger.info("%s: %d new lines, %d dropped as held out", name, len(seen) - before, dropped)
    return list(seen)


def debian_sentences() -> list[str]:
    """Clean sentences from every installed Debian text source, deduplicated, sorted.

    Two sentences are duplicates when their ``normalize()`` forms are equal.
    """
    seen: dict[str, str] = {}
    for name, source in (("wordnet", wordnet_sentences()), ("fortunes", fortune_sentences()),
                         ("gcide", gcide_sentences()), ("bible", bible_sentences())):
        before = len(seen)
        for sentence in source:
            seen.setdefault(normalize(sentence), sentence)
        logger.info("%s: %d new sentences", name, len(seen) - before)
    return [seen[key] for key in sorted(seen)]


def split_text(sentences: list[str], seed: int, n_valid: int,
               n_test: int) -> dict[str, list[str]]:
    """Shuffle with ``seed`` and split into test, valid and train (the rest)."""
    if len(sentences) < n_valid + n_test + 1:
        raise ValueError(f"need more than {n_valid + n_test} sentences, got {len(sentences)}")
    order = list(sentences)
    random.Random(seed).shuffle(order)
    return {"test": order[:n_test], "valid": order[n_test:n_test + n_valid],
            "train": order[n_test + n_valid:]}


def load_or_make_text(text_dir: Path, seed: int, n_valid: int,
                      n_test: int) -> dict[str, list[str]]:
    """Read ``text_dir/{train,valid,test}.txt`` or, if absent, extract and write them.

    Once written the split never changes, so later runs plan the same utterances.
    """
    paths = {split: text_dir / f"{split}.txt" for split in SPLITS}
    if all(p.exists() for p in paths.values()):
        return {s: [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
                for s, p in paths.items()}
    text = split_text(debian_sentences(), seed, n_valid, n_test)
    text_dir.mkdir(parents=True, exist_ok=True)
    for split, path in paths.items():
        with atomic_path(path) as tmp:
            tmp.write_text("".join(s + "\n" for s in text[split]), encoding="utf-8")
    logger.info("sentences: %s", {s: len(v) for s, v in text.items()})
    return text


# ---------------------------------------------------------------- real speech -> manifests


def audio_duration(path: Path) -> float:
    """Duration in seconds of any audio file: soundfile first, then ffprobe.

    Raises:
        ValueError: neither could read the file.
    """
    try:
        info = sf.info(str(path))
        if info.frames > 0:
            return float(info.frames) / float(info.samplerate)
    except (RuntimeError, sf.LibsndfileError):
        pass
    if shutil.which("ffprobe") is None:
        raise ValueError(f"cannot read {path}: soundfile failed and ffprobe is not installed")
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                           "-of", "default=nw=1:nk=1", str(path)],
                          capture_output=True, text=True, check=False)
    try:
        return float(proc.stdout.strip())
    except ValueError as e:
        raise ValueError(f"cannot read the duration of {path}: {proc.stderr.strip()!r}") from e


def librispeech_rows(root: Path) -> Iterator[dict[str, Any]]:
    """Manifest rows for a LibriSpeech-style tree ``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt``.

    Each transcript line is ``UTTERANCE-ID TEXT``; the audio is ``UTTERANCE-ID.flac`` (or .wav)
    next to it. The voice is the speaker id.
    """
    for trans in sorted(Path(root).rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            audio = next((p for ext in (".flac", ".wav") if (p := trans.parent / (uid + ext))
                          .exists()), None)
            if audio is None:
                logger.warning("%s: no audio for %s", trans, uid)
                continue
            yield {"audio": str(audio.resolve()), "text": normalize(text),
                   "duration": round(audio_duration(audio), 4), "voice": uid.split("-")[0]}


def common_voice_rows(root: Path, tsv: str = "validated.tsv") -> Iterator[dict[str, Any]]:
    """Manifest rows for a Common Voice release directory (``TSV`` + ``clips/*.mp3``).

    Args:
        root: directory holding the TSV files and ``clips/``.
        tsv: which TSV to read (``validated.tsv``, ``train.tsv``, ``dev.tsv``, ``test.tsv``).
    """
    path = Path(root) / tsv
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "sentence"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: expected columns 'path' and 'sentence', "
                             f"got {reader.fieldnames}")
        for rec in reader:
            audio = Path(root) / "clips" / rec["path"]
            text = normalize(rec["sentence"] or "")
            if not text or not audio.exists():
                logger.warning("%s: skipping %s (no text or no audio)", path, rec["path"])
                continue
            yield {"audio": str(audio.resolve()), "text": text,
                   "duration": round(audio_duration(audio), 4),
                   "voice": rec.get("client_id") or "unknown"}


ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


def asterisk_transcripts(path: Path = ASTERISK_TEXT) -> dict[str, str]:
    """Prompt name (``digits/1``) -> normalised transcript of what is spoken.

    Annotations are not speech and are dropped: ``[beep]``, ``<beep ascending>``,
    ``(10 seconds of silence)``, ``(note: does not say "2")``; a prompt with nothing else is skipped.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    out = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if not sep or line.startswith(";") or not name.strip() or " " in name.strip():
                continue
            text = re.sub(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)", " ", text)  # annotations
            text = re.sub(r"(\d)\.(\d)", r"\1 point \2", text)
            norm = normalize(text)
            if norm:
                out[name.strip()] = norm
    return out


def asterisk_devset(out: Path, sounds: Path = ASTERISK_SOUNDS,
                    transcripts: Path = ASTERISK_TEXT) -> int:
    """Decode the Asterisk G.722 prompts to 16 kHz WAV and write ``out/dev.jsonl``.

    Existing WAVs are kept, so the command is cheap to repeat.

    Returns:
        The number of prompts in the manifest.
    """
    if shutil.which("ffmpeg") is None:
        raise ValueError("ffmpeg is needed to decode G.722; apt-get install ffmpeg")
    text = asterisk_transcripts(transcripts)
    rows = []
    for src in sorted(sounds.rglob("*.g722")):
        name = src.relative_to(sounds).with_suffix("").as_posix()
        if name not in text:
            continue
        wav = (out / "audio" / name).with_suffix(".wav").resolve()
        if not wav.exists():
            with atomic_path(wav) as tmp:
                subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722",
                                "-i", str(src), "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le",
                                str(tmp)], check=True)
        rows.append({"audio": str(wav), "text": text[name],
                     "duration": round(audio_duration(wav), 4), "voice": "allison"})
    return write_manifest(out / "dev.jsonl", rows)
