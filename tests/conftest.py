"""Shared fixtures: real audio files from assets/ and a tiny seeded random model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamasr.checkpoint import save_checkpoint
from streamasr.features import FeatureConfig
from streamasr.model import AcousticModel, ModelConfig
from streamasr.stream import Recognizer
from streamasr.text import Tokenizer

# One torch thread: a second intra-op thread stalls whenever another process holds a core on
# these 2-vCPU machines, which made the suite ~7x slower.
torch.set_num_threads(1)

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def make_tiny_model(seed: int = 0) -> AcousticModel:
    """A small random GRU whose sharpened output layer emits plenty of characters."""
    torch.manual_seed(seed)
    model = AcousticModel(ModelConfig(hidden=32, layers=2, dropout=0.0))
    with torch.no_grad():
        model.out.weight.mul_(20.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, make_tiny_model(), FeatureConfig(), Tokenizer(), {"name": "tiny"})
    return path


@pytest.fixture(scope="session")
def tiny_recognizer(tiny_model_path: Path) -> Recognizer:
    return Recognizer.load(tiny_model_path)


@pytest.fixture(scope="session")
def speech_wav() -> Path:
    """A real 16 kHz mono speech file (synthetic voice)."""
    return ASSETS / "sample_flite_rms.wav"


@pytest.fixture(scope="session")
def real_speech_flac() -> Path:
    """A real human voice, 16 kHz FLAC."""
    return ASSETS / "sample_allison_real.flac"
