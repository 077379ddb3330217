"""JSON-lines manifests: one utterance per line, ``{"audio", "text", "duration", "voice"?}``.

Every reader and writer of manifests in the project goes through this module. Relative audio
paths are relative to the manifest's folder; extra keys (a game clip's ``raw`` subtitle, say)
are kept by :func:`read_rows` and ignored by :func:`read_manifest`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamasr.atomic import atomic_path
from streamasr.errors import StreamAsrError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Utterance:
    audio: str  # path of the audio file
    text: str  # normalised transcript
    duration: float  # seconds
    voice: str = ""  # speaker or TTS voice name ("" when unknown)


def read_rows(path: str | Path, partial_tail: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a manifest, blank lines skipped.

    See :func:`_numbered_rows` for the arguments and errors.
    """
    return [row for _, row in _numbered_rows(Path(path), partial_tail)]


def _numbered_rows(path: Path, partial_tail: bool) -> list[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) of each non-blank line.

    Args:
        partial_tail: a last line that is not valid JSON is a write still in progress (a
            manifest another process appends to): skip it, with a warning, instead of failing.

    Raises:
        StreamAsrError: the file is missing, or a line (other than such a tail) is not a JSON
            object; the message gives the line number.
    """
    if not path.is_file():
        raise StreamAsrError(f"manifest {path} does not exist; expected a JSON-lines file")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if partial_tail and number == len(lines):
                logger.warning("%s:%d: skipped a partly written last line", path, number)
                continue
            raise StreamAsrError(f"{path}:{number}: bad manifest line ({e}); expected a JSON object") from e
        if not isinstance(row, dict):
            raise StreamAsrError(f"{path}:{number}: bad manifest line (a {type(row).__name__}); expected a JSON object")
        rows.append((number, row))
    return rows


def read_manifest(path: str | Path, max_duration: float | None = None,
                  partial_tail: bool = False) -> list[Utterance]:
    """The utterances of a manifest (those longer than ``max_duration`` seconds left out).

    Raises:
        StreamAsrError: see :func:`read_rows`; also a line without audio, text or duration.
    """
    path = Path(path)
    items: list[Utterance] = []
    for number, row in _numbered_rows(path, partial_tail):
        try:
            audio = Path(row["audio"])
            utt = Utterance(str(audio if audio.is_absolute() else path.parent / audio), str(row["text"]),
                            float(row["duration"]), str(row.get("voice", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise StreamAsrError(f"{path}:{number}: bad manifest line ({e}); expected JSON with audio, "
                                 "text and duration") from e
        if max_duration is None or utt.duration <= max_duration:
            items.append(utt)
    return items


def write_manifest(path: str | Path, rows: Iterable[dict[str, Any] | Utterance]) -> int:
    """Write ``rows`` as JSON lines, whole or not at all; returns how many."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(asdict(row) if isinstance(row, Utterance) else row, ensure_ascii=False) + "\n")
            count += 1
    return count


def voice_stats(items: Iterable[Utterance]) -> dict[str, tuple[int, float]]:
    """Utterances and hours per voice, voices sorted."""
    stats: dict[str, tuple[int, float]] = {}
    for u in items:
        n, hours = stats.get(u.voice, (0, 0.0))
        stats[u.voice] = (n + 1, hours + u.duration / 3600.0)
    return dict(sorted(stats.items()))


def manifest_stats(items: list[Utterance]) -> dict[str, Any]:
    """Hours and utterances, total and per voice (for checkpoints and model cards)."""
    return {
        "utterances": len(items),
        "hours": round(sum(u.duration for u in items) / 3600, 2),
        "voices": {v: {"utterances": n, "hours": round(h, 3)} for v, (n, h) in voice_stats(items).items()},
    }
