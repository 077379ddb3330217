"""Acoustic model: output shapes, packed (ragged batch) vs one-by-one equality, config errors."""

from __future__ import annotations

import pytest
import torch

from streamasr.model import AcousticModel, ModelConfig, quantize


@pytest.fixture(scope="module")
def model() -> AcousticModel:
    torch.manual_seed(0)
    return AcousticModel(ModelConfig(hidden=32, layers=2, dropout=0.0)).eval()


def test_shapes(model: AcousticModel) -> None:
    frames = torch.randn(3, 42, 80)  # 42 frames: 10 full stacks of 4, 2 frames left for later
    with torch.no_grad():
        log_probs, hidden = model(frames)
    assert log_probs.shape == (3, 10, 29) and log_probs.dtype == torch.float32
    assert hidden.shape == (2, 3, 32)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 10))
    assert model.initial_hidden(5).shape == (2, 5, 32)


def test_hidden_state_carries_across_calls(model: AcousticModel) -> None:
    frames = torch.randn(1, 40, 80)
    with torch.no_grad():
        whole, h_whole = model(frames)
        first, h = model(frames[:, :16])
        second, h = model(frames[:, 16:], h)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(h, h_whole, atol=1e-5, rtol=0)


def test_packed_equals_unpacked(model: AcousticModel) -> None:
    lengths = [40, 12, 28]  # frames per row; output steps 10, 3, 7
    rows = [torch.randn(n, 80) for n in lengths]
    hidden = torch.randn(2, 3, 32)
    batch = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    with torch.no_grad():
        packed, h_packed = model(batch, hidden, torch.tensor([n // 4 for n in lengths]))
        for i, row in enumerate(rows):
            alone, h_alone = model(row[None], hidden[:, i:i + 1].contiguous())
            steps = lengths[i] // 4
            torch.testing.assert_close(packed[i, :steps], alone[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(h_packed[:, i], h_alone[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_mels": 0}, r"ModelConfig.n_mels must be in \[1, 256\], got 0"),
    ({"stack": 17}, r"ModelConfig.stack must be in \[1, 16\], got 17"),
    ({"hidden": 4}, r"ModelConfig.hidden must be in \[8, 4096\], got 4"),
    ({"layers": 0}, r"ModelConfig.layers must be in \[1, 12\], got 0"),
    ({"vocab_size": 1}, r"ModelConfig.vocab_size must be in \[2, 100000\], got 1"),
    ({"dropout": 1.0}, r"ModelConfig.dropout must be in \[0, 1\), got 1.0"),
])
def test_config_error_text(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)  # type: ignore[arg-type]


def test_quantize_makes_an_int8_copy_close_to_the_float_model() -> None:
    from torch.ao.nn.quantized.dynamic import GRU as QuantizedGRU

    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(hidden=64, layers=2, dropout=0.0)).eval()
    quantized = quantize(model)  # filterwarnings=error: torch's deprecation notices are silenced
    assert isinstance(quantized.gru, QuantizedGRU) and isinstance(model.gru, torch.nn.GRU)
    assert quantized.cfg == model.cfg
    frames = torch.randn(2, 40, 80) * 3
    lengths = torch.tensor([10, 6])
    with torch.no_grad():
        want, h_want = model(frames, None, lengths)
        got, h_got = quantized(frames, None, lengths)
    assert got.shape == want.shape and h_got.shape == h_want.shape
    torch.testing.assert_close(got.exp(), want.exp(), atol=0.02, rtol=0)
