"""Endpointing: trailing-silence rules that cut a stream into segments."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class EndpointConfig:
    silence_after_speech: float = 0.8  # seconds without a new character that end a segment with speech
    silence_no_speech: float = 5.0  # seconds of segment with no speech at all after which it restarts
    max_segment: float = 20.0  # seconds: a segment longer than this is ended regardless

    def __post_init__(self) -> None:
        for name in ("silence_after_speech", "silence_no_speech", "max_segment"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.04 <= value <= 3600:
                raise ValueError(f"EndpointConfig.{name} must be a number of seconds in [0.04, 3600], got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def check(cfg: EndpointConfig, frame: int, segment_start: int, last_speech: int | None,
          frame_seconds: float) -> Literal["none", "final", "restart"]:
    """Decide after model frame ``frame`` whether the current segment ends.

    Args:
        segment_start: first frame of the current segment.
        last_speech: frame of the segment's last non-space character, None if it has none.

    Returns:
        "final" to emit the segment, "restart" to drop a segment without speech, else "none".
    """
    length = (frame + 1 - segment_start) * frame_seconds
    if last_speech is None:
        return "restart" if length >= cfg.silence_no_speech else "none"
    if (frame - last_speech) * frame_seconds >= cfg.silence_after_speech or length >= cfg.max_segment:
        return "final"
    return "none"
