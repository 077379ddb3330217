"""The inference worker: requests from many streams share batched model calls; waiting is bounded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from _serving import run

from streamasr.engine.audio import load_audio
from streamasr.engine.stream import Recognizer, step
from streamasr.service.worker import InferenceWorker, WorkerConfig


async def _steps(rec: Recognizer, cfg: WorkerConfig, audio: np.ndarray, streams: int,
                 spacing: float) -> tuple[InferenceWorker, float, list[str]]:
    worker = InferenceWorker(rec, cfg)
    worker.start()

    async def one(i: int) -> str:
        await asyncio.sleep(i * spacing)
        _, results = await worker.step(rec.initial_state(), audio)
        return results[-1].text if results else ""

    began = time.perf_counter()
    try:
        texts = await asyncio.gather(*(one(i) for i in range(streams)))
    finally:
        await worker.close()
    return worker, time.perf_counter() - began, list(texts)


def test_requests_within_the_wait_share_one_call(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    audio = load_audio(speech_wav)[:16000]
    worker, _, texts = run(_steps(tiny_recognizer, WorkerConfig(batch_wait_ms=200), audio, 10, 0.005))
    assert worker.stats.calls == 1 and worker.stats.requests == 10
    alone = step(tiny_recognizer, tiny_recognizer.initial_state(), audio)[1]
    assert texts == [alone[-1].text] * 10 and texts[0]


def test_a_full_batch_does_not_wait(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    audio = load_audio(speech_wav)[:1600]
    worker, elapsed, _ = run(_steps(tiny_recognizer, WorkerConfig(max_batch=4, batch_wait_ms=1000), audio, 8, 0.0))
    assert worker.stats.calls == 2 and worker.stats.requests == 8 and elapsed < 0.9


def test_no_wait_runs_when_free(tiny_recognizer: Recognizer, speech_wav: Path) -> None:
    audio = load_audio(speech_wav)[:1600]
    worker, elapsed, _ = run(_steps(tiny_recognizer, WorkerConfig(batch_wait_ms=0), audio, 1, 0.0))
    assert worker.stats.calls == 1 and elapsed < 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch": 0}, r"WorkerConfig.max_batch must be an integer in \[1, 65536\], got 0"),
    ({"batch_wait_ms": -1}, r"WorkerConfig.batch_wait_ms must be in \[0, 1000\] ms, got -1"),
])
def test_config_error_text(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerConfig(**kwargs)  # type: ignore[arg-type]
