"""The basic layers: Linear, Embedding, LayerNorm, Dropout, GELU, ReLU, Identity, and positional
encodings (sinusoidal and learned). Parameter names and initialisation are PyTorch's."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import creation
from ..autograd import no_grad
from ..dtypes import get_default_dtype
from ..ops.activation import gelu_fn
from ..ops.norm import layer_norm_fn
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter


def _param(*shape: int, dtype: Any = None) -> Parameter:
    return Parameter(np.empty(shape, dtype=np.dtype(dtype) if dtype else get_default_dtype()))


class Linear(Module):
    """y = x @ weight^T + bias; weight (out_features, in_features), bias (out_features,).
    Init: U(-1/sqrt(in), 1/sqrt(in)) for both, as PyTorch (kaiming_uniform with a = sqrt 5)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param(out_features, in_features, dtype=dtype)
        if bias:
            self.bias = _param(out_features, dtype=dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def array_forward(self, x: np.ndarray) -> np.ndarray:
        """forward on a plain array (..., in) -> (..., out), recording nothing (generation)."""
        return self.array_fn()(x)

    def array_fn(self) -> Any:
        """array_forward with the weights fetched now: a function of x alone, for calls in a loop."""
        w_t = self.weight.data.T                                      # (in, out) view: BLAS reads it transposed
        if self.bias is None:
            return lambda x: x @ w_t
        b = self.bias.data
        return lambda x: x @ w_t + b

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A table of num_embeddings vectors of size embedding_dim, looked up by integer ids.
    Init N(0, 1); the padding_idx row (if any) starts at zero and gets no gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: Any = None) -> None:
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} must be within [-{num_embeddings}, "
                                 f"{num_embeddings - 1}]")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.weight = _param(num_embeddings, embedding_dim, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0.0

    def forward(self, input: Any) -> Tensor:
        return F.embedding(input, self.weight, self.padding_idx)

    def array_forward(self, idx: np.ndarray) -> np.ndarray:
        """The rows for integer ids idx (...) -> (..., embedding_dim), recording nothing (generation)."""
        return self.weight.data[idx]

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class LayerNorm(Module):
    """Normalise over the trailing `normalized_shape` dims; weight = 1 and bias = 0 at init."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, dtype: Any = None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if any(n < 1 for n in shape):
            raise ValueError(f"LayerNorm normalizes over sizes of at least 1, got normalized_shape={normalized_shape}")
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        if elementwise_affine:
            self.weight = _param(*shape, dtype=dtype)
            if bias:
                self.bias = _param(*shape, dtype=dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def array_fn(self) -> Callable[[Any], Any]:
        """forward on plain arrays, recording nothing (generation), with the weights fetched now; over the last
        axis only (a 1-D normalized_shape, as every Transformer here has)."""
        if len(self.normalized_shape) != 1:
            raise ValueError(f"array_fn normalizes over the last axis only, not {self.normalized_shape}")
        return layer_norm_fn(None if self.weight is None else self.weight.data,
                             None if self.bias is None else self.bias.data, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Dropout(Module):
    """Zero elements with probability p while training (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class GELU(Module):
    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)

    def array_fn(self) -> Callable[[Any], Any]:
        """forward on plain arrays, recording nothing (generation)."""
        return gelu_fn(self.approximate)

    def extra_repr(self) -> str:
        return f"approximate='{self.approximate}'"


class ReLU(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)


class Identity(Module):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input


def sinusoidal_table(max_len: int, d_model: int, dtype: Any = None) -> np.ndarray:
    """"Attention Is All You Need" positions: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]                      # (max_len, 1)
    div = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div[: d_model // 2])
    return pe.astype(np.dtype(dtype) if dtype else get_default_dtype())


class SinusoidalPositionalEncoding(Module):
    """Adds fixed sinusoidal position vectors to x of shape (T, B, C), or (B, T, C) with batch_first,
    then applies dropout. The table is a buffer named `pe` (max_len, C)."""

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 5000, batch_first: bool = False,
                 dtype: Any = None) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.dropout = Dropout(dropout)
        self.register_buffer("pe", Tensor(sinusoidal_table(max_len, d_model, dtype)))

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1] if self.batch_first else x.shape[0]
        if T > self.pe.shape[0]:
            raise ValueError(f"sequence of length {T} is longer than max_len={self.pe.shape[0]}")
        pe = self.pe[:T]                                                      # (T, C)
        pe = pe.unsqueeze(0) if self.batch_first else pe.unsqueeze(1)         # broadcast over the batch
        return self.dropout(x + pe)


class LearnedPositionalEmbedding(Module):
    """Adds a learned vector per position (an Embedding of max_len rows, `weight`) to x (B, T, C), or
    (T, B, C) when batch_first is False."""

    def __init__(self, max_len: int, d_model: int, batch_first: bool = True, dtype: Any = None) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.weight = _param(max_len, d_model, dtype=dtype)
        init.normal_(self.weight, 0.0, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1] if self.batch_first else x.shape[0]
        if T > self.weight.shape[0]:
            raise ValueError(f"sequence of length {T} is longer than max_len={self.weight.shape[0]}")
        pe = F.embedding(creation.arange(T), self.weight)                     # (T, C)
        return x + (pe.unsqueeze(0) if self.batch_first else pe.unsqueeze(1))


class Tanh(Module):
    def forward(self, input: Tensor) -> Tensor:
        return input.tanh()


class Sigmoid(Module):
    def forward(self, input: Tensor) -> Tensor:
        return input.sigmoid()


class Softmax(Module):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim)


class LogSoftmax(Softmax):
    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim)


class CrossEntropyLoss(Module):
    """F.cross_entropy as a module (weight is a buffer, as in PyTorch)."""

    def __init__(self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing)


class CTCLoss(Module):
    """F.ctc_loss as a module: forward(log_probs (T, B, C), targets, input_lengths, target_lengths)."""

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> None:
        super().__init__()
        self.blank, self.reduction, self.zero_infinity = blank, reduction, zero_infinity

    def forward(self, log_probs: Tensor, targets: Any, input_lengths: Any, target_lengths: Any) -> Tensor:
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank, self.reduction,
                          self.zero_infinity)


class NLLLoss(Module):
    def __init__(self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.mse_loss(input, target, self.reduction)
