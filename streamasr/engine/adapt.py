"""Unsupervised speaker adaptation: a stream learns its speaker's voice from its own output.

A model trained on synthetic voices is unsure of itself on a person. Each time a stream's segment
ends, one gradient step (a *lesson*) on the audio up to that end moves only the gain and bias of
the LayerNorm after the input projection (1,024 numbers for the 512-wide model), towards surer
output and towards the segment's own final text (no human transcript needed); the stream's
audio from ``AdaptConfig.delay`` seconds after the segment end on is recognised with them. They
live in the stream's state (``AdaptState``), so the shared model is never changed, streams batch
together as before (the model call takes a LayerNorm per row), and a speaker's next stream can
start from what their last one learnt. The delay lets a server learn on a thread of its own
(``Learner``) while the stream goes on, and still give exactly what the engine gives alone.

    state = rec.initial_state(adapt=AdaptConfig(lr=3e-3))
    ... step / finish as usual ...
    next_state = rec.initial_state(adapt=state.adapt)  # the same speaker again

Many steps or a large ``lr`` collapse the model towards confident nonsense (entropy minimisation
has a trivial optimum), hence one small step per segment, and none after a speaker's first 1,000
segments (README, "what we tried": the real voice's CER began to rise after ~1,500).
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from streamasr.atomic import atomic_path
from streamasr.engine.model import AcousticModel

# torch.optim.Adam's defaults; the update below is its algorithm, one row per stream.
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class AdaptConfig:
    lr: float = field(default=0.0, metadata={"help": "Adam step size for speaker adaptation (0: off; 0.003 "
                                                     "measured best: every segment of a speaker teaches the next)"})
    steps: int = field(default=1, metadata={"help": "gradient steps per segment (default: %(default)s)"})
    max_seconds: float = field(default=30.0, metadata={"help": "learn from at most the first S seconds of each "
                                                               "segment (default: %(default)s)"})
    # Entropy minimisation drifts in the end: the real voice's CER rose from 27.7 to 29.5 % over its
    # fourth 551 recordings in a row (README); a speaker's copy stops learning after this many.
    max_segments: int = field(default=1000, metadata={"help": "learn from at most the first N segments of a "
                                                              "speaker (default: %(default)s)"})
    # Measured on the real voice (README): with beam search, "both" 31.1 % WER against 33.8 % for
    # entropy alone; with greedy decoding, whose finals no LM has corrected, entropy is best.
    target: Literal["auto", "entropy", "transcript", "both"] = field(default="auto", metadata={
        "help": "what a speaker learns towards: 'transcript', CTC towards the stream's own finals (the beam "
                "search and its LM correct the model); 'entropy', the model's surety of itself; 'both', the "
                "sum; 'auto', 'both' with beam search and 'entropy' with greedy decoding (default: %(default)s)"})
    pull: float = field(default=0.0, metadata={"help": "after each step, the share of its distance from the "
                                                       "model's own LayerNorm a speaker's loses (default: "
                                                       "%(default)s)"})
    # A fixed delay in audio time keeps every result independent of when the learning finished, so
    # the server (which learns on its own thread, off the critical path) gives the engine's results.
    delay: float = field(default=0.5, metadata={"help": "seconds of a stream's audio after a segment ends before "
                                                        "what it taught is used (the server learns meanwhile; "
                                                        "default: %(default)s)"})

    def __post_init__(self) -> None:
        if not isinstance(self.lr, (int, float)) or not 0.0 <= self.lr <= 0.1:
            raise ValueError(f"AdaptConfig.lr must be a step size in [0, 0.1], got {self.lr!r}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 100:
            raise ValueError(f"AdaptConfig.steps must be an integer in [1, 100], got {self.steps!r}")
        if not isinstance(self.max_seconds, (int, float)) or not 1.0 <= self.max_seconds <= 600.0:
            raise ValueError(f"AdaptConfig.max_seconds must be in [1, 600] s, got {self.max_seconds!r}")
        if not isinstance(self.max_segments, int) or not 1 <= self.max_segments <= 1_000_000:
            raise ValueError(f"AdaptConfig.max_segments must be an integer in [1, 1e6], got {self.max_segments!r}")
        if self.target not in ("auto", "entropy", "transcript", "both"):
            raise ValueError(f"AdaptConfig.target must be 'auto', 'entropy', 'transcript' or 'both', "
                             f"got {self.target!r}")
        if not isinstance(self.pull, (int, float)) or not 0.0 <= self.pull <= 1.0:
            raise ValueError(f"AdaptConfig.pull must be a share in [0, 1], got {self.pull!r}")
        if not isinstance(self.delay, (int, float)) or not 0.0 <= self.delay <= 60.0:
            raise ValueError(f"AdaptConfig.delay must be in [0, 60] s, got {self.delay!r}")

    @property
    def enabled(self) -> bool:
        return self.lr > 0

    def check_float(self, quantize: bool) -> None:
        """Refuse ``--quantize`` with adaptation on, before any model is loaded (learning needs the
        float model's gradients)."""
        if self.enabled and quantize:
            raise ValueError("--adapt-lr needs the float model: drop --quantize")

    def check_passes(self, passes: int) -> None:
        """``--adapt-passes``: how many times a speaker's files are heard, the last one kept."""
        if not isinstance(passes, int) or not 1 <= passes <= 100:
            raise ValueError(f"--adapt-passes must be an integer in [1, 100], got {passes!r}")
        if passes > 1 and not self.enabled:
            raise ValueError(f"--adapt-passes {passes} hears the files again with what the voice taught: "
                             f"it needs --adapt-lr (e.g. 0.003)")

    def check_profile(self, path: str | Path | None) -> None:
        """``--speaker FILE``: where a speaker's voice is kept between runs."""
        if path is not None and not self.enabled:
            raise ValueError(f"--speaker {path} keeps what the voice taught between runs: it needs --adapt-lr "
                             f"(e.g. 0.003)")
        if path is not None and not Path(path).parent.is_dir():  # found now, not after the whole run
            raise ValueError(f"--speaker {path}: there is no directory {Path(path).parent} to keep it in")

    def for_decoder(self, method: str) -> AdaptConfig:
        """This config with target "auto" made what it means for decoder ``method`` ("beam", "greedy")."""
        if self.target != "auto":
            return self
        return replace(self, target="both" if method == "beam" else "entropy")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class AdaptState:
    """One speaker's LayerNorm, its optimiser state, and the model input it has not learnt from yet."""

    cfg: AdaptConfig
    weight: torch.Tensor  # float32 (hidden,) LayerNorm gain used for this stream
    bias: torch.Tensor  # float32 (hidden,) LayerNorm bias
    moments: torch.Tensor  # float32 (4, hidden) Adam's running mean of the gradient (gain, bias), then of its square
    # GRU state a lesson starts from: the silence state streams start in, which a segment's start
    # is close to, rather than the stream's own, which would depend on where a chunk ended.
    hidden: torch.Tensor  # float32 (layers, hidden)
    frames: np.ndarray  # float32 (frames, n_mels) model input since the last lesson, whole stacks, capped
    text: str = ""  # the stream's finals since ``frames`` began (what targets "transcript" and "both" learn towards)
    ended: int = 0  # how many of ``frames`` come before the last segment end (0: none has ended since)
    end: int = 0  # the stream's model frame where that segment ended
    steps: int = 0  # Adam steps taken
    segments: int = 0  # segments learnt from
    lesson: Future[AdaptState] | None = None  # a learning step handed to a learner, not yet used
    due: int = 0  # the stream's model frame from which the last lesson is used

    def restart(self, hidden: torch.Tensor) -> AdaptState:
        """This speaker at the start of a new stream from GRU state ``hidden``: what was learnt is kept."""
        return replace(self.settle(), hidden=hidden, frames=self.frames[:0], text="", ended=0, end=0, due=0)

    def settle(self) -> AdaptState:
        """This speaker with its pending lesson's LayerNorm and optimiser state (waits for the learner)."""
        if self.lesson is None:
            return self
        taught = self.lesson.result()
        return replace(self, weight=taught.weight, bias=taught.bias, moments=taught.moments, steps=taught.steps,
                       segments=taught.segments, lesson=None)

    def lesson_ready(self) -> bool:
        """Whether a segment has ended since the last lesson, and that lesson was in use by then
        (otherwise the speaker waits for the next segment end: a lesson starts from the last one's result)."""
        return self.ended > 0 and self.due <= self.end

    def take_lesson(self) -> tuple[AdaptState, AdaptState]:
        """(what to learn from: the frames and the text up to the segment end; this speaker with
        the frames after it, to learn later). Call ``settle`` first."""
        lesson = replace(self, frames=self.frames[: self.ended], ended=0)
        return lesson, replace(self, frames=self.frames[self.ended:], text="", ended=0, end=0)


def initial(model: AcousticModel, cfg: AdaptConfig, hidden: torch.Tensor) -> AdaptState:
    """A speaker the model has not heard yet, at the start of a stream from GRU state ``hidden``
    (``cfg.target`` must not be "auto": ``AdaptConfig.for_decoder`` first)."""
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"adapt must be an AdaptConfig or an AdaptState, got {type(cfg).__name__}")
    if cfg.target == "auto":
        raise ValueError("AdaptConfig.target 'auto' depends on the decoder: resolve it with for_decoder(method)")
    weight, bias = model.norm.weight.detach(), model.norm.bias.detach()
    if weight.dtype != torch.float32:
        raise ValueError(f"speaker adaptation needs a float32 model, got a LayerNorm of {weight.dtype}")
    return AdaptState(cfg, weight.clone(), bias.clone(), weight.new_zeros(4, len(weight)), hidden,
                      np.zeros((0, model.cfg.n_mels), np.float32))


def collect(state: AdaptState, frames: np.ndarray, limit: int) -> AdaptState:
    """``state`` with ``frames`` (whole stacks the model has just run) added, keeping at most ``limit``
    since the last segment end (``limit`` more while a segment waits to be learnt)."""
    room = limit + state.ended - len(state.frames)
    if room <= 0 or not len(frames) or state.segments >= state.cfg.max_segments:
        return state
    return replace(state, frames=np.concatenate([state.frames, frames[:room]]))


def _log_probs(model: AcousticModel, states: list[AdaptState], weight: torch.Tensor | None,
               bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's log-probs (streams, steps, vocab) on each state's frames, and each row's steps."""
    stack = model.cfg.stack
    steps = [model.output_steps(len(s.frames)) for s in states]
    if min(steps) == 0:
        raise ValueError(f"every stream needs at least {stack * (1 + model.cfg.lookahead)} frames to learn from, "
                         f"got {[len(s.frames) for s in states]}")
    width = max(len(s.frames) for s in states)
    batch = np.zeros((len(states), width, model.cfg.n_mels), np.float32)
    for row, s in enumerate(states):
        batch[row, : len(s.frames)] = s.frames
    hidden = torch.stack([s.hidden for s in states], dim=1)
    if weight is None or bias is None:
        weight, bias = torch.stack([s.weight for s in states]), torch.stack([s.bias for s in states])
    # Padded, not packed: a row's outputs do not depend on the steps after its end, which the
    # losses leave out, and the packed GRU's backward pass is the slower on a CPU.
    log_probs, _ = model(torch.from_numpy(batch), hidden, norm=(weight, bias))
    return log_probs, torch.tensor(steps)


def entropy(model: AcousticModel, states: list[AdaptState],
            weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-frame entropy (nats) of the model's output on each state's frames: float32 (streams,).

    ``weight`` and ``bias`` (streams, hidden) replace the states' own LayerNorms (for gradients).
    """
    return _entropy(*_log_probs(model, states, weight, bias))


def transcript_loss(model: AcousticModel, states: list[AdaptState], targets: list[list[int]], blank: int,
                    weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """CTC loss per frame of each state's frames against ``targets`` (its final text, as token ids,
    without blanks): float32 (streams,). ``weight`` and ``bias`` as in ``entropy``."""
    return _ctc(*_log_probs(model, states, weight, bias), targets, blank)


def _entropy(log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    per_frame = -(log_probs.exp() * log_probs).sum(-1)  # (streams, steps)
    valid = torch.arange(per_frame.shape[1])[None] < lengths[:, None]
    return (per_frame * valid).sum(1) / lengths


def _ctc(log_probs: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]], blank: int) -> torch.Tensor:
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), torch.tensor([t for ids in targets for t in ids]), lengths,
        torch.tensor([len(ids) for ids in targets]), blank=blank, reduction="none", zero_infinity=True) / lengths


def learn_many(model: AcousticModel, states: list[AdaptState], encode: Callable[[str], list[int]] | None = None,
               blank: int = 0) -> list[AdaptState]:
    """Take each state's ``cfg.steps`` Adam steps on its frames, batching states of like length.

    Each stream's loss is its own (``cfg.target``: the entropy of the model's output, CTC towards
    the text of its finals (``encode``d), or their sum), and its LayerNorm reaches only its own
    row, so one backward pass gives every stream of a batch its own gradient. A batch holds states
    within ``_LENGTH_RATIO`` of each other's length, padded to the longest: on this CPU a batch of
    16 equal lessons costs 29 ms each against 91 ms alone, but ragged ones cost more together than
    alone (docs/benchmarks.md). A state with too little audio, without text to learn towards, or whose speaker
    has taught it ``max_segments`` times, only drops what it holds.
    """
    out = [replace(s, frames=s.frames[:0], text="", ended=0, end=0) for s in states]
    targets: dict[int, list[int]] = {}
    for i, s in enumerate(states):
        if s.cfg.target != "entropy":
            if encode is None:
                raise ValueError("learning towards the transcript needs the tokenizer's encode")
            targets[i] = encode(s.text.strip())
    ready = [i for i, s in enumerate(states) if s.cfg.enabled and s.segments < s.cfg.max_segments
             and model.output_steps(len(s.frames)) > 0 and (i not in targets or targets[i])]
    for rows in _batches(states, ready):
        cfg, group = states[rows[0]].cfg, [states[i] for i in rows]
        weight = torch.stack([s.weight for s in group])
        bias = torch.stack([s.bias for s in group])
        moments = torch.stack([s.moments for s in group])  # (streams, 4, hidden)
        taken = torch.tensor([float(s.steps) for s in group])[:, None]
        for _ in range(cfg.steps):
            weight.requires_grad_(True)
            bias.requires_grad_(True)
            with torch.enable_grad():
                log_probs, lengths = _log_probs(model, group, weight, bias)  # one forward pass for both losses
                loss = torch.zeros(())
                if cfg.target != "entropy":
                    loss = loss + _ctc(log_probs, lengths, [targets[i] for i in rows], blank).sum()
                if cfg.target != "transcript":
                    loss = loss + _entropy(log_probs, lengths).sum()
                grads = torch.autograd.grad(loss, (weight, bias))
            with torch.no_grad():
                weight, bias, moments, taken = _adam(cfg.lr, (weight.detach(), bias.detach()), grads, moments, taken)
                if cfg.pull:
                    weight = torch.lerp(weight, model.norm.weight.detach()[None], cfg.pull)
                    bias = torch.lerp(bias, model.norm.bias.detach()[None], cfg.pull)
        for row, i in enumerate(rows):
            out[i] = replace(out[i], weight=weight[row].clone(), bias=bias[row].clone(),
                             moments=moments[row].clone(), steps=int(taken[row]), segments=states[i].segments + 1)
    return out


_LENGTH_RATIO = 1.25  # the longest state of a learning batch holds at most this many times the shortest's frames


def _batches(states: list[AdaptState], rows: list[int]) -> list[list[int]]:
    """``rows`` of ``states`` in batches of one config and like length (``_LENGTH_RATIO``)."""
    batches: list[list[int]] = []
    for i in sorted(rows, key=lambda i: len(states[i].frames)):
        last = batches[-1] if batches else None
        if last is None or states[last[0]].cfg != states[i].cfg \
                or len(states[i].frames) > _LENGTH_RATIO * len(states[last[0]].frames):
            batches.append([i])
        else:
            last.append(i)
    return batches


def learn_now(model: AcousticModel, states: list[AdaptState], encode: Callable[[str], list[int]] | None = None,
              blank: int = 0) -> list[Future[AdaptState]]:
    """``learn_many`` on each state's own frames, on this thread: the lessons, already learnt."""
    futures: list[Future[AdaptState]] = []
    for taught in learn_many(model, states, encode, blank):
        futures.append(Future())
        futures[-1].set_result(taught)
    return futures


class Learner:
    """Learns on its own thread, off the critical path (the server's inference worker).

    ``submit`` hands over states to learn from and returns at once; while the thread runs one
    batched ``learn_many``, newly submitted states queue up and all of them join the next. A stream
    uses what it learnt ``AdaptConfig.delay`` seconds of audio later, and waits for the thread only
    if it has not finished by then, so the thread can afford to wait ``gather`` seconds after a
    lesson comes for others to join it: batches of like length cost less per lesson.
    """

    def __init__(self, model: AcousticModel, encode: Callable[[str], list[int]], blank: int,
                 gather: float = 0.15) -> None:
        self.model, self.encode, self.blank, self.gather = model, encode, blank, gather
        self.seconds = 0.0  # wall seconds spent learning (read by /metrics)
        self.lessons = 0  # states learnt from
        self._queue: list[tuple[AdaptState, Future[AdaptState]]] = []
        self._since = 0.0  # monotonic time the oldest queued lesson came
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="streamasr-learn", daemon=True)
        self._thread.start()

    def submit(self, states: list[AdaptState]) -> list[Future[AdaptState]]:
        futures: list[Future[AdaptState]] = [Future() for _ in states]
        with self._ready:
            if self._closed:
                raise RuntimeError("learner closed")
            if not self._queue:
                self._since = time.monotonic()
            self._queue.extend(zip(states, futures))
            self._ready.notify()
        return futures

    def close(self) -> None:
        """Learn what is queued, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                while not self._closed and (left := self._since + self.gather - time.monotonic()) > 0:
                    self._ready.wait(left)
                batch, self._queue = self._queue, []
            began = time.perf_counter()
            states = [s for s, _ in batch]
            try:
                taught = learn_many(self.model, states, self.encode, self.blank)
            except Exception as e:  # noqa: BLE001 - each waiting stream gets it from its future
                for _, future in batch:
                    future.set_exception(e)
                continue
            finally:
                self.seconds += time.perf_counter() - began
                self.lessons += len(batch)
            for (_, future), result in zip(batch, taught, strict=True):
                future.set_result(result)


def _adam(lr: float, params: tuple[torch.Tensor, torch.Tensor], grads: tuple[torch.Tensor, ...],
          moments: torch.Tensor, taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of Adam (torch.optim.Adam's update, default betas and eps) for rows of parameters,
    each row with its own step count ``taken`` (streams, 1)."""
    grad = torch.stack(grads, dim=1)  # (streams, 2, hidden)
    mean = moments[:, :2] * _BETA1 + grad * (1 - _BETA1)
    square = moments[:, 2:] * _BETA2 + grad * grad * (1 - _BETA2)
    taken = taken + 1
    step_size = (lr / (1 - _BETA1 ** taken))[:, :, None]
    denom = square.sqrt() / (1 - _BETA2 ** taken).sqrt()[:, :, None] + _EPS
    new = torch.stack(params, dim=1) - step_size * mean / denom
    return new[:, 0], new[:, 1], torch.cat([mean, square], dim=1), taken


@dataclass
class Speaker:
    """One speaker across streams: where each next stream of theirs starts from.

    Deliberately mutable: ``transcribe_audio``, ``transcribe_file`` and ``evaluate`` start a stream
    from ``adapt`` and store the stream's final ``AdaptState`` back, so the next file of the same
    speaker is recognised with what the earlier ones taught.
    """

    adapt: AdaptConfig | AdaptState


# A speaker profile: what a voice taught, kept in a file between runs (``--speaker FILE``). The
# real voice's prompts heard a second time with what the first hearing taught: 31.0 -> 27.4 % WER.
_PROFILE_FORMAT, _PROFILE_VERSION = "streamasr-speaker", 1


def fingerprint(model: AcousticModel) -> str:
    """A hash of the model's parameters: a profile fits only the model that learnt it. Computed
    once per model (~40 ms for the default; a server's model is never changed after loading)."""
    if model not in _fingerprints:
        digest = hashlib.sha256()
        for name, value in model.state_dict().items():
            digest.update(name.encode())
            digest.update(value.detach().to(torch.float32).contiguous().numpy().tobytes())
        _fingerprints[model] = digest.hexdigest()[:16]
    return _fingerprints[model]


_fingerprints: weakref.WeakKeyDictionary[AcousticModel, str] = weakref.WeakKeyDictionary()


def save_profile(path: str | Path, state: AdaptState, model: AcousticModel) -> None:
    """Write what ``state``'s speaker has learnt (LayerNorm, Adam's state, counts) to ``path``;
    atomically, so an interrupted save leaves the old profile whole."""
    state = state.settle()
    path = Path(path)
    data = {"format": _PROFILE_FORMAT, "version": _PROFILE_VERSION, "model": fingerprint(model),
            "weight": state.weight, "bias": state.bias, "moments": state.moments,
            "steps": state.steps, "segments": state.segments}
    # A file of its own: streams of one speaker in two server processes may save at once.
    with atomic_path(path) as part:
        torch.save(data, part)


def load_profile(path: str | Path, model: AcousticModel, cfg: AdaptConfig, hidden: torch.Tensor) -> AdaptState:
    """The speaker ``save_profile`` kept in ``path``, at the start of a stream from GRU state
    ``hidden``, learning on with ``cfg`` (resolved: not "auto")."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - pickle, zip and torch errors alike: not a profile
        raise ValueError(f"{path} is not a speaker profile (--speaker writes those)") from e
    if not isinstance(data, dict) or data.get("format") != _PROFILE_FORMAT:
        raise ValueError(f"{path} is not a speaker profile (--speaker writes those)")
    if data.get("version") != _PROFILE_VERSION:
        raise ValueError(f"speaker profile {path} has version {data.get('version')!r}; this streamasr reads "
                         f"version {_PROFILE_VERSION}")
    fresh = initial(model, cfg, hidden)
    if data.get("model") != fingerprint(model):
        raise ValueError(f"speaker profile {path} was learnt by another model (fingerprint {data.get('model')}, "
                         f"this model's {fingerprint(model)}); a profile fits only the model that learnt it: "
                         f"give a new file to start the voice afresh")
    shapes = {"weight": fresh.weight.shape, "bias": fresh.bias.shape, "moments": fresh.moments.shape}
    for key, shape in shapes.items():
        value = data.get(key)
        if not isinstance(value, torch.Tensor) or value.shape != shape or value.dtype != torch.float32:
            raise ValueError(f"speaker profile {path}: {key} must be a float32 tensor of shape {tuple(shape)}, "
                             f"got {getattr(value, 'dtype', type(value).__name__)} "
                             f"{tuple(getattr(value, 'shape', ()))}")
    for key in ("steps", "segments"):
        if not isinstance(data.get(key), int) or data[key] < 0:
            raise ValueError(f"speaker profile {path}: {key} must be a count, got {data.get(key)!r}")
    return replace(fresh, weight=data["weight"], bias=data["bias"], moments=data["moments"],
                   steps=data["steps"], segments=data["segments"])
