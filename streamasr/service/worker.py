"""The inference worker: one thread runs the pending audio of every active stream as one batched call.

Each stream owns its state and has at most one request in flight. Requests queue up on the event
loop while the worker thread computes; when it is free it takes all of them (up to ``max_batch``)
and runs them through ``stream.step_many``, so N streams cost one model call per step instead of N.
The event loop never runs model work. Throughput knobs live in ``WorkerConfig``. Speaker
adaptation learns on a second thread (``adapt.Learner``), so a stream's backward pass does not
hold up the other streams' steps.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from streamasr.engine.adapt import Learner
from streamasr.results import Result
from streamasr.engine.stream import Recognizer, StreamState, finish, finish_many, step_many

log = logging.getLogger(__name__)

Outcome = tuple[StreamState, list[Result]]


@dataclass(frozen=True)
class WorkerConfig:
    max_batch: int = 256  # streams per model call; the rest wait for the next call
    batch_wait_ms: float = 20.0  # ms a request may wait for others to join its call (0: run when the worker is free)

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch, int) or not 1 <= self.max_batch <= 65536:
            raise ValueError(f"WorkerConfig.max_batch must be an integer in [1, 65536], got {self.max_batch!r}")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ValueError(f"WorkerConfig.batch_wait_ms must be in [0, 1000] ms, got {self.batch_wait_ms!r}")


@dataclass
class WorkerStats:
    """Totals since the worker started (written by the worker thread, read by /metrics)."""

    audio_seconds: float = 0.0  # seconds of input audio processed
    compute_seconds: float = 0.0  # wall seconds the worker spent computing
    calls: int = 0  # batched calls made
    requests: int = 0  # stream steps served (requests / calls = mean batch size)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def real_time_factor(self) -> float:
        """Compute seconds per audio second (0 before any audio)."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


@dataclass(eq=False)
class _Request:
    state: StreamState
    pcm: np.ndarray  # float32 (samples,) at the stream's sample rate
    finish: bool  # end of audio: drain the stream and emit its last final
    future: asyncio.Future[Outcome]
    queued: float  # event loop time when it was queued


class InferenceWorker:
    """Batches the requests of all streams into one model call per step on one worker thread."""

    def __init__(self, rec: Recognizer, cfg: WorkerConfig | None = None) -> None:
        self.rec = rec
        self.cfg = cfg or WorkerConfig()
        self.stats = WorkerStats()
        self._queue: list[_Request] = []
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()  # the queue holds max_batch requests
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamasr-infer")
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[_Request] = []
        self.learner: Learner | None = None  # speaker adaptation's thread, while running

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the next model call."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self.learner = self.rec.learner()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="streamasr-worker")

    async def close(self) -> None:
        """Stop the loop, fail queued requests and let the thread finish its current call."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for request in self._queue + self._inflight:
            if not request.future.done():
                request.future.set_exception(RuntimeError("inference worker closed"))
        self._queue.clear()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        if self.learner is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.learner.close)

    async def step(self, state: StreamState, pcm: np.ndarray) -> Outcome:
        """Advance one stream by ``pcm`` (float32 at its sample rate), batched with other streams."""
        return await self._submit(state, pcm, finish=False)

    async def finish(self, state: StreamState) -> Outcome:
        """End one stream: drain its buffers and return its last final."""
        return await self._submit(state, np.zeros(0, np.float32), finish=True)

    async def _submit(self, state: StreamState, pcm: np.ndarray, finish: bool) -> Outcome:
        if self._task is None:
            raise RuntimeError("inference worker is not running; call start() first")
        loop = asyncio.get_running_loop()
        request = _Request(state, pcm, finish, loop.create_future(), loop.time())
        self._queue.append(request)
        self._wakeup.set()
        if len(self._queue) >= self.cfg.max_batch:
            self._full.set()
        return await request.future

    async def _gather(self) -> None:
        """Let more requests join the next call until the oldest has waited ``batch_wait_ms``.

        Streams send their chunks at independent moments, so running each call as soon as the
        worker is free makes many small calls; a short wait makes fewer, larger ones, and a batched
        model step costs far less per stream (docs/benchmarks.md). Under load the oldest request
        has usually waited that long already, and the worker does not wait at all.
        """
        loop = asyncio.get_running_loop()
        deadline = self._queue[0].queued + self.cfg.batch_wait_ms / 1000
        while len(self._queue) < self.cfg.max_batch and loop.time() < deadline:
            self._full.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._full.wait()
            except TimeoutError:
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self.cfg.batch_wait_ms:
                    await self._gather()
                batch = [r for r in self._queue[: self.cfg.max_batch] if not r.future.done()]
                del self._queue[: self.cfg.max_batch]
                if not batch:
                    continue
                self._inflight = batch
                outcomes = await loop.run_in_executor(self._executor, self._compute, batch)
                self._inflight = []
                for request, outcome in zip(batch, outcomes, strict=True):
                    if request.future.done():  # the stream went away meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        request.future.set_exception(outcome)
                    else:
                        request.future.set_result(outcome)

    def _compute(self, batch: list[_Request]) -> list[Outcome | BaseException]:
        """Runs on the worker thread: one ``step_many`` for the steps, one ``finish_many`` for the ending streams."""
        began = time.perf_counter()
        outcomes: list[Outcome | BaseException] = [RuntimeError("not computed")] * len(batch)
        for ending in (False, True):
            chosen = [i for i, r in enumerate(batch) if r.finish == ending]
            if not chosen:
                continue
            try:
                states = [batch[i].state for i in chosen]
                done = (finish_many(self.rec, states) if ending else
                        step_many(self.rec, states, [batch[i].pcm for i in chosen], learner=self.learner))
                for i, outcome in zip(chosen, done, strict=True):
                    outcomes[i] = outcome
            except Exception:  # noqa: BLE001 - isolate the failing stream: rerun each alone
                for i in chosen:
                    outcomes[i] = self._one(batch[i])
        seconds = sum(len(r.pcm) / r.state.sample_rate for r in batch)
        with self.stats.lock:
            self.stats.audio_seconds += seconds
            self.stats.compute_seconds += time.perf_counter() - began
            self.stats.calls += 1
            self.stats.requests += len(batch)
        return outcomes

    def _one(self, request: _Request) -> Outcome | BaseException:
        try:
            if request.finish:
                return finish(self.rec, request.state)
            return step_many(self.rec, [request.state], [request.pcm], learner=self.learner)[0]
        except Exception as e:  # noqa: BLE001 - handed to the stream's handler, which logs it
            return e
