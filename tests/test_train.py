from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from streamasr.training.augment import AugmentConfig
from streamasr.engine.checkpoint import load_checkpoint, read_checkpoint
from streamasr.cli import main
from streamasr.manifest import Utterance, write_manifest
from streamasr.engine.model import ModelConfig
from streamasr.errors import ModelError, StreamAsrError
from streamasr.training.train import TrainConfig, Trainer, export_model, lr_at, time_scale

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SMALL = ModelConfig(hidden=24, layers=1, dropout=0.0)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    items = [
        Utterance(str(ASSETS / "sample_flite_rms.wav"), "live captions appear while the speaker is still talking", 3.77, "rms"),
        Utterance(str(ASSETS / "sample_espeak_stereo_22k.flac"), "streaming speech recognition turns audio into words", 3.66, "espeak"),
    ]
    write_manifest(tmp_path / "train.jsonl", items)
    return tmp_path / "train.jsonl"


def config(manifest: Path, out: Path, steps: int, **kw: object) -> TrainConfig:
    return TrainConfig(train_manifest=str(manifest), valid_manifest=str(manifest), out_dir=str(out),
                       batch_seconds=8.0, lr=3e-3, warmup_steps=2, max_steps=steps, workers=0,
                       threads=1, save_every=1, eval_every=1000, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_few_steps_reduce_the_loss_and_keep_fp32_weights(manifest: Path, tmp_path: Path, precision: str) -> None:
    trainer = Trainer(config(manifest, tmp_path / "run", 40, augment=False, precision=precision), SMALL, AugmentConfig())
    batch = next(iter(trainer.loader()))
    before = trainer.train_step(batch)
    for _ in range(30):
        after = trainer.train_step(batch)
    assert after < before * 0.8
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}


@pytest.mark.parametrize("augment_on", ["workers", "device"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(manifest: Path, tmp_path: Path, augment_on: str) -> None:
    Trainer(config(manifest, tmp_path / "full", 6, augment_on=augment_on), SMALL, AugmentConfig()).run()
    Trainer(config(manifest, tmp_path / "split", 3, augment_on=augment_on), SMALL, AugmentConfig()).run()
    resumed = Trainer(config(manifest, tmp_path / "split", 6, augment_on=augment_on), SMALL, AugmentConfig())
    assert resumed.step == 3
    resumed.run()
    full = read_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    split = read_checkpoint(tmp_path / "split" / "last.pt")["state_dict"]
    for name in full:
        torch.testing.assert_close(full[name], split[name], rtol=0, atol=1e-6, msg=name)


def test_augment_on_device_gets_the_workers_features(manifest: Path, tmp_path: Path) -> None:
    """--augment-on device: the same plans, applied to the batch by the trainer, give what the workers give."""
    # Noise comes from another generator on the device, and the telephone's 8-bit mu-law turns
    # rounding-level differences into whole quantisation steps.
    aug = AugmentConfig(p_noise=0.0, p_telephone=0.0, warmup_steps=1)
    on_workers = Trainer(config(manifest, tmp_path / "a", 5), SMALL, aug)
    on_device = Trainer(config(manifest, tmp_path / "b", 5, augment_on="device"), SMALL, aug)
    for batch, waves in itertools.islice(zip(on_workers.loader(), on_device.loader()), 4):  # endless sampler
        assert "waves" in waves and len(waves["plans"]) == len(batch["feat_lens"])
        feats, feat_lens = on_device.features_of(waves)
        assert torch.equal(feat_lens, batch["feat_lens"])
        for i, n in enumerate(feat_lens.tolist()):
            got, want = feats[i, :n], batch["feats"][i, :n]
            assert float((got - want).abs().mean()) < 1e-3  # float rounding (tests/test_augment.py)
    plain = Trainer(config(manifest, tmp_path / "c", 5, augment=False, augment_on="device"), SMALL, aug)
    batch = next(iter(plain.loader()))
    assert batch["plans"] == [None] * len(batch["plans"])
    assert plain.train_step(batch) > 0


def test_augment_on_is_checked() -> None:
    with pytest.raises(ValueError, match="TrainConfig.augment_on must be 'workers' or 'device', got 'gpu'"):
        TrainConfig(augment_on="gpu")  # type: ignore[arg-type]


def test_checkpoint_describes_data_and_metrics(manifest: Path, tmp_path: Path) -> None:
    Trainer(config(manifest, tmp_path / "run", 2), SMALL, AugmentConfig()).run()
    _, _, _, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["train_data"]["utterances"] == 2
    assert set(meta["train_data"]["voices"]) == {"rms", "espeak"}
    assert "valid_wer" in meta["metrics"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 2


def test_cli_train_and_export(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    assert main(["train", "--train-manifest", str(manifest), "--out-dir", str(out), "--max-steps", "1",
                 "--workers", "0", "--threads", "1", "--model-hidden", "16", "--model-layers", "1"]) == 0
    assert main(["train", "--export", str(out / "last.pt"), str(tmp_path / "small.pt")]) == 0
    blob = read_checkpoint(tmp_path / "small.pt")
    assert "extra" not in blob
    assert blob["state_dict"]["out.weight"].dtype == torch.float16


def test_export_averages_several_checkpoints(manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, steps in (("a", 1), ("b", 3)):
        Trainer(config(manifest, tmp_path / name, steps), SMALL, AugmentConfig()).run()
    paths = [str(tmp_path / name / "last.pt") for name in ("a", "b")]
    assert main(["train", "--export", *paths, str(tmp_path / "mean.pt")]) == 0
    mean, _, _, meta = load_checkpoint(tmp_path / "mean.pt")
    assert meta["averaged_from"] == paths
    a, b = (load_checkpoint(path)[0].state_dict() for path in paths)
    assert not torch.equal(a["out.weight"], b["out.weight"])
    for name, value in mean.state_dict().items():  # stored as float16
        torch.testing.assert_close(value, ((a[name] + b[name]) / 2).half().float(), msg=name)
    Trainer(config(manifest, tmp_path / "wide", 1), ModelConfig(hidden=32, layers=1, dropout=0.0), AugmentConfig()).run()
    with pytest.raises(ModelError, match=r"cannot average .*wide/last.pt with .*a/last.pt: model ModelConfig\(.*hidden=32"):
        export_model([paths[0], str(tmp_path / "wide" / "last.pt")], tmp_path / "bad.pt")
    assert main(["train", "--export", paths[0]]) == 2
    assert "--export takes CHECKPOINT [CHECKPOINT ...] DEST, got 1 path" in capsys.readouterr().err


def test_export_averages_a_causal_with_a_lookahead_checkpoint(manifest: Path, tmp_path: Path) -> None:
    Trainer(config(manifest, tmp_path / "causal", 1), SMALL, AugmentConfig()).run()
    Trainer(config(manifest, tmp_path / "ahead", 2), replace(SMALL, lookahead=2), AugmentConfig()).run()
    paths = [str(tmp_path / "causal" / "last.pt"), str(tmp_path / "ahead" / "last.pt")]
    export_model(paths, tmp_path / "mean.pt")
    mean, _, _, _ = load_checkpoint(tmp_path / "mean.pt")
    causal, ahead = (load_checkpoint(path)[0] for path in paths)
    assert mean.cfg == ahead.cfg
    wide = causal.proj.weight.shape[1]
    assert ahead.proj.weight.shape[1] == 3 * wide  # the present stack and two future ones
    got = mean.proj.weight.detach()
    # The causal model reads no future: its half of the future weights is zero.
    torch.testing.assert_close(got[:, wide:], (ahead.proj.weight[:, wide:] / 2).detach().half().float())
    torch.testing.assert_close(got[:, :wide], ((causal.proj.weight + ahead.proj.weight[:, :wide]) / 2).detach()
                               .half().float())


def test_init_from_fine_tunes_a_checkpoint(manifest: Path, tmp_path: Path) -> None:
    Trainer(config(manifest, tmp_path / "base", 2), SMALL, AugmentConfig()).run()
    export_model(tmp_path / "base" / "last.pt", tmp_path / "base.pt")
    base, _, _, _ = load_checkpoint(tmp_path / "base.pt")
    # The checkpoint's own model config wins over the (different) one passed in.
    tuned = Trainer(config(manifest, tmp_path / "tuned", 3, init_from=str(tmp_path / "base.pt")),
                    ModelConfig(hidden=64, layers=2), AugmentConfig())
    assert tuned.step == 0 and tuned.model.cfg == base.cfg
    for name, value in base.state_dict().items():
        torch.testing.assert_close(tuned.model.state_dict()[name], value, msg=name)
    tuned.run()
    assert read_checkpoint(tmp_path / "tuned" / "last.pt")["meta"]["train_config"]["init_from"] == str(tmp_path / "base.pt")
    with pytest.raises(ModelError, match=r"model file .*nope.pt does not exist"):
        Trainer(config(manifest, tmp_path / "bad", 1, init_from=str(tmp_path / "nope.pt")), SMALL, AugmentConfig())


def test_init_from_with_a_lookahead_starts_as_the_causal_checkpoint(manifest: Path, tmp_path: Path) -> None:
    Trainer(config(manifest, tmp_path / "base", 2), SMALL, AugmentConfig()).run()
    export_model(tmp_path / "base" / "last.pt", tmp_path / "base.pt")
    base, _, _, _ = load_checkpoint(tmp_path / "base.pt")
    tuned = Trainer(config(manifest, tmp_path / "tuned", 3, init_from=str(tmp_path / "base.pt")),
                    ModelConfig(lookahead=2), AugmentConfig())
    assert tuned.model.cfg == replace(base.cfg, lookahead=2)
    frames = torch.randn(1, 40, 80)
    with torch.no_grad():
        want, _ = base.float().eval()(frames)
        got, _ = tuned.model.eval()(frames)
    torch.testing.assert_close(got, want[:, :8], atol=1e-5, rtol=0)
    tuned.run()
    assert read_checkpoint(tmp_path / "tuned" / "last.pt")["model_config"]["lookahead"] == 2


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(warmup_steps=10, lr=1e-3)
    assert lr_at(cfg, 0) < lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 39) == pytest.approx(5e-4)


def test_cooldown_falls_linearly_to_zero_at_the_end() -> None:
    plain = TrainConfig(warmup_steps=10, lr=1e-3, max_steps=100)
    cool = TrainConfig(warmup_steps=10, lr=1e-3, max_steps=100, cooldown_steps=20)
    assert lr_at(cool, 79) == lr_at(plain, 79)
    assert lr_at(cool, 90) == pytest.approx(lr_at(plain, 90) * 0.5)
    assert lr_at(cool, 100) == 0.0
    with pytest.raises(ValueError, match=r"cooldown_steps must be in \[0, max_steps=100\], got 200"):
        TrainConfig(max_steps=100, cooldown_steps=200)


def test_time_cooldown_falls_linearly_to_zero_as_the_minutes_run_out() -> None:
    assert time_scale(TrainConfig(max_minutes=10), 9.9) == 1.0  # no cool-down asked for
    cool = TrainConfig(max_minutes=10, cooldown_minutes=4)
    assert time_scale(cool, 0) == 1.0
    assert time_scale(cool, 6) == 1.0
    assert time_scale(cool, 8) == pytest.approx(0.5)
    assert time_scale(cool, 11) == 0.0
    with pytest.raises(ValueError, match=r"cooldown_minutes needs max_minutes > 0"):
        TrainConfig(cooldown_minutes=2)
    with pytest.raises(ValueError, match=r"max_minutes=3\], got 4"):
        TrainConfig(max_minutes=3, cooldown_minutes=4)


def test_a_resumed_run_spends_what_is_left_of_its_minutes(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(config(manifest, out, 2), SMALL, AugmentConfig()).run()
    blob = read_checkpoint(out / "last.pt")
    assert 0 < blob["extra"]["minutes"] < 5
    blob["extra"]["minutes"] = 9.999  # as if interrupted 0.06 s before the end of a 10-minute budget
    torch.save(blob, out / "last.pt")
    resumed = Trainer(config(manifest, out, 100, max_minutes=10, cooldown_minutes=4), SMALL, AugmentConfig())
    assert resumed.minutes == 9.999
    resumed.run()
    assert 3 <= resumed.step < 100  # stopped by the budget left, not by max_steps
    assert resumed.opt.param_groups[0]["lr"] < lr_at(resumed.cfg, 2) * 0.01  # deep in the cool-down
    assert read_checkpoint(out / "last.pt")["extra"]["minutes"] > 10


def test_time_cooldown_scales_the_learning_rate_of_a_step(manifest: Path, tmp_path: Path) -> None:
    trainer = Trainer(config(manifest, tmp_path / "run", 3), SMALL, AugmentConfig())
    batch = next(iter(trainer.loader()))
    trainer.train_step(batch, scale=0.25)
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(lr_at(trainer.cfg, 0) * 0.25)


def test_device_is_checked() -> None:
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda\[:N\]', got 'tpu'"):
        TrainConfig(device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(StreamAsrError, match=r"--device cuda was asked for, but torch .* sees no CUDA GPU"):
        Trainer(config(manifest, tmp_path / "run", 1, device="cuda"), SMALL, AugmentConfig())


def test_precision_is_checked() -> None:
    with pytest.raises(ValueError, match=r"precision must be 'fp32' or 'bf16', got 'fp16'"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]


def test_config_error_text() -> None:
    with pytest.raises(ValueError, match=r"TrainConfig.lr must be > 0, got -1"):
        TrainConfig(lr=-1)
