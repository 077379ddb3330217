"""Training data: JSON-lines manifests, a seeded augmenting dataset and duration-bucketed batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile as sf
import torch

from streamasr.training import augment

from streamasr.engine.audio import SAMPLE_RATE, load_audio
from streamasr.training.augment import AugmentConfig
from streamasr.manifest import Utterance
from streamasr.engine.features import FeatureConfig, FeatureExtractor
from streamasr.engine.text import Tokenizer


def mix(items: list[Utterance], weights: dict[str, float]) -> list[Utterance]:
    """Re-weight voices in a training list, deterministically.

    The utterances of a voice that starts with a key of ``weights`` (longest key wins) appear
    ``w`` times on average: 2 repeats each, 0.5 keeps every second, 1.5 repeats every second one;
    other voices once. The i-th utterance of a group appears ceil((i+1)w) - ceil(iw) times, so
    fractional weights are spread evenly over the group. Duplicate audio paths are dropped first.
    """
    for key, weight in weights.items():
        if not key or weight < 0:
            raise ValueError(f"voice weight {key!r}={weight} must name a voice prefix and be >= 0")
    seen: set[str] = set()
    index: dict[str, int] = {}
    out: list[Utterance] = []
    for u in items:
        if u.audio in seen:
            continue
        seen.add(u.audio)
        key = max((k for k in weights if u.voice.startswith(k)), key=len, default="")
        weight = weights.get(key, 1.0)
        i = index[key] = index.get(key, -1) + 1
        out += [u] * (math.ceil((i + 1) * weight) - math.ceil(i * weight))
    return out


def read_pcm(path: str) -> np.ndarray:
    """Fast path for the corpus' 16 kHz WAVs; anything else goes through ``load_audio``."""
    try:
        audio, rate = sf.read(path, dtype="float32")
        if rate == SAMPLE_RATE and audio.ndim == 1:
            return audio
    except (sf.LibsndfileError, RuntimeError):
        pass
    return load_audio(path)


class SpeechDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Yields (log-mel (frames, n_mels), target ids) for an (index, step) pair.

    The augmentation RNG is seeded from (seed, step, index), so the same batch always comes out
    the same, in any worker and after any resume. With ``on_device`` the items are (waveform,
    target ids, augmentation plan or None) instead: the waveform only read, trimmed and
    speed-perturbed, for ``collate_waves`` and ``augment.augment_batch`` on the training device.
    """

    def __init__(self, items: list[Utterance], feature_cfg: FeatureConfig, tokenizer: Tokenizer,
                 aug: AugmentConfig | None, seed: int = 0, on_device: bool = False) -> None:
        self.items, self.tokenizer, self.aug, self.seed = items, tokenizer, aug, seed
        self.feature_cfg, self.on_device = feature_cfg, on_device
        self.features = FeatureExtractor(feature_cfg)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, ...]:
        index, step = key
        utt = self.items[index]
        audio = read_pcm(utt.audio)
        target = torch.tensor(self.tokenizer.encode(utt.text), dtype=torch.long)
        plan = None
        if self.aug is not None:
            rng = np.random.default_rng([self.seed, step, index])
            audio, plan = augment.prepare(audio, self.aug, rng, augment.strength_at(self.aug, step),
                                          self.feature_cfg.n_mels, self.feature_cfg.num_frames)
        if self.on_device:
            return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), target, plan
        if plan is not None:
            audio = augment.apply_waveform(audio, plan)
        feats = self.features(torch.from_numpy(np.ascontiguousarray(audio)))
        if plan is not None:
            feats = augment.apply_features(feats, plan)
        return feats, target


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a batch: feats (B, T, n_mels), feat_lens (B,), targets (sum L,), target_lens (B,)."""
    feats = torch.nn.utils.rnn.pad_sequence([b[0] for b in batch], batch_first=True)
    return {
        "feats": feats,
        "feat_lens": torch.tensor([len(b[0]) for b in batch]),
        "targets": torch.cat([b[1] for b in batch]),
        "target_lens": torch.tensor([len(b[1]) for b in batch]),
    }


def collate_waves(batch: list[tuple[torch.Tensor, torch.Tensor, augment.Plan | None]]) -> dict[str, Any]:
    """Pad an ``on_device`` batch: waves (B, N), wave_lens (B,), targets, target_lens, plans (list)."""
    return {
        "waves": torch.nn.utils.rnn.pad_sequence([b[0] for b in batch], batch_first=True),
        "wave_lens": torch.tensor([len(b[0]) for b in batch]),
        "targets": torch.cat([b[1] for b in batch]),
        "target_lens": torch.tensor([len(b[1]) for b in batch]),
        "plans": [b[2] for b in batch],
    }


def bucket_batches(durations: list[float], batch_seconds: float, seed: int, epoch: int) -> list[list[int]]:
    """Sort by duration, cut into batches of at most ``batch_seconds`` of audio, shuffle batches.

    Similar lengths in a batch waste little padding; the order depends only on (seed, epoch).
    """
    rng = np.random.default_rng([seed, epoch])
    # A little jitter before sorting so the batches differ between epochs.
    keys = np.asarray(durations) * rng.uniform(0.95, 1.05, len(durations))
    order = np.argsort(keys, kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        longest = max(longest, durations[i])
        if current and longest * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current, longest = [], durations[i]
        current.append(int(i))
    if current:
        batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


class StepSampler(torch.utils.data.Sampler):  # type: ignore[type-arg]
    """Batch sampler that yields [(index, step), ...] from a given global step onwards (resume)."""

    def __init__(self, durations: list[float], batch_seconds: float, seed: int, start_step: int) -> None:
        self.durations, self.batch_seconds, self.seed, self.start_step = durations, batch_seconds, seed, start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step, epoch = 0, 0
        while True:
            for batch in bucket_batches(self.durations, self.batch_seconds, self.seed, epoch):
                if step >= self.start_step:
                    yield [(i, step) for i in batch]
                step += 1
            epoch += 1

    def __len__(self) -> int:
        return 1 << 62

    def epoch_of(self, step: int) -> float:
        per_epoch = len(bucket_batches(self.durations, self.batch_seconds, self.seed, 0))
        return step / max(1, per_epoch)
