"""Float64 NumPy formulas written independently of the library, used as the expected values of the
forward tests. Nothing here imports minitransformer."""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def softmax(x: np.ndarray, dim: int) -> np.ndarray:
    z = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return z / np.sum(z, axis=dim, keepdims=True)


def log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    m = np.max(x, axis=dim, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True))


def logsumexp(x: np.ndarray, dim, keepdim: bool = False) -> np.ndarray:
    m = np.max(x, axis=dim, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True))
    return out if keepdim else np.squeeze(out, axis=dim)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.0)


def var(x: np.ndarray, dim=None, correction: int = 1, keepdim: bool = False) -> np.ndarray:
    n = x.size if dim is None else np.prod([x.shape[d] for d in np.atleast_1d(dim)])
    mu = np.mean(x, axis=dim, keepdims=True)
    return np.sum((x - mu) ** 2, axis=dim, keepdims=keepdim) / (n - correction)


def gather(x: np.ndarray, dim: int, index: np.ndarray) -> np.ndarray:
    out = np.empty(index.shape, dtype=x.dtype)
    for pos in np.ndindex(*index.shape):
        src = list(pos)
        src[dim] = index[pos]
        out[pos] = x[tuple(src)]
    return out


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched matmul by explicit sums over k (einsum), with 1-D promotion as in torch.matmul."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a3 = np.broadcast_to(a2, batch + a2.shape[-2:])
    b3 = np.broadcast_to(b2, batch + b2.shape[-2:])
    out = np.einsum("...ik,...kj->...ij", a3, b3)
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out
