"""Checkpoints: round trip (fp32 and fp16), refusal of foreign feature configs and broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamasr.engine.checkpoint import default_model_path, load_checkpoint, read_checkpoint, save_checkpoint
from streamasr.errors import ModelError
from streamasr.engine.features import FeatureConfig
from streamasr.engine.model import AcousticModel, ModelConfig
from streamasr.engine.text import Tokenizer


def _model() -> AcousticModel:
    torch.manual_seed(1)
    model = AcousticModel(ModelConfig(hidden=16, layers=1, dropout=0.0))
    model.feat_mean.fill_(-3.0)  # buffers travel too
    return model.eval()


def test_round_trip(tmp_path: Path) -> None:
    model = _model()
    save_checkpoint(tmp_path / "m.pt", model, FeatureConfig(), Tokenizer(), {"name": "x", "wer": 0.5},
                    extra={"step": 7})
    loaded, feature_cfg, tokenizer, meta = load_checkpoint(tmp_path / "m.pt")
    assert loaded.cfg == model.cfg and feature_cfg == FeatureConfig() and tokenizer == Tokenizer()
    assert meta == {"name": "x", "wer": 0.5} and not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, atol=0, rtol=0)
    assert read_checkpoint(tmp_path / "m.pt")["extra"] == {"step": 7}
    assert not (tmp_path / "m.pt.tmp").exists()


def test_half_round_trip(tmp_path: Path) -> None:
    model = _model()
    save_checkpoint(tmp_path / "full.pt", model, FeatureConfig(), Tokenizer())
    save_checkpoint(tmp_path / "half.pt", model, FeatureConfig(), Tokenizer(), half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.7 * (tmp_path / "full.pt").stat().st_size
    loaded, *_ = load_checkpoint(tmp_path / "half.pt")
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == value.dtype  # float32 again after loading
        torch.testing.assert_close(got, value, atol=2e-3, rtol=1e-3)


def test_mismatched_feature_config_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m.pt", _model(), FeatureConfig(), Tokenizer())
    expected = FeatureConfig(hop_length=200)
    with pytest.raises(ModelError, match="feature config .*hop_length=160.* does not match the expected "
                                         ".*hop_length=200"):
        load_checkpoint(tmp_path / "m.pt", expect_features=expected)
    load_checkpoint(tmp_path / "m.pt", expect_features=FeatureConfig())  # equal: accepted


def test_model_and_features_must_agree(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m.pt", _model(), FeatureConfig(n_mels=40), Tokenizer())
    with pytest.raises(ModelError, match="model expects n_mels=80, vocab=29 but the checkpoint has n_mels=40"):
        load_checkpoint(tmp_path / "m.pt")


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="nope.pt does not exist; expected a streamasr checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="junk.pt is not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": 99}, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="checkpoint format 99, expected streamasr format 1"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="checkpoint format 'list'"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"format": 1, "model_config": {"hidden": 1}}, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="invalid configuration in checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_default_model_is_package_data() -> None:
    path = default_model_path()
    assert path.name == "default.pt" and path.parent.name == "models"
    assert path.parent.parent.name == "streamasr"
