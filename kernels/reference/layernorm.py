"""Layer normalisation over the last axis: forward caches `mean` and `rstd`; backward gives dx, dweight
and dbias in one pass over the rows (llm.c's layernorm_forward / layernorm_backward).

Forward, for one row x of C values:
    mean = sum(x) / C,   var = sum((x - mean)^2) / C   (biased, as PyTorch),   rstd = 1 / sqrt(var + eps)
    xhat = (x - mean) * rstd,   out = xhat * weight + bias
Backward, with dxhat = dout * weight (derivation in docs/derivations/layernorm.md):
    dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    dweight = sum over rows of dout * xhat,   dbias = sum over rows of dout
Memory traffic: forward reads x twice, writes out plus 2 numbers per row; backward reads dout and x and
writes dx (dweight and dbias are C numbers each).
"""

from __future__ import annotations

from typing import Any


def layernorm_forward(x: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any]:
    """x: (N, C), weight/bias: (C,) or None -> out (N, C), mean (N,), rstd (N,)."""
    mean = x.mean(axis=-1, keepdims=True)                 # (N, 1)
    xc = x - mean
    var = (xc * xc).mean(axis=-1, keepdims=True)          # (N, 1), biased
    rstd = 1.0 / (var + eps) ** 0.5
    out = xc * rstd                                       # xhat
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out, mean[:, 0], rstd[:, 0]


def layernorm_backward(dout: Any, x: Any, weight: Any, mean: Any, rstd: Any,
                       need_affine: bool = True) -> tuple[Any, Any, Any]:
    """dout, x: (N, C); mean, rstd: (N,) -> dx (N, C), dweight (C,) or None, dbias (C,) or None."""
    rstd = rstd[:, None]
    xhat = (x - mean[:, None]) * rstd
    dxhat = dout if weight is None else dout * weight
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    dweight = (dout * xhat).sum(axis=0) if need_affine else None
    dbias = dout.sum(axis=0) if need_affine else None
    return dx, dweight, dbias
