"""Endpointing rules and their config errors."""

from __future__ import annotations

import pytest

from streamasr.engine.endpoint import EndpointConfig, check

FRAME = 0.04  # seconds per model frame


def test_defaults_round_trip() -> None:
    cfg = EndpointConfig()
    assert EndpointConfig(**cfg.to_dict()) == cfg


def test_silence_after_speech_ends_the_segment() -> None:
    cfg = EndpointConfig(silence_after_speech=0.8)
    # Last character at frame 10: 19 frames later is 0.76 s, 20 frames later 0.8 s.
    assert check(cfg, 29, 0, 10, FRAME) == "none"
    assert check(cfg, 30, 0, 10, FRAME) == "final"


def test_segment_without_speech_restarts() -> None:
    cfg = EndpointConfig(silence_no_speech=1.0)
    assert check(cfg, 23, 0, None, FRAME) == "none"  # 0.96 s
    assert check(cfg, 24, 0, None, FRAME) == "restart"  # 1.0 s
    assert check(cfg, 124, 100, None, FRAME) == "restart"  # measured from the segment start


def test_max_segment_ends_continuous_speech() -> None:
    cfg = EndpointConfig(max_segment=2.0)
    assert check(cfg, 48, 0, 48, FRAME) == "none"
    assert check(cfg, 49, 0, 49, FRAME) == "final"  # 50 frames = 2.0 s, still talking


@pytest.mark.parametrize("field", ["silence_after_speech", "silence_no_speech", "max_segment"])
@pytest.mark.parametrize("value", [0.0, -1.0, 4000.0, "1"])
def test_config_error_text(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"EndpointConfig.{field} must be a number of seconds in "
                                         rf"\[0.04, 3600\], got {value!r}"):
        EndpointConfig(**{field: value})  # type: ignore[arg-type]
