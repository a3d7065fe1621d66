"""Weight quantization and the matrix product on quantized weights, NumPy reference.

Two formats, both symmetric (zero maps to zero, no offset), for a weight W (M, K) = (out, in):

  int8  per output channel:  d_m = max_k |W[m, k]| / 127,  q = round(W / d_m) in [-127, 127]
        qweight int8 (M, K), scale float32 (M, 1).
  q4    per group of G consecutive inputs (llama.cpp's Q4_0): in each group, m = the element of largest
        magnitude (with its sign), d = m / -8, q = clip(round(W / d), -8, 7), so the extreme lands on -8
        exactly and all 16 levels are used; stored as q + 8 in a nibble, two per byte: byte j of a row
        holds element j (low nibble) and element j + K/2 (high nibble). (llama.cpp pairs the halves of
        each 32-block instead; pairing the row's halves lets a kernel unpack a row in one contiguous,
        vectorised pass, about 3x faster here.)
        qweight uint8 (M, K/2), scale float16 (M, K/G). K must be a multiple of G (and G even).

The format is told by qweight's dtype (int8 or uint8) and scale's shape: group = K / scale.shape[1].
Dequantization is W ~= q * d; the rounding error per weight is at most d/2.

quantize_forward      W -> (qweight, scale)              done once, when a model is quantized
dequantize_forward    (qweight, scale) -> W (M, K)       the reference's way to multiply: dequantize, then matmul
qlinear_forward       x (..., K) -> x @ W^T + bias (..., M)
qlinear_backward      dy (..., M) -> dx = dy @ W (..., K)  (weights are frozen: no gradient for them)
"""

from __future__ import annotations

import numpy as np


def quantize_forward(w, bits, group=None):  # noqa: ANN001, ANN201
    """w (M, K) float -> (qweight, scale) in the int8 (bits=8) or q4 (bits=4, group G) format above."""
    w = np.asarray(w, dtype=np.float64)  # float64: the scale and the rounding do not depend on w's dtype
    M, K = w.shape
    if bits == 8:
        d = np.abs(w).max(axis=1, keepdims=True) / 127.0                     # (M, 1)
        q = np.where(d > 0, np.rint(w / np.where(d > 0, d, 1.0)), 0.0)
        return np.clip(q, -127, 127).astype(np.int8), d.astype(np.float32)
    if bits != 4:
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    if group is None or group <= 0 or group % 2 or K % group:
        raise ValueError(f"4-bit quantization needs an even group size that divides in_features {K}, got {group}")
    g = w.reshape(M, K // group, group)                                       # (M, K/G, G)
    idx = np.abs(g).argmax(axis=2)[..., None]
    m = np.take_along_axis(g, idx, axis=2)                                    # signed extreme, (M, K/G, 1)
    # the scale is stored in float16; quantize with the rounded scale so dequantization uses the same d
    d = (m / -8.0).astype(np.float16).astype(np.float64)
    q = np.where(d != 0, np.rint(g / np.where(d != 0, d, 1.0)), 0.0)
    u = (np.clip(q, -8, 7) + 8).astype(np.uint8).reshape(M, K)               # 0..15
    packed = u[:, :K // 2] | (u[:, K // 2:] << 4)                             # (M, K/2)
    return packed, d[..., 0].astype(np.float16)


def dequantize_forward(qweight, scale, dtype=np.float32):  # noqa: ANN001, ANN201
    """(qweight, scale) -> W (M, K) = q * d, computed in `dtype`."""
    if qweight.dtype == np.int8:
        return qweight.astype(dtype) * scale.astype(dtype)
    M, ngroups = scale.shape
    q = np.concatenate([qweight & 0x0F, qweight >> 4], axis=1).astype(dtype) - 8.0  # (M, K): low, high halves
    return (q.reshape(M, ngroups, -1) * scale.astype(dtype)[..., None]).reshape(M, -1)


def qlinear_forward(x, qweight, scale, bias=None):  # noqa: ANN001, ANN201
    """x (..., K) @ dequantize(qweight, scale)^T (+ bias) -> (..., M), in x's dtype."""
    y = x @ dequantize_forward(qweight, scale, x.dtype).T
    return y + bias.astype(x.dtype, copy=False) if bias is not None else y


def qlinear_backward(dy, qweight, scale):  # noqa: ANN001, ANN201
    """dy (..., M) -> dx = dy @ dequantize(qweight, scale) (..., K)."""
    return dy @ dequantize_forward(qweight, scale, dy.dtype)
