"""Acoustic model: output shapes, packed (ragged batch) vs one-by-one equality, config errors."""

from __future__ import annotations

import pytest
import torch

from streamasr.engine.model import AcousticModel, ModelConfig, quantize, with_lookahead


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


def test_lookahead_outputs_read_exactly_their_future_steps() -> None:
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(hidden=32, layers=2, dropout=0.0, lookahead=2)).eval()
    frames = torch.randn(1, 42, 80)  # 10 stacks: 8 outputs, each reading its own stack and the next two
    with torch.no_grad():
        base, _ = model(frames)
        assert base.shape == (1, 8, 29) and model.output_steps(42) == 8 and model.output_steps(11) == 0
        assert model.output_steps(torch.tensor([42, 11])).tolist() == [8, 0]
        changed = frames.clone()
        changed[:, 20:24] += 5.0  # stack 5: the input of outputs 3, 4 and 5 only
        moved, _ = model(changed)
    torch.testing.assert_close(moved[:, :3], base[:, :3], atol=0, rtol=0)
    assert (moved[:, 3] - base[:, 3]).abs().max() > 1e-3
    empty, hidden = model(frames[:, :11])  # two stacks: both only lookahead for now
    assert empty.shape == (1, 0, 29) and not hidden.any()


def test_with_lookahead_starts_as_the_causal_model(model: AcousticModel) -> None:
    wider = with_lookahead(model, 3)
    assert wider.cfg.lookahead == 3 and wider.proj.in_features == 4 * model.proj.in_features
    frames = torch.randn(2, 48, 80)
    with torch.no_grad():
        want, _ = model(frames)
        got, _ = wider(frames)
    assert got.shape == (2, 9, 29) and want.shape == (2, 12, 29)
    torch.testing.assert_close(got, want[:, :9], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="cannot shorten the lookahead of a trained model from 3 to 1"):
        with_lookahead(wider, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_mels": 0}, r"ModelConfig.n_mels must be in \[1, 256\], got 0"),
    ({"stack": 17}, r"ModelConfig.stack must be in \[1, 16\], got 17"),
    ({"hidden": 4}, r"ModelConfig.hidden must be in \[8, 4096\], got 4"),
    ({"layers": 0}, r"ModelConfig.layers must be in \[1, 12\], got 0"),
    ({"vocab_size": 1}, r"ModelConfig.vocab_size must be in \[2, 100000\], got 1"),
    ({"dropout": 1.0}, r"ModelConfig.dropout must be in \[0, 1\), got 1.0"),
    ({"lookahead": 17}, r"ModelConfig.lookahead must be in \[0, 16\], got 17"),
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
