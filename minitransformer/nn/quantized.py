"""Post-training weight quantization: QuantLinear and QuantEmbedding hold integer weights and scales
(the int8 per-channel and 4-bit group formats of kernels/reference/quant.py) and multiply without a
float copy of the weights; `quantize_` swaps them into a model in place, `apply_format` builds empty ones
so that a quantized checkpoint loads into a fresh model.

    model = mt.nn.GPT(config); model.load_state_dict(...)
    desc = mt.nn.quantized.quantize_(model, bits=8)          # every Linear -> QuantLinear
    desc = mt.nn.quantized.quantize_(model, bits=4, group=64, embedding=True)

Quantized modules are for inference: their integer weights take no gradient (a gradient still flows
through them to their input, so a float layer before them can be fine-tuned).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops.quantized import QLinear, dequantize, qlinear_fn, quantize
from ..tensor import Tensor
from .layers import Embedding, Linear
from .module import Module, Parameter


def _storage(out_features: int, in_features: int, bits: int, group: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Empty (qweight, scale) arrays of the format's shapes and dtypes."""
    if bits == 8:
        return np.zeros((out_features, in_features), np.int8), np.zeros((out_features, 1), np.float32)
    if bits == 4:
        if not group or group % 2 or in_features % group:
            raise ValueError(f"4-bit quantization needs an even group size that divides in_features "
                             f"{in_features}, got {group} (try --group 32 or 64)")
        return (np.zeros((out_features, in_features // 2), np.uint8),
                np.zeros((out_features, in_features // group), np.float16))
    raise ValueError(f"bits must be 8 or 4, got {bits}")


class _Quantized(Module):
    """What QuantLinear and QuantEmbedding share: one matrix (rows, cols) held as `qweight` and `scale`
    buffers (int8 + float32 per-row scales for bits=8; packed nibbles + float16 group scales for bits=4)."""

    def __init__(self, rows: int, cols: int, bits: int, group: int | None) -> None:
        super().__init__()
        self.bits, self.group = bits, (group if bits == 4 else None)
        qweight, scale = _storage(rows, cols, bits, self.group)
        self.register_buffer("qweight", Tensor(qweight))
        self.register_buffer("scale", Tensor(scale))

    def dequantize(self) -> np.ndarray:
        """The matrix the integers stand for, (rows, cols) float32."""
        return dequantize(self.qweight.numpy(), self.scale.numpy())

    def _format(self, per: str) -> str:
        return f"int8 per {per}" if self.bits == 8 else f"4-bit, groups of {self.group}"


class QuantLinear(_Quantized):
    """A Linear whose weight (out_features, in_features) is stored quantized (see _Quantized; one scale per
    output channel for int8); the bias, when present, stays a float Parameter."""

    def __init__(self, in_features: int, out_features: int, bits: int = 8, group: int | None = None,
                 bias: bool = True, dtype: Any = np.float32) -> None:
        super().__init__(out_features, in_features, bits, group)
        self.in_features, self.out_features = in_features, out_features
        if bias:
            self.bias = Parameter(np.zeros(out_features, dtype))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_float(cls, linear: Linear, bits: int, group: int | None = None) -> QuantLinear:
        """Quantize a Linear's weight (its bias is copied as it is)."""
        q = cls(linear.in_features, linear.out_features, bits, group, linear.bias is not None,
                linear.weight.dtype)
        qweight, scale = quantize(linear.weight.numpy(), bits, q.group)
        q.qweight, q.scale = Tensor(qweight), Tensor(scale)
        if linear.bias is not None:
            q.bias = Parameter(linear.bias.numpy().copy())
        return q

    def forward(self, input: Tensor) -> Tensor:
        if input.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear: input of shape {input.shape} does not match in_features "
                             f"{self.in_features}")
        args = (input, self.qweight, self.scale) + ((self.bias,) if self.bias is not None else ())
        return QLinear.apply(*args)

    def array_forward(self, x: np.ndarray) -> np.ndarray:
        """forward on a plain array, recording nothing (generation)."""
        return self.array_fn()(x)

    def array_fn(self) -> Any:
        """array_forward with the weights fetched now (float16 scales widened once): a function of x."""
        b = self.bias.numpy() if self.bias is not None else None
        return qlinear_fn(self.qweight.numpy(), self.scale.numpy().astype(np.float32), b)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self._format('channel')}"


class QuantEmbedding(_Quantized):
    """An Embedding stored in the same formats (a row per token, quantized like a Linear's output
    channel); a lookup dequantizes only the rows it reads."""

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8, group: int | None = None) -> None:
        super().__init__(num_embeddings, embedding_dim, bits, group)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim

    def array_forward(self, idx: np.ndarray) -> np.ndarray:
        """idx (...) integer ids -> (..., embedding_dim) float32."""
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise IndexError(f"token id out of range [0, {self.num_embeddings}): got {idx.min()}..{idx.max()}")
        flat = idx.reshape(-1)
        rows = dequantize(self.qweight.numpy()[flat], self.scale.numpy()[flat])
        return rows.reshape(*idx.shape, self.embedding_dim)

    def forward(self, input: Any) -> Tensor:
        return Tensor(self.array_forward(input.numpy() if isinstance(input, Tensor) else input))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self._format('row')}"


def _tied_linears(model: Module) -> dict[str, str]:
    """Linear names whose weight is an Embedding's weight (GPT's lm_head and wte) -> that Embedding's name."""
    emb = {id(m.weight): n for n, m in model.named_modules() if isinstance(m, Embedding)}
    return {n: emb[id(m.weight)] for n, m in model.named_modules()
            if isinstance(m, Linear) and id(m.weight) in emb}


def _replace(model: Module, name: str, new: Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def quantize_(model: Module, bits: int = 8, group: int | None = 64, embedding: bool = False) -> dict[str, Any]:
    """Replace every Linear of `model` by a QuantLinear, in place; with `embedding`, also the Embedding
    that an output layer shares its weight with (GPT's tied wte / lm_head: quantized once, the two
    modules then share the integers). Returns the format description a checkpoint stores."""
    if bits not in (8, 4):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    tied = _tied_linears(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, Linear) and (embedding or n not in tied)]
    desc = {"bits": bits, "group": group if bits == 4 else None, "linears": linears,
            "embeddings": {n: tied[n] for n in linears if n in tied}}
    for name in linears:
        _replace(model, name, QuantLinear.from_float(model.get_submodule(name), bits, desc["group"]))
    _share_tied(model, desc)
    return desc


def _share_tied(model: Module, desc: dict[str, Any]) -> None:
    """Put a QuantEmbedding holding the tied QuantLinear's very buffers in place of each tied Embedding."""
    for lin_name, emb_name in desc["embeddings"].items():
        lin = model.get_submodule(lin_name)
        emb = QuantEmbedding(lin.out_features, lin.in_features, desc["bits"], desc["group"])
        emb.qweight, emb.scale = lin.qweight, lin.scale
        _replace(model, emb_name, emb)


def apply_format(model: Module, desc: dict[str, Any]) -> Module:
    """Give a freshly built float model the quantized modules that `desc` (from quantize_) names, empty,
    so that load_state_dict can fill them from a quantized checkpoint."""
    for name in desc["linears"]:
        lin = model.get_submodule(name)
        if not isinstance(lin, Linear):
            raise ValueError(f"quantized checkpoint names {name!r}, which is not a Linear in this model")
        _replace(model, name, QuantLinear(lin.in_features, lin.out_features, desc["bits"], desc["group"],
                                          lin.bias is not None, lin.weight.dtype))
    _share_tied(model, desc)
    return model


def weight_bytes(model: Module) -> int:
    """Bytes of every parameter and buffer, each shared array counted once."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numpy().nbytes
    return total


def parameter_count(model: Module) -> int:
    """Weights the model stands for: its parameters plus each quantized module's out x in integers
    (shared ones once), so a quantized model reports the count of the float model it came from."""
    seen: set[int] = set()
    n = 0
    for t in model.parameters():
        if id(t) not in seen:
            seen.add(id(t))
            n += t.numel()
    for m in model.modules():
        if isinstance(m, _Quantized) and id(m.qweight) not in seen:
            seen.add(id(m.qweight))
            n += m.qweight.shape[0] * (m.in_features if isinstance(m, QuantLinear) else m.embedding_dim)
    return n
