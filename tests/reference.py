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


def layer_norm(x: np.ndarray, n_norm: int, weight=None, bias=None, eps: float = 1e-5) -> np.ndarray:
    axes = tuple(range(x.ndim - n_norm, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Per PyTorch's documented formulas, one row at a time. logits (N, C); target (N,) ints or (N, C)."""
    N, C = logits.shape
    w = np.ones(C) if weight is None else weight
    logp = np.array([row - row.max() - math.log(np.exp(row - row.max()).sum()) for row in logits])
    losses, denom = [], 0.0
    for n in range(N):
        if target.ndim == 2:
            p = target[n] * (1 - label_smoothing) + label_smoothing / C
            losses.append(-sum(w[c] * p[c] * logp[n, c] for c in range(C)))
            denom += 1
            continue
        t = int(target[n])
        if t == ignore_index:
            losses.append(0.0)
            continue
        nll = -w[t] * logp[n, t]
        smooth = -sum(w[c] * logp[n, c] for c in range(C)) / C
        losses.append((1 - label_smoothing) * nll + label_smoothing * smooth)
        denom += w[t]
    losses = np.array(losses)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / denom


def attention(q, k, v, blocked=None, bias=None):
    """softmax(q k^T / sqrt(E) + bias, with blocked positions excluded) v, one query row at a time;
    a row with every key blocked gives zeros."""
    scale = 1 / math.sqrt(q.shape[-1])
    lead = q.shape[:-2]
    out = np.zeros(lead + (q.shape[-2], v.shape[-1]))
    for idx in np.ndindex(*lead):
        for i in range(q.shape[-2]):
            s = np.array([q[idx][i] @ k[idx][j] * scale for j in range(k.shape[-2])])
            if bias is not None:
                s = s + np.broadcast_to(bias, lead + (q.shape[-2], k.shape[-2]))[idx][i]
            allowed = np.ones(k.shape[-2], bool)
            if blocked is not None:
                allowed = ~np.broadcast_to(blocked, lead + (q.shape[-2], k.shape[-2]))[idx][i]
            if not allowed.any():
                continue
            e = np.where(allowed, np.exp(s - s[allowed].max()), 0.0)
            out[idx][i] = (e / e.sum()) @ v[idx]
    return out
