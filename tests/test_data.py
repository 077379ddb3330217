from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from streamasr.data import SpeechDataset, StepSampler, Utterance, bucket_batches, collate, read_manifest, write_manifest
from streamasr.errors import StreamAsrError
from streamasr.features import FeatureConfig
from streamasr.text import Tokenizer


def test_manifest_round_trip_and_relative_paths(tmp_path: Path, speech_wav: Path) -> None:
    items = [Utterance(str(speech_wav), "hello world", 3.7, "rms")]
    write_manifest(tmp_path / "m.jsonl", items)
    assert read_manifest(tmp_path / "m.jsonl") == items
    (tmp_path / "r.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "x", "duration": 1}) + "\n")
    assert read_manifest(tmp_path / "r.jsonl")[0].audio == str(tmp_path / "a.wav")


def test_bad_manifest_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"audio": "a.wav", "text": "x", "duration": 1}\n{"audio": "b.wav"}\n')
    with pytest.raises(StreamAsrError, match=r"bad.jsonl:2: bad manifest line"):
        read_manifest(path)


def test_buckets_cover_everything_once_and_respect_budget() -> None:
    durations = [float(d) for d in range(1, 40)]
    batches = bucket_batches(durations, 60.0, seed=0, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(durations)))
    for b in batches:
        assert len(b) == 1 or max(durations[i] for i in b) * len(b) <= 60.0
    assert bucket_batches(durations, 60.0, 0, 0) == batches
    assert bucket_batches(durations, 60.0, 0, 1) != batches


def test_step_sampler_resumes_at_the_same_batch() -> None:
    durations = [1.0 + (i % 7) for i in range(50)]
    full = StepSampler(durations, 12.0, seed=3, start_step=0)
    it = iter(full)
    first = [next(it) for _ in range(30)]
    resumed = iter(StepSampler(durations, 12.0, seed=3, start_step=20))
    assert [next(resumed) for _ in range(10)] == first[20:]


def test_dataset_and_collate(speech_wav: Path) -> None:
    items = [Utterance(str(speech_wav), "live captions", 3.7)] * 2
    ds = SpeechDataset(items, FeatureConfig(), Tokenizer(), None)
    feats, target = ds[(0, 0)]
    assert feats.shape[1] == 80 and feats.shape[0] > 300
    assert Tokenizer().decode(target.tolist()) == "live captions"
    batch = collate([ds[(0, 0)], ds[(1, 0)]])
    assert batch["feats"].shape[0] == 2 and batch["targets"].dtype == torch.long
    assert batch["target_lens"].tolist() == [13, 13]
