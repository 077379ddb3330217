from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_script

from streamasr.training.data import SpeechDataset, StepSampler, bucket_batches, collate, mix, read_pcm

from streamasr.manifest import Utterance, read_manifest, write_manifest
from streamasr.errors import StreamAsrError
from streamasr.engine.features import FeatureConfig
from streamasr.engine.text import Tokenizer

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


def test_mix_weights_voices_evenly_and_drops_duplicate_files() -> None:
    def utts(voice: str, n: int) -> list[Utterance]:
        return [Utterance(f"/{voice}/{i}.wav", "x", 1.0, voice) for i in range(n)]

    items = utts("espeak", 6) + utts("kokoro_af_bella", 3) + utts("kokoro_bm_lewis", 1) + utts("flite_rms", 2)
    mixed = mix(items + utts("flite_rms", 2), {"espeak": 0.5, "kokoro": 2, "kokoro_bm": 0})
    counts = {a: sum(u.audio == a for u in mixed) for a in {u.audio for u in items}}
    assert [counts[f"/espeak/{i}.wav"] for i in range(6)] == [1, 0, 1, 0, 1, 0]
    assert [counts[f"/kokoro_af_bella/{i}.wav"] for i in range(3)] == [2, 2, 2]
    assert counts["/kokoro_bm_lewis/0.wav"] == 0  # the longest matching prefix wins
    assert counts["/flite_rms/0.wav"] == counts["/flite_rms/1.wav"] == 1  # listed twice, counted once
    with pytest.raises(ValueError, match=r"voice weight 'kokoro'=-1"):
        mix(items, {"kokoro": -1})


def test_mix_manifest_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("mix_manifest")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_manifest(a, [Utterance(str(tmp_path / f"{i}.wav"), "x", 1.0, "flite_rms") for i in range(2)])
    write_manifest(b, [Utterance(str(tmp_path / "k.wav"), "y", 2.0, "kokoro_af_sky")])
    assert script.main([str(a), str(b), "--weight", "kokoro=3", "--out", str(tmp_path / "m.jsonl")]) == 0
    assert [u.voice for u in read_manifest(tmp_path / "m.jsonl")].count("kokoro_af_sky") == 3
    assert "5 utterances" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main([str(a), "--weight", "kokoro", "--out", str(tmp_path / "x.jsonl")])
    assert "expected VOICE_PREFIX=WEIGHT such as kokoro=2, got 'kokoro'" in capsys.readouterr().err
    assert script.main([str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_pack_and_unpack_corpus_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("pack_corpus")
    assets = Path(__file__).parents[1] / "assets"
    rms = Utterance(str(assets / "sample_flite_rms.wav"), "live captions", 3.77, "flite_rms")
    espeak = Utterance(str(assets / "sample_espeak_stereo_22k.flac"), "streaming speech", 3.66, "espeak")
    write_manifest(tmp_path / "m.jsonl", [rms, rms, espeak])  # rms weighted twice
    assert script.main([str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "packed"), "--max-mb", "2",
                        "--max-mb", "2", "--jobs", "1"]) == 0
    zips = [tmp_path / "packed" / f"part{part}.zip" for part in (1, 2)]
    for path in zips:
        assert path.stat().st_size < 2e6
    assert "3 lines" in capsys.readouterr().out
    unpack = load_script("unpack_corpus")
    for path in zips:  # one run per zip, as when each arrives in its own upload
        assert unpack.main([str(path), "--out", str(tmp_path / "data"), "--jobs", "1"]) == 0
    assert "3 lines from 2 parts" in capsys.readouterr().out
    packed = read_manifest(tmp_path / "data" / "train.jsonl")
    assert sorted(u.text for u in packed) == ["live captions", "live captions", "streaming speech"]
    for u in packed:  # decoded to WAV: 16 kHz mono audio of the original length
        assert u.audio.endswith(".wav") and abs(len(read_pcm(u.audio)) / 16000 - u.duration) < 0.1
    assert not list((tmp_path / "data").glob("part*/*.opus"))
    assert unpack.main([str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "data")]) == 2
    assert "m.jsonl is not a zip file" in capsys.readouterr().err
    assert script.main([str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "x"), "--max-mb", "2", "--level", "2"]) == 2
    assert "expected --level in [0, 1]" in capsys.readouterr().err
    assert script.main([str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "x"), "--max-mb", "2"]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err
