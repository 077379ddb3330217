"""Shared fixtures: real audio files from assets/, a tiny seeded random model and a tiny LM."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from streamasr.training import lm_build
from streamasr.engine.beam import DecoderConfig
from streamasr.engine.checkpoint import save_checkpoint
from streamasr.engine.features import FeatureConfig
from streamasr.engine.model import AcousticModel, ModelConfig
from streamasr.engine.stream import Recognizer
from streamasr.engine.text import Tokenizer

# One torch thread: a second intra-op thread stalls whenever another process holds a core on
# these 2-vCPU machines, which made the suite ~7x slower.
torch.set_num_threads(1)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str) -> ModuleType:
    """A script of scripts/ as a module, so that its ``main`` can be called in-process."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def make_tiny_model(seed: int = 0, lookahead: int = 0) -> AcousticModel:
    """A small random GRU whose sharpened output layer emits plenty of characters."""
    torch.manual_seed(seed)
    model = AcousticModel(ModelConfig(hidden=32, layers=2, dropout=0.0, lookahead=lookahead))
    with torch.no_grad():
        model.out.weight.mul_(20.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, make_tiny_model(), FeatureConfig(), Tokenizer(), {"name": "tiny"})
    return path


@pytest.fixture(scope="session")
def lookahead_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a lookahead of two steps (80 ms), random weights on the future too."""
    path = tmp_path_factory.mktemp("model") / "lookahead.pt"
    save_checkpoint(path, make_tiny_model(lookahead=2), FeatureConfig(), Tokenizer(), {"name": "lookahead"})
    return path


@pytest.fixture(scope="session")
def tiny_recognizer(tiny_model_path: Path) -> Recognizer:
    """The tiny model with greedy decoding, whose output the tests can predict from the log-probs."""
    return Recognizer.load(tiny_model_path, decoder=DecoderConfig(method="greedy"))


# Training text for a small character LM: a few sentences, "the" and "number" frequent on purpose.
TINY_LM_TEXT = (
    "the number is on the door", "the man followed the number", "call the number again",
    "please say the number now", "the cat sat on the mat", "she followed the road to the sea",
    "we don't know the number", "the conference has ended", "the number of people is growing",
    "he said the number twice", "give me the number", "they followed the river home",
)


@pytest.fixture(scope="session")
def tiny_lm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "tiny_lm.npz"
    lm_build.build(TINY_LM_TEXT, order=5, prune=0.0).save(path)
    return path


@pytest.fixture(scope="session")
def speech_wav() -> Path:
    """A real 16 kHz mono speech file (synthetic voice)."""
    return ASSETS / "sample_flite_rms.wav"


@pytest.fixture(scope="session")
def real_speech_flac() -> Path:
    """A real human voice, 16 kHz FLAC."""
    return ASSETS / "sample_allison_real.flac"
