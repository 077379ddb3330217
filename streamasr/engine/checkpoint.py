"""Checkpoints: model weights plus every config needed to rebuild the model without training code."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch

from streamasr.errors import ModelError
from streamasr.engine.features import FeatureConfig
from streamasr.engine.model import AcousticModel, ModelConfig
from streamasr.engine.text import Tokenizer

FORMAT_VERSION = 1


def default_model_path() -> Path:
    """The bundled default model (package data, so it works from a wheel as well as a checkout)."""
    return Path(str(resources.files("streamasr") / "models" / "default.pt"))


def save_checkpoint(
    path: str | Path,
    model: AcousticModel,
    feature_cfg: FeatureConfig,
    tokenizer: Tokenizer,
    meta: dict[str, Any] | None = None,
    half: bool = False,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a self-describing checkpoint atomically.

    Args:
        meta: description of training data, training config and metrics (JSON-like).
        half: store weights as float16 (halves the file; loading converts back to float32).
        extra: training-only state (optimizer, step, RNG) for resuming; ignored by inference.
    """
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    blob = {
        "format": FORMAT_VERSION,
        "model_config": model.cfg.to_dict(),
        "feature_config": feature_cfg.to_dict(),
        "vocab": list(tokenizer.vocab),
        "state_dict": state,
        "meta": meta or {},
        **({"extra": extra} if extra else {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the raw checkpoint dict, with a clear error for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; expected a streamasr checkpoint (.pt)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise ModelError(f"{path} is not a readable checkpoint: {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ModelError(f"{path}: checkpoint format {got!r}, expected streamasr format {FORMAT_VERSION}")
    return blob


def load_checkpoint(
    path: str | Path | None = None, expect_features: FeatureConfig | None = None
) -> tuple[AcousticModel, FeatureConfig, Tokenizer, dict[str, Any]]:
    """Rebuild model, feature config, tokenizer and metadata from a checkpoint.

    Args:
        path: checkpoint file; the bundled default model when None.
        expect_features: refuse a checkpoint whose feature config differs from this one.
    """
    if path is None:
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"no model given and the bundled default model {path} is not installed; "
                             "expected --model PATH naming a streamasr checkpoint (.pt)")
    path = Path(path)
    blob = read_checkpoint(path)
    try:
        model_cfg = ModelConfig(**blob["model_config"])
        feature_cfg = FeatureConfig(**blob["feature_config"])
        tokenizer = Tokenizer(tuple(blob["vocab"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: invalid configuration in checkpoint: {e}") from e
    if expect_features is not None and feature_cfg != expect_features:
        raise ModelError(
            f"{path}: feature config {feature_cfg} does not match the expected {expect_features}"
        )
    if model_cfg.n_mels != feature_cfg.n_mels or model_cfg.vocab_size != len(tokenizer.vocab):
        raise ModelError(
            f"{path}: model expects n_mels={model_cfg.n_mels}, vocab={model_cfg.vocab_size} but the "
            f"checkpoint has n_mels={feature_cfg.n_mels}, vocab={len(tokenizer.vocab)}"
        )
    model = AcousticModel(model_cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()
    return model, feature_cfg, tokenizer, blob.get("meta", {})
