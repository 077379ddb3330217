"""Training: CTC loss, AdamW, warm-up + inverse-sqrt decay, clipping, checkpoints and exact resume."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import jiwer
import numpy as np
import torch
from tqdm import tqdm

from streamasr.training import augment

from streamasr.engine import ctc
from streamasr.training.augment import AugmentConfig
from streamasr.engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from streamasr.training.data import SpeechDataset, StepSampler, collate, collate_waves
from streamasr.manifest import Utterance, manifest_stats, read_manifest
from streamasr.errors import ModelError, StreamAsrError
from streamasr.engine.features import FeatureConfig, FeatureExtractor
from streamasr.engine.model import AcousticModel, ModelConfig, with_lookahead
from streamasr.engine.text import Tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    train_manifest: str = ""  # JSON-lines manifest of training utterances
    valid_manifest: str = ""  # JSON-lines manifest for validation WER/CER
    out_dir: str = "runs/default"  # folder for last.pt, best.pt and metrics.jsonl
    batch_seconds: float = 240.0  # seconds of audio per batch (padding included)
    lr: float = 1.5e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 800  # steps of linear warm-up, then lr ~ 1/sqrt(step)
    max_steps: int = 30000  # stop after this many optimizer steps
    cooldown_steps: int = 0  # final steps over which lr falls linearly to 0 (0: no cool-down)
    max_minutes: float = 0.0  # stop after this many minutes of wall time (0: no limit)
    cooldown_minutes: float = 0.0  # with max_minutes: final minutes over which lr falls linearly to 0
    clip: float = 5.0  # gradient norm clipping threshold
    max_duration: float = 16.0  # seconds: longer training utterances are skipped
    seed: int = 0  # seeds initialisation, batch order, augmentation and dropout
    threads: int = 2  # torch threads in the training process
    workers: int = 1  # data-loading processes (each uses one thread)
    save_every: int = 100  # steps between last.pt checkpoints
    eval_every: int = 500  # steps between validation runs
    valid_max: int = 300  # utterances of the validation manifest used
    augment: bool = True  # on-the-fly augmentation
    # Start from this checkpoint's weights (fresh optimizer, step 0). Model options are ignored,
    # except a --model-lookahead above the checkpoint's (its input layer is widened, see with_lookahead).
    init_from: str = ""
    device: str = "cpu"  # where the model trains ("cuda" for a GPU; data loading stays in CPU workers)
    # "device": workers only read, trim and speed-perturb; the rest of the augmentation and the
    # log-mel run batched on the training device (GPU runs were limited by their CPU workers)
    augment_on: Literal["workers", "device"] = "workers"
    # "bf16": forward and backward under bfloat16 autocast, fp32 weights (2.6x faster steps on AVX512-BF16 CPUs)
    precision: Literal["fp32", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        for name in ("batch_seconds", "lr", "clip", "max_duration"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "max_steps", "threads", "save_every", "eval_every", "valid_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"TrainConfig.workers must be >= 0, got {self.workers}")
        if not 0 <= self.cooldown_minutes <= self.max_minutes or (self.cooldown_minutes and not self.max_minutes):
            raise ValueError(f"TrainConfig.cooldown_minutes needs max_minutes > 0 and must be in [0, max_minutes="
                             f"{self.max_minutes}], got {self.cooldown_minutes}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"TrainConfig.device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.augment_on not in ("workers", "device"):
            raise ValueError(f"TrainConfig.augment_on must be 'workers' or 'device', got {self.augment_on!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"TrainConfig.precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if not 0 <= self.cooldown_steps <= self.max_steps:
            raise ValueError(f"TrainConfig.cooldown_steps must be in [0, max_steps={self.max_steps}], "
                             f"got {self.cooldown_steps}")


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to ``lr``, then inverse-square-root decay (needs no known end point).

    A run that is resumed with ``cooldown_steps`` set ends with a linear fall to zero over its last
    steps; annealing the noise of a still-high learning rate away is a cheap, large final gain.
    """
    s = step + 1
    lr = cfg.lr * min(s / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / s))
    if cfg.cooldown_steps:
        lr *= min(1.0, max(0.0, (cfg.max_steps - step) / cfg.cooldown_steps))
    return lr


def time_scale(cfg: TrainConfig, minutes: float) -> float:
    """Learning-rate factor of a time-budgeted run after ``minutes`` of training.

    With ``cooldown_minutes`` the rate falls linearly to 0 as ``max_minutes`` runs out: on a
    machine whose speed is not known in advance a step-based cool-down would be cut off or end
    early. A resumed run continues from the minutes stored in its checkpoint, but wall time is
    not reproducible, so it does not reach the same weights as an uninterrupted run.
    """
    if not cfg.cooldown_minutes:
        return 1.0
    return min(1.0, max(0.0, (cfg.max_minutes - minutes) / cfg.cooldown_minutes))


def feature_stats(items: list[Utterance], feature_cfg: FeatureConfig, limit: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and std of clean log-mel features over up to ``limit`` utterances.

    The utterances are a seeded random sample: manifests are grouped by voice, and stats from
    the first voice alone would misplace every other one.
    """
    pick = np.random.default_rng(0).permutation(len(items))[:limit]
    dataset = SpeechDataset([items[i] for i in pick], feature_cfg, Tokenizer(), None)
    feats = torch.cat([dataset[(i, 0)][0] for i in range(len(dataset))])
    return feats.mean(0), feats.std(0).clamp_min(1e-3)


def greedy_texts(model: AcousticModel, feats: torch.Tensor, lens: torch.Tensor, tokenizer: Tokenizer) -> list[str]:
    """Best-path transcripts of a padded batch (the same decode the streaming engine runs)."""
    log_probs, _ = model(feats.to(model.feat_mean.device))
    texts = []
    for row, n in zip(log_probs.cpu().numpy(), model.output_steps(lens).tolist()):
        tokens, _ = ctc.greedy(row[:n], tokenizer.blank, 0)
        texts.append(" ".join(tokenizer.decode([t.id for t in tokens]).split()))
    return texts


@torch.no_grad()
def validate(model: AcousticModel, items: list[Utterance], feature_cfg: FeatureConfig, tokenizer: Tokenizer) -> dict[str, float]:
    """WER and CER of greedy decoding on ``items``."""
    model.eval()
    dataset = SpeechDataset(items, feature_cfg, tokenizer, None)
    order = sorted(range(len(items)), key=lambda i: items[i].duration)
    refs, hyps = [], []
    for start in range(0, len(order), 32):
        batch = collate([dataset[(i, 0)] for i in order[start:start + 32]])
        hyps += greedy_texts(model, batch["feats"], batch["feat_lens"], tokenizer)
        refs += [items[i].text for i in order[start:start + 32]]
    model.train()
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


class Trainer:
    """Holds model, optimizer and data for one run; ``run()`` trains until a stop condition."""

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, aug_cfg: AugmentConfig,
                 feature_cfg: FeatureConfig = FeatureConfig()) -> None:
        torch.set_num_threads(cfg.threads)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise StreamAsrError(f"--device {cfg.device} was asked for, but torch {torch.__version__} sees no CUDA GPU")
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # float32 weights, faster matrix products
        self.cfg, self.aug_cfg, self.feature_cfg = cfg, aug_cfg, feature_cfg
        self.device_features = FeatureExtractor(feature_cfg).to(self.device)  # for --augment-on device
        self.tokenizer = Tokenizer()
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.items = read_manifest(cfg.train_manifest, cfg.max_duration)
        self.valid = read_manifest(cfg.valid_manifest)[: cfg.valid_max] if cfg.valid_manifest else []
        self.step, self.best_wer = 0, float("inf")
        self.minutes = 0.0  # wall minutes trained so far, over all resumptions: the --max-minutes budget
        self.metrics: dict[str, Any] = {}
        torch.manual_seed(cfg.seed)
        resumed = self.out / "last.pt"
        extra = self._resume(resumed) if resumed.is_file() else None
        if extra is None and cfg.init_from:
            self._init_from(Path(cfg.init_from), feature_cfg, model_cfg.lookahead)
        elif extra is None:
            self.model = AcousticModel(replace(model_cfg, vocab_size=len(self.tokenizer.vocab))).to(self.device)
            mean, std = feature_stats(self.items, feature_cfg)
            self.model.feat_mean.copy_(mean)
            self.model.feat_std.copy_(std)
        # Made once the model is on its device: restored optimizer state follows the parameters.
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if extra is not None:
            self.opt.load_state_dict(extra["optimizer"])
            torch.set_rng_state(extra["torch_rng"])

    def _resume(self, path: Path) -> dict[str, Any]:
        """Model, step, best WER and metrics from ``path``; returns the optimizer and RNG state to restore."""
        blob = read_checkpoint(path)
        self.model = AcousticModel(ModelConfig(**blob["model_config"]))
        self.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
        self.model.to(self.device)
        extra: dict[str, Any] = blob["extra"]
        self.step, self.best_wer = int(extra["step"]), float(extra["best_wer"])
        self.minutes = float(extra.get("minutes", 0.0))  # absent from checkpoints of before session 9
        self.metrics = blob["meta"].get("metrics", {})
        log.info("resumed %s at step %d", path, self.step)
        return extra

    def _init_from(self, path: Path, feature_cfg: FeatureConfig, lookahead: int) -> None:
        """Fine-tune: the checkpoint's weights, model config and feature normalisation (a new optimizer follows).

        A ``lookahead`` above the checkpoint's gives it that lookahead, starting out as the checkpoint.
        """
        model, _, tokenizer, _ = load_checkpoint(path, expect_features=feature_cfg)
        if tokenizer.vocab != self.tokenizer.vocab:
            raise StreamAsrError(f"{path}: vocabulary {''.join(tokenizer.vocab)!r} differs from this trainer's "
                                 f"{''.join(self.tokenizer.vocab)!r}; expected a checkpoint of the same alphabet")
        if lookahead > model.cfg.lookahead:
            model = with_lookahead(model, lookahead)
        self.model = model.train().to(self.device)
        log.info("initialised from %s (%s)", path, model.cfg)

    def meta(self) -> dict[str, Any]:
        return {
            "name": self.out.name,
            "train_config": asdict(self.cfg),
            "augment_config": self.aug_cfg.to_dict(),
            "train_data": manifest_stats(self.items),
            "valid_data": manifest_stats(self.valid),
            "steps": self.step,
            "metrics": self.metrics,
        }

    def save(self, name: str) -> None:
        extra = {"optimizer": self.opt.state_dict(), "torch_rng": torch.get_rng_state(),
                 "step": self.step, "best_wer": self.best_wer, "minutes": self.minutes}
        save_checkpoint(self.out / name, self.model, self.feature_cfg, self.tokenizer, self.meta(), extra=extra)

    def features_of(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(feats, feat_lens) of a batch on the training device: as collated, or made there from waveforms."""
        if "waves" not in batch:
            return batch["feats"].to(self.device, non_blocking=True), batch["feat_lens"].to(self.device)
        waves, lengths = batch["waves"].to(self.device, non_blocking=True), batch["wave_lens"].to(self.device)
        if batch["plans"][0] is None:  # no augmentation: log-mel only
            return self.device_features(waves), self.feature_cfg.frame_counts(lengths)
        return augment.augment_batch(waves, lengths, batch["plans"], self.device_features)

    def train_step(self, batch: dict[str, Any], scale: float = 1.0) -> float:
        """One optimizer step; ``scale`` multiplies the scheduled learning rate (time-based cool-down)."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, self.step) * scale
        feats, feat_lens = self.features_of(batch)
        batch = {"feats": feats, "feat_lens": feat_lens, "targets": batch["targets"].to(self.device),
                 "target_lens": batch["target_lens"].to(self.device)}
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            log_probs, _ = self.model(batch["feats"])
        log_probs = log_probs.float()  # the CTC loss in fp32 whatever the forward ran in
        out_lens = self.model.output_steps(batch["feat_lens"])
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), batch["targets"], out_lens,
                                            batch["target_lens"], blank=0, zero_infinity=True)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        self.step += 1
        return float(loss.detach())

    def evaluate_now(self) -> None:
        if not self.valid:
            return
        scores = validate(self.model, self.valid, self.feature_cfg, self.tokenizer)
        self.metrics = {"valid_wer": scores["wer"], "valid_cer": scores["cer"], "step": self.step}
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "time": time.time(), **scores}) + "\n")
        log.info("step %d valid WER %.3f CER %.3f", self.step, scores["wer"], scores["cer"])
        if scores["wer"] < self.best_wer:
            self.best_wer = scores["wer"]
            self.save("best.pt")

    def loader(self) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
        on_device = self.cfg.augment_on == "device"
        dataset = SpeechDataset(self.items, self.feature_cfg, self.tokenizer,
                                self.aug_cfg if self.cfg.augment else None, self.cfg.seed, on_device)
        sampler = StepSampler([u.duration for u in self.items], self.cfg.batch_seconds, self.cfg.seed, self.step)
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate_waves if on_device else collate,
            num_workers=self.cfg.workers,
            worker_init_fn=_one_thread, prefetch_factor=4 if self.cfg.workers else None,
            persistent_workers=False, pin_memory=self.device.type == "cuda",
        )

    def run(self) -> dict[str, Any]:
        """Train until ``max_steps`` or ``max_minutes``; returns the last metrics.

        A resumed run spends what is left of ``max_minutes`` (and continues its cool-down), not a
        new budget: the minutes trained so far are stored in every checkpoint.
        """
        self.model.train()
        began, audio_seconds, minutes_before = time.time(), 0.0, self.minutes
        bar = tqdm(total=self.cfg.max_steps, initial=self.step, desc="train", file=sys.stderr,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)
        for batch in self.loader():
            scale = time_scale(self.cfg, self.minutes)
            loss = self.train_step(batch, scale)
            audio_seconds += (float(batch["wave_lens"].sum()) / self.feature_cfg.sample_rate if "waves" in batch else
                              float(batch["feat_lens"].sum()) * self.feature_cfg.hop_length / self.feature_cfg.sample_rate)
            rate = audio_seconds / max(1e-6, time.time() - began)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr_at(self.cfg, self.step) * scale:.2e}", audio_s_per_s=f"{rate:.0f}")
            bar.update(1)
            self.minutes = minutes_before + (time.time() - began) / 60
            timed_out = self.cfg.max_minutes > 0 and self.minutes > self.cfg.max_minutes
            done = self.step >= self.cfg.max_steps or timed_out
            if self.step % self.cfg.eval_every == 0 or done:
                self.evaluate_now()
            if self.step % self.cfg.save_every == 0 or done:
                self.save("last.pt")
            if done:
                break
        bar.close()
        return self.metrics


def _one_thread(_: int) -> None:
    # Data workers must not compete with the training process for the two cores.
    torch.set_num_threads(1)


def export_model(src: str | Path | Sequence[str | Path], dst: str | Path, half: bool = True) -> None:
    """Write a training checkpoint without optimizer state, as float16 (a few MB).

    Several checkpoints of one architecture (say the best of successive fine-tunes) are averaged
    weight by weight: their mean can read better than each of them (the model card measures some).
    Checkpoints of a shorter lookahead are first widened to the longest (:func:`with_lookahead`:
    zero weights on the future they never read), so a lookahead fine-tune averages with its
    causal starting point.
    """
    srcs = [src] if isinstance(src, (str, Path)) else list(src)
    if not srcs:
        raise ValueError("export needs at least one checkpoint")
    loaded = [load_checkpoint(path) for path in srcs]
    lookahead = max(m.cfg.lookahead for m, _, _, _ in loaded)
    loaded = [(with_lookahead(m, lookahead) if m.cfg.lookahead < lookahead else m, f, t, meta)
              for m, f, t, meta in loaded]
    model, feature_cfg, tokenizer, meta = loaded[0]
    for path, (other, other_features, other_tokenizer, _) in zip(srcs[1:], loaded[1:]):
        if (other.cfg, other_features, other_tokenizer) != (model.cfg, feature_cfg, tokenizer):
            raise ModelError(f"cannot average {path} with {srcs[0]}: model {other.cfg}, features {other_features}, "
                             f"vocabulary {len(other_tokenizer.vocab)}; expected those of {srcs[0]}: {model.cfg}, "
                             f"{feature_cfg}, {len(tokenizer.vocab)}")
    if len(loaded) > 1:
        states = [m.state_dict() for m, _, _, _ in loaded]
        model.load_state_dict({k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v
                               for k, v in states[0].items()})
        meta = {**meta, "averaged_from": [str(path) for path in srcs]}
    save_checkpoint(dst, model, feature_cfg, tokenizer, meta, half=half)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from streamasr.options import add_dataclass_options

    p = sub.add_parser("train", help="train a CTC model on manifests (resumes from OUT_DIR/last.pt)")
    add_dataclass_options(p, TrainConfig)
    add_dataclass_options(p, ModelConfig, prefix="model_")
    add_dataclass_options(p, AugmentConfig, prefix="aug_")
    p.add_argument("--export", nargs="+", metavar="CHECKPOINT",
                   help="instead of training, write CHECKPOINT (or the weight average of several) as a float16 "
                        "inference model to DEST, the last path given")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from streamasr.options import dataclass_from_args

    if args.export:
        if len(args.export) < 2:
            raise ValueError(f"--export takes CHECKPOINT [CHECKPOINT ...] DEST, got {len(args.export)} path: "
                             f"{args.export[0]!r}")
        export_model(args.export[:-1], args.export[-1])
        return 0
    cfg = dataclass_from_args(TrainConfig, args)
    if not cfg.train_manifest:
        raise ValueError("--train-manifest is required (a JSON-lines manifest of training audio)")
    model_cfg = dataclass_from_args(ModelConfig, args, prefix="model_")
    metrics = Trainer(cfg, model_cfg, dataclass_from_args(AugmentConfig, args, prefix="aug_")).run()
    print(json.dumps(metrics))
    return 0
