"""Acoustic model: normalise -> causal frame stacking -> GRU stack -> linear -> CTC log-probs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import overload

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass(frozen=True)
class ModelConfig:
    n_mels: int = 80  # log-mel bins per input frame (must match FeatureConfig.n_mels)
    stack: int = 4  # input frames stacked into one GRU step (also the time stride: 4 x 10 ms)
    hidden: int = 320  # GRU units per layer
    layers: int = 3  # GRU layers
    vocab_size: int = 29  # CTC outputs including the blank
    dropout: float = 0.1  # dropout between layers while training (probability)
    # Future model steps each output also sees (stack x hop each: 40 ms by default). Every output
    # then waits for them, so results come that much later; 0 keeps the model strictly causal.
    lookahead: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (("n_mels", 1, 256), ("stack", 1, 16), ("hidden", 8, 4096),
                                ("layers", 1, 12), ("vocab_size", 2, 100000), ("lookahead", 0, 16)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"ModelConfig.{name} must be in [{low}, {high}], got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class AcousticModel(nn.Module):
    """Unidirectional GRU CTC model; holds no stream state (the caller passes it in and out)."""

    # Buffers, declared so that type checkers see tensors (nn.Module.__getattr__ says Tensor | Module).
    feat_mean: torch.Tensor  # float32 (n_mels,)
    feat_std: torch.Tensor  # float32 (n_mels,)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Global feature normalisation, measured on the training data and stored in the checkpoint.
        self.register_buffer("feat_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("feat_std", torch.ones(cfg.n_mels))
        # Input of one step: its own stack of frames, then the stacks of the lookahead steps.
        self.proj = nn.Linear(cfg.n_mels * cfg.stack * (1 + cfg.lookahead), cfg.hidden)
        # LayerNorm before the GRU shortens the plateau at the start of CTC training.
        self.norm = nn.LayerNorm(cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.out = nn.Linear(cfg.hidden, cfg.vocab_size)

    def initial_hidden(self, batch: int = 1) -> torch.Tensor:
        """Zero GRU state, float32 (layers, batch, hidden)."""
        return torch.zeros(self.cfg.layers, batch, self.cfg.hidden)

    @overload
    def output_steps(self, frames: int) -> int: ...

    @overload
    def output_steps(self, frames: torch.Tensor) -> torch.Tensor: ...

    def output_steps(self, frames: int | torch.Tensor) -> int | torch.Tensor:
        """Outputs that ``frames`` input frames give: whole stacks, less those only seen as lookahead.

        ``frames`` may be a tensor of lengths (a batch's), computed where it lies, with no host copy.
        """
        steps = frames // self.cfg.stack - self.cfg.lookahead
        return steps.clamp(min=0) if isinstance(steps, torch.Tensor) else max(0, steps)

    def forward(
        self, frames: torch.Tensor, hidden: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
        norm: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run whole stacks of frames through the model.

        Args:
            frames: float32 (batch, frames, n_mels) raw log-mel. Output ``t`` reads stacks ``t`` to
                ``t + lookahead``, so the last ``lookahead`` stacks and trailing frames that do not
                fill a stack give no output (the streaming caller keeps them for the next call).
            hidden: float32 (layers, batch, hidden) GRU state, zeros when None.
            lengths: int64 (batch,) valid output steps per row, when rows differ in length; the
                returned hidden state is then each row's state after its own last step.
            norm: float32 (batch, hidden) gain and bias that replace the LayerNorm's own, one row
                per stream (speaker adaptation, ``streamasr.engine.adapt``).

        Returns:
            log-probs float32 (batch, ``output_steps(frames)``, vocab) and the new hidden state.
        """
        batch, time, _ = frames.shape
        stack, look = self.cfg.stack, self.cfg.lookahead
        steps = self.output_steps(time)
        if hidden is None:
            hidden = self.initial_hidden(batch).to(frames)
        if steps == 0:
            return frames.new_zeros(batch, 0, self.cfg.vocab_size), hidden
        x = (frames[:, : (steps + look) * stack] - self.feat_mean) / self.feat_std
        x = x.reshape(batch, steps + look, stack * self.cfg.n_mels)
        if look:
            x = torch.cat([x[:, j:j + steps] for j in range(look + 1)], dim=-1)
        x = self.proj(x)
        if norm is None:
            x = self.norm(x)
        else:
            x = F.layer_norm(x, self.norm.normalized_shape, eps=self.norm.eps) * norm[0][:, None] + norm[1][:, None]
        x = self.drop(x)
        if lengths is None:
            y, hidden = self.gru(x, hidden)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y_packed, hidden = self.gru(packed, hidden)
            y, _ = pad_packed_sequence(y_packed, batch_first=True, total_length=steps)
        return torch.log_softmax(self.out(self.drop(y)), dim=-1), hidden


def with_lookahead(model: AcousticModel, lookahead: int) -> AcousticModel:
    """A copy of ``model`` that reads ``lookahead`` future steps, computing exactly what ``model`` does.

    The input layer gains zero weights for the extra future stacks, so a fine-tune starts from the
    causal model's accuracy and learns how much the future is worth.
    """
    if lookahead < model.cfg.lookahead:
        raise ValueError(f"cannot shorten the lookahead of a trained model from {model.cfg.lookahead} to {lookahead}")
    wider = AcousticModel(replace(model.cfg, lookahead=lookahead))
    state = model.state_dict()
    weight = state["proj.weight"]
    state["proj.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], wider.proj.in_features
                                                                - weight.shape[1])], dim=1)
    wider.load_state_dict(state)
    return wider.train(model.training)


def quantize(model: AcousticModel) -> AcousticModel:
    """int8 dynamic quantisation of the GRU and linear layers (weights int8, activations quantised per call).

    Returns a quantised copy for CPU inference; ``model`` is left as it is. Activations are
    quantised with a scale measured on each call's input, so results depend slightly on how the
    audio is chunked and batched (the float model's are exact); see docs/benchmarks.md.
    """
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency; the
        # eager API still works on the supported torch versions.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = quantize_dynamic(model, {nn.GRU, nn.Linear}, dtype=torch.qint8)
    return quantized.eval()
