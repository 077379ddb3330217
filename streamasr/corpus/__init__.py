"""Synthetic speech corpus: sentences from Debian text, offline TTS voices, JSON-lines manifests.

The corpus directory holds ``text/{train,valid,test}.txt`` (original sentences),
``audio/<voice>/<id>.wav`` (16 kHz mono int16) and the manifests ``train.jsonl``,
``valid.jsonl``, ``test.jsonl`` and ``heldout.jsonl``. Every step is resumable: sentence
splits are reused once written, utterances whose WAV exists are not synthesised again, and
manifests are rebuilt from the files on disk.

This module holds the configuration, the plan, the manifests and the orchestration; the
engine workers and audio post-processing are in :mod:`streamasr.corpus.tts`, the slow incremental
Kokoro stage in :mod:`streamasr.corpus.kokoro`.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import re
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from streamasr.corpus.importers import load_or_make_text
from streamasr.manifest import read_manifest, read_rows, voice_stats, write_manifest
from streamasr.engine.text import normalize, number_to_words, ordinal_to_words
from streamasr.corpus.tts import VOICES, Utt, synth_chunk, wav_duration

logger = logging.getLogger(__name__)
_J = TypeVar("_J")
_R = TypeVar("_R")

ENGINES: tuple[str, ...] = ("espeak", "flite", "festival", "hibari", "piper", "kokoro")
HELDOUT_VOICE = "piper_joe"
KOKORO_MANIFEST = "kokoro.jsonl"
KOKORO_TEST_MANIFEST = "kokoro_test.jsonl"  # unseen sentences by the Kokoro voices; never trained on
_CHUNK = {"festival": 40, "espeak": 25, "flite": 25, "hibari": 10, "piper": 5}


def default_amounts() -> tuple[tuple[str, int], ...]:
    """Default training utterances per voice (the held-out voice gets none)."""
    return tuple((name, spec[2]) for name, spec in VOICES.items() if name != HELDOUT_VOICE)


@dataclass(frozen=True)
class CorpusConfig:
    """What to synthesise and where."""

    out: Path  # corpus directory
    amounts: tuple[tuple[str, int], ...] = field(default_factory=default_amounts)  # utts/voice
    engines: tuple[str, ...] = ("espeak", "flite", "festival", "hibari", "piper")  # run now
    heldout_voice: str | None = HELDOUT_VOICE  # speaks heldout.jsonl; never trains
    n_valid: int = 300  # sentences held out for validation
    n_test: int = 300  # sentences held out for test and heldout
    seed: int = 1234  # sentence shuffle and per-utterance prosody
    jobs: int = 2  # worker processes
    trim_keep: float = 0.2  # seconds of silence kept at each end
    short_per_voice: int = 0  # extra training utterances of 1-3 words per training voice
    codes_per_voice: int = 0  # extra training utterances of spelled letters or digit strings
    numbers_per_voice: int = 0  # extra training utterances of numbers, dates, times and amounts

    def __post_init__(self) -> None:
        for name, count in self.amounts:
            if name not in VOICES or name == HELDOUT_VOICE:
                raise ValueError(f"amounts: unknown training voice {name!r}; expected one of "
                                 f"{sorted(set(VOICES) - {HELDOUT_VOICE})}")
            if count < 0:
                raise ValueError(f"amounts[{name!r}] must be >= 0, got {count}")
        for engine in self.engines:
            if engine not in ENGINES:
                raise ValueError(f"engines: unknown engine {engine!r}; expected one of {ENGINES}")
        if self.heldout_voice is not None and self.heldout_voice not in VOICES:
            raise ValueError(f"heldout_voice must be one of {sorted(VOICES)}, "
                             f"got {self.heldout_voice!r}")
        for name in ("n_valid", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.jobs <= 64:
            raise ValueError(f"jobs must be in [1, 64], got {self.jobs}")
        for name in ("short_per_voice", "codes_per_voice", "numbers_per_voice"):
            if not 0 <= getattr(self, name) <= 10**6:
                raise ValueError(f"{name} must be in [0, 1e6], got {getattr(self, name)}")
        if not 0.0 <= self.trim_keep <= 2.0:
            raise ValueError(f"trim_keep must be in [0, 2] s, got {self.trim_keep}")

    @property
    def extras_per_voice(self) -> tuple[tuple[str, int], ...]:
        """(kind, utterances per training voice) of the extra utterances (:func:`extra_phrase`)."""
        return (("short", self.short_per_voice), ("code", self.codes_per_voice),
                ("number", self.numbers_per_voice))

    @property
    def train_voices(self) -> list[str]:
        """Training voices with a non-zero amount, in a fixed order."""
        return [name for name, count in self.amounts if count > 0]


# ---------------------------------------------------------------- worker pool


def _init_worker() -> None:
    """Pool initializer: one torch thread per worker process."""
    import torch

    torch.set_num_threads(1)


def map_jobs(fn: Callable[[_J], _R], jobs: Sequence[_J], processes: int) -> Iterator[_R]:
    """``fn`` over ``jobs`` in a spawn pool, or in this process when ``processes`` is 1."""
    if processes == 1:
        yield from map(fn, jobs)
        return
    # spawn, not fork: the parent may hold threads (torch, onnxruntime) that fork would copy.
    with multiprocessing.get_context("spawn").Pool(processes, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(fn, jobs)


# ---------------------------------------------------------------- planning and manifests


def planned_utt(audio: Path, seed: int, voice: str, uid: str, text: str) -> Utt:
    """A planned utterance: its WAV at ``audio/voice/uid.wav``, its prosody seeded by (seed, voice, uid).

    Every plan builds its utterances here, so a resumed build finds the same files and seeds.
    """
    return Utt(voice, uid, text, str(audio / voice / f"{uid}.wav"), f"{seed}/{voice}/{uid}")


def short_phrase(sentences: Sequence[str], index: int, seed: int) -> str:
    """Phrase ``index`` of the short-utterance text: one to three consecutive words of a sentence.

    The sentences have 4-20 words, but people also say single words and short commands; a model
    that never heard an isolated word drops it or splits it into several. Each phrase depends
    only on (sentences, index, seed), so a resumed build asks for the same text per file.
    """
    if not sentences:
        raise ValueError("short phrases need sentences, got none")
    rng = random.Random(f"{seed}/short/{index}")
    for _ in range(1000):
        words = [w.strip(".,;:!?\"'()-") for w in rng.choice(sentences).split()]
        words = [w.lower() if w.isupper() and len(w) > 1 else w for w in words
                 if any(c.isalpha() for c in w)]  # "LORD" is a word, not an acronym to spell
        size = rng.choice((1, 1, 2, 3))
        if size == 1:  # alone, people say "cancelled" or "Friday" far more often than "of"
            words = [w for w in words if len(w) >= 4]
        if len(words) >= size:
            start = rng.randrange(len(words) - size + 1)
            return " ".join(words[start:start + size])
    raise ValueError(f"no short phrase found in {len(sentences)} sentences after 1000 draws; "
                     "expected sentences with words of letters")


_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def code_phrase(index: int, seed: int) -> str:
    """Code ``index`` of the code utterances: spelled letters ("K, A, Y.") or digits ("four one five").

    People spell names and read out phone numbers and codes digit by digit; the sentences hold
    neither. Even indices spell one to four letters, odd ones read one to ten digits. Letters
    are written as capitals between commas, the one form every engine here reads as letter
    names (a lone lower-case "a" is read as the article); :func:`normalize` turns the text into
    the transcript ("k a y"). Each code depends only on (index, seed), like short phrases.
    """
    rng = random.Random(f"{seed}/code/{index}")
    if index % 2 == 0:
        letters = rng.choices(string.ascii_uppercase, k=rng.choice((1, 1, 1, 2, 3, 4)))
        return ", ".join(letters) + "."
    return " ".join(rng.choices(_DIGITS, k=rng.choice((1, 1, 2, 3, 4, 5, 7, 10))))


_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTHS = ("january february march april may june july august september october november "
           "december").split()
_UNITS = ("seconds minutes hours days weeks months years times percent degrees dollars cents "
          "miles pounds items messages calls people").split()


def _cardinal(rng: random.Random) -> str:
    """A number as said, small ones most often: people say "five" far more often than "5,280"."""
    top = rng.choice((10, 20, 20, 100, 100, 1000, 10**6, 10**9))
    return number_to_words(rng.randrange(top))


def _year(rng: random.Random) -> str:
    year = rng.randrange(1900, 2100)
    if 2000 <= year < 2010:
        return number_to_words(year)  # "two thousand five"
    head, tail = divmod(year, 100)
    return number_to_words(head) + " " + ("hundred" if tail == 0 else
                                          ("oh " if tail < 10 else "") + number_to_words(tail))


def number_phrase(index: int, seed: int) -> str:
    """Phrase ``index`` of the number text: a number, ordinal, date, time, amount or day as said.

    What people tell a speech service is full of them ("the nineteenth", "march third", "ten
    thirty", "five dollars"), but read aloud in words, which books and help pages seldom do, so
    the sentences have few. Written for a TTS voice to read ("A.M.", which a voice might read as
    the article and "m"); :func:`normalize` gives the transcript ("a m"). Each phrase depends only
    on (index, seed).
    """
    rng = random.Random(f"{seed}/number/{index}")
    ordinal = ordinal_to_words(rng.choice((rng.randrange(1, 32), rng.randrange(1, 101), 100, 1000, 10**6)))
    day = ordinal_to_words(rng.randrange(1, 32))
    hour, minute = rng.randrange(1, 13), rng.choice((0, 15, 30, 45, rng.randrange(60)))
    month, weekday = rng.choice(_MONTHS), rng.choice(_WEEKDAYS)
    forms = (
        lambda: _cardinal(rng),
        lambda: "minus " + _cardinal(rng),
        lambda: ordinal,
        lambda: "the " + ordinal,
        lambda: weekday,
        lambda: month,
        lambda: f"{month} {day}",
        lambda: f"{weekday} {month} {day}",
        lambda: f"the {day} of {month}",
        lambda: f"{month} {day} {_year(rng)}",
        lambda: _year(rng),
        lambda: rng.choice(("today", "tomorrow", "yesterday", "tonight", f"next {weekday}",
                            f"last {weekday}", f"this {weekday}", f"on {weekday}", f"in {month}")),
        lambda: f"{number_to_words(hour)} o'clock",
        lambda: number_to_words(hour) + ("" if minute == 0 else
                                         (" oh " if minute < 10 else " ") + number_to_words(minute))
        + rng.choice(("", "", " A.M.", " P.M.")),
        lambda: rng.choice(("half past", "quarter past", "quarter to")) + " " + number_to_words(hour),
        lambda: f"{_cardinal(rng)} {rng.choice(_UNITS)}",
        lambda: f"{_cardinal(rng)} dollars and {number_to_words(rng.randrange(1, 100))} cents",
    )
    return rng.choice(forms)()


def extra_phrase(kind: str, sentences: Sequence[str], index: int, seed: int) -> str:
    """Text of the extra utterance ``<kind>-<index>``: a short phrase, a code or a number."""
    if kind == "short":
        return short_phrase(sentences, index, seed)
    if kind == "code":
        return code_phrase(index, seed)
    if kind == "number":
        return number_phrase(index, seed)
    raise ValueError(f"extra utterance kind must be 'short', 'code' or 'number', got {kind!r}")


def plan(cfg: CorpusConfig, text: dict[str, list[str]]) -> dict[str, list[Utt]]:
    """Assign sentences to voices for each manifest.

    Training voices take consecutive, disjoint slices of the shuffled training sentences
    (wrapping round when the amounts exceed the sentences), then ``cfg.short_per_voice``
    short phrases each (:func:`short_phrase`, ids ``short-N``) and ``cfg.codes_per_voice``
    spelled letters or digit strings each (:func:`code_phrase`, ids ``code-N``) and
    ``cfg.numbers_per_voice`` numbers, dates, times or amounts each (:func:`number_phrase`, ids
    ``number-N``); valid and test sentences go to the training voices round-robin; heldout is
    every test sentence in the held-out voice.

    Returns:
        Manifest name ("train", "valid", "test", "heldout") -> planned utterances.
    """
    audio = cfg.out.resolve() / "audio"

    def utt(voice: str, split: str, index: int) -> Utt:
        return planned_utt(audio, cfg.seed, voice, f"{split}-{index:06d}", text[split][index])

    out: dict[str, list[Utt]] = {"train": [], "valid": [], "test": [], "heldout": []}
    start, n_train = 0, len(text["train"])
    for voice, count in cfg.amounts:
        out["train"] += [utt(voice, "train", (start + k) % n_train) for k in range(count)]
        start += count
    voices = cfg.train_voices
    for kind, count in cfg.extras_per_voice:
        for v, voice in enumerate(voices):
            for k in range(v * count, (v + 1) * count):
                out["train"].append(planned_utt(audio, cfg.seed, voice, f"{kind}-{k:06d}",
                                                extra_phrase(kind, text["train"], k, cfg.seed)))
    for split in ("valid", "test"):
        if voices:
            out[split] = [utt(voices[i % len(voices)], split, i)
                          for i in range(len(text[split]))]
    if cfg.heldout_voice is not None:
        out["heldout"] = [utt(cfg.heldout_voice, "test", i) for i in range(len(text["test"]))]
    return out


def manifest_rows(utts: Iterable[Utt]) -> Iterator[dict[str, Any]]:
    """Manifest rows of the utterances whose WAV exists and is valid, in order."""
    for u in utts:
        duration = wav_duration(u.path)
        if duration is not None:
            yield {"audio": u.path, "text": normalize(u.text),
                   "duration": round(duration, 4), "voice": u.voice}


def write_manifests(cfg: CorpusConfig, planned: dict[str, list[Utt]]) -> dict[str, int]:
    """Rebuild every manifest from the WAVs that exist; returns rows per manifest."""
    counts = {}
    for name, utts in planned.items():
        rows = list(manifest_rows(utts))
        extra = cfg.out / KOKORO_MANIFEST  # appended to by the incremental Kokoro stage
        if name == "train" and extra.exists():
            rows += [r for r in read_rows(extra, partial_tail=True) if wav_duration(r["audio"]) is not None]
        counts[name] = write_manifest(cfg.out / f"{name}.jsonl", rows)
    logger.info("manifests: %s", counts)
    return counts


def _jobs(cfg: CorpusConfig, engine: str,
          planned: dict[str, list[Utt]]) -> list[tuple[str, tuple[Utt, ...], float]]:
    """Chunks of not-yet-synthesised utterances of ``engine``, grouped by voice."""
    todo: dict[str, list[Utt]] = {}
    seen: set[str] = set()
    for utts in planned.values():
        for u in utts:
            if VOICES[u.voice][0] == engine and u.path not in seen:
                seen.add(u.path)
                if wav_duration(u.path) is None:
                    todo.setdefault(u.voice, []).append(u)
    size = _CHUNK[engine]
    return [(engine, tuple(us[i:i + size]), cfg.trim_keep)
            for us in todo.values() for i in range(0, len(us), size)]


def build_corpus(cfg: CorpusConfig,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Extract text, synthesise every missing utterance of ``cfg.engines``, write manifests.

    Args:
        cfg: corpus configuration.
        progress: called as ``progress(engine, done, total)`` after each chunk.

    Returns:
        Rows per manifest.
    """
    cfg.out.mkdir(parents=True, exist_ok=True)
    text = load_or_make_text(cfg.out / "text", cfg.seed, cfg.n_valid, cfg.n_test)
    planned = plan(cfg, text)
    write_manifests(cfg, planned)
    for engine in cfg.engines:
        if engine == "kokoro":
            continue  # a separate, incremental stage: build_kokoro()
        jobs = _jobs(cfg, engine, planned)
        total = sum(len(j[1]) for j in jobs)
        logger.info("%s: %d utterances to synthesise", engine, total)
        if not jobs:
            continue
        done = 0
        for ok in map_jobs(synth_chunk, jobs, cfg.jobs):
            done += ok
            if progress is not None:
                progress(engine, done, total)
        if done < total:
            logger.warning("%s: %d of %d utterances failed", engine, total - done, total)
        write_manifests(cfg, planned)
    return write_manifests(cfg, planned)


def manifest_stats(path: str | Path) -> dict[str, tuple[int, float]]:
    """Utterances and hours per voice in a manifest."""
    return voice_stats(read_manifest(path))


_AMOUNT = re.compile(r"^([a-z0-9_]+)=(\d+)$")


def parse_amounts(specs: Sequence[str], per_voice: int | None) -> tuple[tuple[str, int], ...]:
    """Training amounts from CLI options ``VOICE=N`` on top of the defaults.

    Args:
        specs: strings such as ``"flite_rms=500"``.
        per_voice: if given, replaces every default amount first.

    Returns:
        (voice, utterances) pairs in the default voice order.
    """
    amounts = dict(default_amounts())
    if per_voice is not None:
        amounts = {name: per_voice for name in amounts}
    for spec in specs:
        match = _AMOUNT.match(spec)
        if match is None or match.group(1) not in amounts:
            raise ValueError(f"--amount expects VOICE=N with VOICE in {sorted(amounts)}, "
                             f"got {spec!r}")
        amounts[match.group(1)] = int(match.group(2))
    return tuple(amounts.items())
