"""The one chunk loop: a whole signal through ``step`` piece by piece, then ``finish``.

Every caller that has the whole signal at hand (file transcription, evaluation, benchmarks, the
load test's expected results) goes through :func:`run`, so they all see exactly what a live
stream fed the same chunks would see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from streamasr.engine.stream import Recognizer, StreamState, finish, step
from streamasr.results import Result

# Called after each chunk with the state and the results that chunk gave.
OnChunk = Callable[[StreamState, list[Result]], None]


def pieces(signal: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """``signal`` cut into consecutive pieces of ``size`` samples (the whole of it when size <= 0)."""
    if size <= 0:
        yield signal
        return
    for start in range(0, len(signal), size):
        yield signal[start:start + size]


def run(rec: Recognizer, state: StreamState, chunks: Sequence[np.ndarray | bytes] | Iterator[np.ndarray],
        encoding: str = "pcm_f32le", on_chunk: OnChunk | None = None) -> tuple[StreamState, list[Result]]:
    """Feed ``chunks`` to one stream in order, then finish it.

    Args:
        rec: the shared recognizer.
        state: the stream's state (from ``rec.initial_state``).
        chunks: PCM pieces at the stream's sample rate, as ``step`` takes them (``pieces`` cuts a
            signal).
        encoding: of ``bytes`` chunks, as for ``step``.
        on_chunk: called after each chunk's ``step`` (progress, measurements).

    Returns:
        The finished state and every result, the chunks' and the finish's, in order.
    """
    out: list[Result] = []
    for chunk in chunks:
        state, results = step(rec, state, chunk, encoding)
        out += results
        if on_chunk is not None:
            on_chunk(state, results)
    state, results = finish(rec, state)
    return state, out + results
