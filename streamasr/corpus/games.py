"""Real transcribed speech from two Debian freeware games, as training and evaluation manifests.

``beneath-a-steel-sky`` (BASS) and ``flight-of-the-amazon-queen`` (FOTAQ) ship their full English
voice acting, each clip with its subtitle line. :func:`import_games` fetches the packages with
``apt-get download`` and ``dpkg-deb -x`` (nothing is installed), pairs every clip with its line and
speaker role, resamples it to 16 kHz mono WAV and writes JSON-lines manifests split by role:

    OUT/<game>/{train,dev,test}.jsonl   OUT/<game>/interjections.jsonl   OUT/<game>/roles.json
    OUT/<game>/audio/<clip>.wav         OUT/<game>/licence/{copyright,readme.txt.gz}

Roles that make up about 10 % of a game's audio form its dev set and another 10 % its
test set; they are never trained on. The protagonist (who speaks a third of each game) and clips
without a speaker label always train. Everything is resumable: WAVs already written are kept.
The audio and the text are the games' own and stay out of the repository; the licence files
travel with them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamasr.corpus import queen, sky
from streamasr.engine.audio import SAMPLE_RATE, check_finite
from streamasr.engine.text import normalize
from streamasr.errors import AudioError
from streamasr.manifest import write_manifest
from streamasr.corpus.tts import to_pcm16k, wav_duration, write_wav_atomic

logger = logging.getLogger(__name__)

GAMES = ("fotaq", "bass")
PACKAGES = {"fotaq": "flight-of-the-amazon-queen", "bass": "beneath-a-steel-sky"}
# BASS's text is Huffman-coded with a tree that only the game engine holds: it is read from the
# Debian scummvm binary at import time (GPL data stays out of this project).
TREE_PACKAGE = "scummvm"
PROTAGONISTS = {"fotaq": "joe", "bass": "foster"}
UNLABELLED = "unlabelled"
# Lines made only of these (or of sounds like "ungh", "hmmm", "aaah") carry no words to learn.
_INTERJECTION = re.compile(
    r"(?:h*m+|u+[hm]*|u+n+g+h*|e+r+m*|a+h+|a+r+g+h+|o+h+|o+o+h*|h+u+h+|e+h+|a+w+|w+h+o+a+|"
    r"s+h+|p+s+t+|t+s+k+|g+r+r+|a+a+h*|y+e+o+w+|o+w+|o+u+c+h+|w+o+w+|h+a+)")


@dataclass(frozen=True)
class ImportConfig:
    """What to import and where."""

    out: Path  # corpus folder; one sub-folder per game
    games: tuple[str, ...] = GAMES  # which games
    debs: Path | None = None  # folder holding the .deb files (default: OUT/debs, downloaded)
    seed: int = 31  # orders the roles before the dev/test split
    dev_share: float = 0.10  # of a game's audio, in held-out dev roles
    test_share: float = 0.10  # of a game's audio, in held-out test roles
    english: str = "us"  # BASS text: "us" (USA) or "uk" (English UK)
    min_seconds: float = 0.3  # shorter clips are skipped
    max_seconds: float = 20.0  # longer clips are skipped

    def __post_init__(self) -> None:
        for game in self.games:
            if game not in GAMES:
                raise ValueError(f"games: unknown game {game!r}; expected some of {GAMES}")
        for name in ("dev_share", "test_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.4:
                raise ValueError(f"{name} must be in [0, 0.4], got {value}")
        if self.english not in ("us", "uk"):
            raise ValueError(f"english must be 'us' or 'uk', got {self.english!r}")
        if not 0 < self.min_seconds < self.max_seconds:
            raise ValueError(f"need 0 < min_seconds < max_seconds, got {self.min_seconds}, "
                             f"{self.max_seconds}")


@dataclass(frozen=True)
class Clip:
    """One voice clip: its line and how to get its audio."""

    game: str  # "fotaq" or "bass"
    name: str  # clip name in the game's data (the WAV's stem)
    raw: str  # subtitle as stored (commands removed)
    role: str  # speaker role, or UNLABELLED
    source: str  # where the line came from in the game data
    decode: Callable[[], tuple[np.ndarray, int]] = field(compare=False, repr=False)  # float32, Hz


# ---------------------------------------------------------------- text


def clean_text(raw: str) -> str:
    """A subtitle in the model's alphabet: emphasis capitals, stray marks and numbers handled.

    ``normalize`` lower-cases and spells out numbers; the games add backquotes for apostrophes,
    ``...`` and ``--`` for pauses, and a few ``~`` and ``_`` marks.
    """
    text = raw.replace("`", "'").replace("--", " ").replace("~", " ").replace("_", " ")
    return normalize(text)


def is_interjection(text: str) -> bool:
    """Whether a normalised line holds only interjections ("hmm", "ungh", "oh oh")."""
    words = text.split()
    return bool(words) and all(_INTERJECTION.fullmatch(w) for w in words)


# ---------------------------------------------------------------- packages


def fetch_package(package: str, debs: Path, root: Path) -> Path:
    """Unpack a Debian package under ``root`` (downloading it into ``debs`` if needed).

    Returns:
        The folder the package was unpacked into (its ``usr/share/...`` tree).
    Raises:
        RuntimeError: the package could not be downloaded or unpacked (message says why).
    """
    target = root / package
    if (target / "usr").is_dir():
        return target
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"no {package}_*.deb in {debs} and no apt-get to download it; "
                               f"put the Debian package there")
        logger.info("downloading %s", package)
        proc = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True,
                              text=True, check=False)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {package} failed: {proc.stderr.strip()[-400:]}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{package}."))
    proc = subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(tmp)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"dpkg-deb -x {found[-1]} failed: {proc.stderr.strip()[-400:]}")
    os.replace(tmp, target)
    return target


def game_clips(game: str, tree: Path, english: str = "us", scummvm: Path | None = None) -> Iterator[Clip]:
    """Every voiced clip of a game unpacked at ``tree``, each name once.

    ``scummvm`` is the unpacked scummvm package, which BASS needs for its text tree.
    """
    if game == "fotaq":
        archive = queen.Archive(tree / queen.ARCHIVE)
        seen: set[str] = set()
        for line in queen.archive_lines(archive):
            if line.clip in seen:
                continue
            seen.add(line.clip)
            yield Clip(game, line.clip, line.text, line.role, line.source,
                       _mp3_decoder(archive, line.clip + ".SB", queen.PLAY_RATE))
    else:
        if scummvm is None:
            raise ValueError("Beneath a Steel Sky needs the unpacked scummvm package for its text tree")
        disk = sky.Disk(tree / sky.GAME_DIR)
        language = sky.LANGUAGES[english]
        text_tree = sky.find_text_tree((scummvm / sky.SCUMMVM).read_bytes(), sky.text_sections(disk, language))
        for sky_line in sky.game_lines(disk, text_tree, language):
            yield Clip(game, sky_line.clip, sky_line.text, sky_line.role, f"file {sky_line.file}",
                       sky.decoder(disk, sky_line.file))


def _mp3_decoder(archive: queen.Archive, entry: str, rate: int) -> Callable[[], tuple[np.ndarray, int]]:
    def decode() -> tuple[np.ndarray, int]:
        audio, _labelled = sf.read(io.BytesIO(archive.read(entry)), dtype="float32")
        return audio, rate

    return decode


# ---------------------------------------------------------------- split


def split_roles(durations: dict[str, float], protagonist: str, seed: int, dev_share: float,
                test_share: float) -> dict[str, str]:
    """Assign each role to "train", "dev" or "test".

    Roles other than the protagonist and UNLABELLED are shuffled (seeded) and dealt to dev until
    it holds ``dev_share`` of all the game's seconds, then to test until it holds ``test_share``.

    Args:
        durations: seconds of speech per role.
    Returns:
        role -> split; every role exactly once.
    """
    total = sum(durations.values())
    candidates = sorted(r for r in durations if r not in (protagonist, UNLABELLED))
    random.Random(seed).shuffle(candidates)
    split = {role: "train" for role in durations}
    totals = {"dev": 0.0, "test": 0.0}
    targets = {"dev": dev_share * total, "test": test_share * total}
    for role in candidates:
        for name in ("dev", "test"):
            if totals[name] < targets[name] and totals[name] + durations[role] <= 1.5 * targets[name]:
                split[role] = name
                totals[name] += durations[role]
                break
    return split


# ---------------------------------------------------------------- import


def import_game(game: str, cfg: ImportConfig, progress: Callable[[int, int], None] | None = None
                ) -> dict[str, Any]:
    """Import one game into ``cfg.out/<game>``; returns a summary (counts, hours, skipped clips)."""
    out = cfg.out / game
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    debs, packages = cfg.debs or cfg.out / "debs", cfg.out / "packages"
    tree = fetch_package(PACKAGES[game], debs, packages)
    _keep_licence(game, tree, out / "licence")
    scummvm = fetch_package(TREE_PACKAGE, debs, packages) if game == "bass" else None
    clips = list(game_clips(game, tree, cfg.english, scummvm))
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for i, clip in enumerate(clips):
        if progress is not None:
            progress(i, len(clips))
        text = clean_text(clip.raw)
        if not text:
            skipped.append(f"{clip.name}: no words in {clip.raw!r}")
            continue
        path = audio_dir / f"{clip.name}.wav"
        try:
            duration = _ensure_wav(clip, path)
        except (ValueError, RuntimeError, KeyError, sf.LibsndfileError, AudioError) as e:
            logger.warning("%s %s: skipped, %s", game, clip.name, e)
            skipped.append(f"{clip.name}: {e}")
            continue
        if not cfg.min_seconds <= duration <= cfg.max_seconds:
            skipped.append(f"{clip.name}: {duration:.2f} s, outside [{cfg.min_seconds}, {cfg.max_seconds}]")
            continue
        rows.append({"audio": f"audio/{clip.name}.wav", "text": text, "duration": round(duration, 3),
                     "voice": f"{game}:{clip.role}", "raw": clip.raw, "source": clip.source,
                     "interjection": is_interjection(text)})
    if progress is not None:
        progress(len(clips), len(clips))
    return _write_manifests(game, cfg, out, rows, skipped)


def _ensure_wav(clip: Clip, path: Path) -> float:
    """Write the clip's 16 kHz WAV unless a valid one exists; returns its duration in seconds."""
    duration = wav_duration(path)
    if duration is not None:
        return duration
    audio, rate = clip.decode()
    if audio.size == 0:
        raise ValueError("the clip holds no audio")
    # As the synthetic corpus does: 0.2 s of silence at each end, where CTC emits the last letters.
    pcm = to_pcm16k(check_finite(audio, clip.name), rate, keep=0.2)
    write_wav_atomic(path, pcm)
    return len(pcm) / SAMPLE_RATE


def _role(row: dict[str, Any]) -> str:
    """The speaker role of a manifest row (its voice is ``<game>:<role>``)."""
    return str(row["voice"]).split(":", 1)[1]


def _write_manifests(game: str, cfg: ImportConfig, out: Path, rows: list[dict[str, Any]],
                     skipped: list[str]) -> dict[str, Any]:
    speech = [r for r in rows if not r["interjection"]]
    durations: dict[str, float] = {}
    for r in speech:
        durations[_role(r)] = durations.get(_role(r), 0.0) + r["duration"]
    split = split_roles(durations, PROTAGONISTS[game], cfg.seed, cfg.dev_share, cfg.test_share)
    summary: dict[str, Any] = {"game": game, "package": PACKAGES[game], "clips": len(rows) + len(skipped),
                               "interjections": len(rows) - len(speech), "skipped": skipped}
    for name in ("train", "dev", "test"):
        chosen = [r for r in speech if split[_role(r)] == name]
        write_manifest(out / f"{name}.jsonl", chosen)
        summary[name] = {"utterances": len(chosen),
                         "hours": round(sum(r["duration"] for r in chosen) / 3600, 3),
                         "roles": sorted({_role(r) for r in chosen})}
    write_manifest(out / "interjections.jsonl", (r for r in rows if r["interjection"]))
    roles = {role: {"split": split[role], "seconds": round(s, 1)} for role, s in sorted(durations.items())}
    (out / "roles.json").write_text(json.dumps(roles, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _keep_licence(game: str, tree: Path, dest: Path) -> None:
    """Copy the package's copyright notice and readme beside the imported clips."""
    dest.mkdir(parents=True, exist_ok=True)
    doc = tree / "usr/share/doc" / PACKAGES[game]
    for name in ("copyright", "readme.txt.gz", "README.Debian"):
        if (doc / name).is_file():
            shutil.copyfile(doc / name, dest / name)
    (dest / "NOTICE").write_text(
        f"Modified, partial copy of the Debian package {PACKAGES[game]}: voice clips resampled to\n"
        "16 kHz and their subtitle lines, made by streamasr's games importer. Free of charge;\n"
        "see copyright and readme.txt.gz for the licence.\n")


def import_games(cfg: ImportConfig, progress: Callable[[str, int, int], None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Import every game of ``cfg``; a game that fails is reported and the others still run.

    Returns:
        game -> summary, or game -> {"error": message}.
    """
    results: dict[str, dict[str, Any]] = {}
    for game in cfg.games:
        def step(i: int, n: int, game: str = game) -> None:
            if progress is not None:
                progress(game, i, n)

        try:
            results[game] = import_game(game, cfg, step)
        except (RuntimeError, ValueError, OSError, ImportError) as e:
            logger.error("%s: %s", game, e)
            results[game] = {"error": str(e)}
    return results
