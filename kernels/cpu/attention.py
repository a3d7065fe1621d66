"""Fused scaled dot-product attention, FlashAttention style, Numba (same names and signatures as
reference/attention.py). Two versions, in order of sophistication:

v1  row-streaming, pure Numba (below): simple, O(TILE) extra memory per row, but every score is a
    separate dot product, so it runs no faster than the reference's BLAS calls.
v2  tiled with BLAS (in production): blocks of BQ queries against tiles of BK keys; the tile products (Q K^T, P V and
    the five products of the backward) go to NumPy's batched matmul, and everything between them (mask,
    online softmax, rescaling, dS) is one parallel Numba pass over the tile. Tiles above the diagonal are
    skipped when causal. Extra memory: a few (B, BQ, BK) tiles, independent of the sequence length.
    In production (attention_forward / attention_backward). A version with the tile products written as
    register-blocked Numba micro-kernels (as matmul.py v3) and whole tiles per thread was measured 1.2-1.6x
    slower than this one on one thread and no faster on two, so BLAS keeps the products.

v1 forward, one query row at a time (rows of all batch entries split across threads): keys and values are
streamed in tiles of TILE keys. For each tile the row's scores are computed into a TILE-long buffer, and
an online softmax keeps three running quantities: the maximum m, the sum l of exp(s - m), and the
output accumulator acc = sum exp(s - m) v. When a tile raises the maximum to m', l and acc are rescaled
by exp(m - m'). After the last tile, out = acc / l and lse = m + log l. Extra memory: TILE + Ev numbers
per row, never the (L, S) matrix. Blocked keys (mask -inf, or j > i when causal) are skipped; causal rows
stop at the diagonal, halving the work.

Backward, one batch entry per thread (dk and dv sum over that entry's queries, so threads never write the
same rows): scores are recomputed, p = exp(s - lse) from the saved lse, then
dv_j += p dout_i, ds = p (dout_i . v_j - D_i), dq_i += scale ds k_j, dk_j += scale ds q_i, with
D_i = dout_i . out_i. Memory traffic per (i, j) pair: rows of q, k, v, dout from cache; no O(L S) array.
"""

from __future__ import annotations

import numpy as np

from ._jit import fexp, pjit, prange

TILE = 64


@pjit
def _fwd(q, k, v, mask, has_mask, scale, causal, out, lse):  # noqa: ANN001, ANN202
    B, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    Bm, Lm = mask.shape[0], mask.shape[1]
    neg_inf = q.dtype.type(-np.inf)
    zero = q.dtype.type(0.0)
    for r in prange(B * L):
        b, i = r // L, r % L
        qi = q[b, i]
        mrow = mask[b if Bm > 1 else 0, i if Lm > 1 else 0]
        s_buf = np.empty(TILE, dtype=q.dtype)
        acc = np.zeros(Ev, dtype=q.dtype)
        m, l_sum = neg_inf, zero
        stop = min(S, i + 1) if causal else S
        for j0 in range(0, stop, TILE):
            n = min(TILE, stop - j0)
            tile_max = neg_inf
            for t in range(n):
                kj = k[b, j0 + t]
                d = zero
                for e in range(E):
                    d += qi[e] * kj[e]
                sc = d * scale
                if has_mask:
                    sc += mrow[j0 + t]
                s_buf[t] = sc
                tile_max = max(tile_max, sc)
            if tile_max == neg_inf:
                continue  # every key of this tile is blocked
            m_new = max(m, tile_max)
            corr = fexp(m - m_new)  # rescale what was accumulated under the old maximum
            l_sum *= corr
            for e in range(Ev):
                acc[e] *= corr
            for t in range(n):
                p = fexp(s_buf[t] - m_new)
                if p != zero:
                    l_sum += p
                    vj = v[b, j0 + t]
                    for e in range(Ev):
                        acc[e] += p * vj[e]
            m = m_new
        if l_sum == zero:
            out[b, i, :] = zero
            lse[b, i] = neg_inf
        else:
            inv = q.dtype.type(1.0) / l_sum
            for e in range(Ev):
                out[b, i, e] = acc[e] * inv
            lse[b, i] = m + np.log(l_sum)


@pjit
def _bwd(dout, q, k, v, out, lse, mask, has_mask, scale, causal, dq, dk, dv):  # noqa: ANN001, ANN202
    B, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    Bm, Lm = mask.shape[0], mask.shape[1]
    zero = q.dtype.type(0.0)
    for b in prange(B):
        mb = np.int64(b) if Bm > 1 else np.int64(0)  # the prange index may be unsigned: keep one int type
        for i in range(L):
            dq[b, i, :] = zero
            if lse[b, i] == -np.inf:
                continue  # a fully blocked row got no weights: nothing flows back
            qi, doi = q[b, i], dout[b, i]
            D = zero
            for e in range(Ev):
                D += doi[e] * out[b, i, e]
            mrow = mask[mb, i if Lm > 1 else 0]
            stop = min(S, i + 1) if causal else S
            for j in range(stop):
                kj, vj = k[b, j], v[b, j]
                d = zero
                for e in range(E):
                    d += qi[e] * kj[e]
                sc = d * scale
                if has_mask:
                    sc += mrow[j]
                p = fexp(sc - lse[b, i])
                if p == zero:
                    continue
                dp = zero
                for e in range(Ev):
                    dp += doi[e] * vj[e]
                    dv[b, j, e] += p * doi[e]
                ds = p * (dp - D) * scale
                for e in range(E):
                    dq[b, i, e] += ds * kj[e]
                    dk[b, j, e] += ds * qi[e]


_NO_MASK = {np.dtype(np.float32): np.zeros((1, 1, 1), np.float32),
            np.dtype(np.float64): np.zeros((1, 1, 1), np.float64)}


def _prep(q, k, v, mask):  # noqa: ANN001, ANN202
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    has_mask = mask is not None
    m = np.ascontiguousarray(mask, dtype=q.dtype) if has_mask else _NO_MASK[q.dtype]
    return q, k, v, m, has_mask


def attention_forward_v1(q, k, v, mask, scale, causal):  # noqa: ANN001, ANN201
    """v1, row-streaming: q (B, L, E), k (B, S, E), v (B, S, Ev), mask None or (Bm, Lm, S) -> out, lse."""
    q, k, v, m, has_mask = _prep(q, k, v, mask)
    out = np.empty((q.shape[0], q.shape[1], v.shape[2]), q.dtype)
    lse = np.empty(q.shape[:2], q.dtype)
    _fwd(q, k, v, m, has_mask, q.dtype.type(scale), causal, out, lse)
    return out, lse


def attention_backward_v1(dout, q, k, v, out, lse, mask, scale, causal):  # noqa: ANN001, ANN201
    q, k, v, m, has_mask = _prep(q, k, v, mask)
    dq = np.empty_like(q)
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    _bwd(np.ascontiguousarray(dout), q, k, v, np.ascontiguousarray(out), lse, m, has_mask, q.dtype.type(scale),
         causal, dq, dk, dv)
    return dq, dk, dv


# ---- v2: BLAS tiles + Numba online softmax ------------------------------------------------------------
BQ = BK = 64


@pjit
def _tile_softmax_update(s, mask, has_mask, mrow0, causal, i0, j0, m, l_sum, acc):  # noqa: ANN001, ANN202
    """Scores s (B, bq, bk) -> p = exp(s - m_new) in place, updating the running max m, sum l_sum and
    rescaling the accumulator acc (B, bq, Ev) for each row."""
    B, bq, bk = s.shape
    Bm, Lm = mask.shape[0], mask.shape[1]
    neg_inf = s.dtype.type(-np.inf)
    for r in prange(B * bq):
        b, i = r // bq, r % bq
        row = s[b, i]
        mrow = mask[b if Bm > 1 else 0, mrow0 + i if Lm > 1 else 0]
        tmax = neg_inf
        for t in range(bk):
            if (causal and j0 + t > i0 + i) or (has_mask and mrow[j0 + t] == neg_inf):
                row[t] = neg_inf
            elif has_mask:
                row[t] += mrow[j0 + t]
            tmax = max(tmax, row[t])
        m_old = m[b, i]
        m_new = max(m_old, tmax)
        if m_new == neg_inf:
            row[:] = 0.0
            continue
        corr = fexp(m_old - m_new)
        total = s.dtype.type(0.0)
        for t in range(bk):
            p = fexp(row[t] - m_new)
            row[t] = p
            total += p
        l_sum[b, i] = l_sum[b, i] * corr + total
        m[b, i] = m_new
        for e in range(acc.shape[2]):
            acc[b, i, e] *= corr


@pjit
def _tile_probs_and_ds(s, dp, mask, has_mask, mrow0, causal, i0, j0, lse, D, scale):  # noqa: ANN001, ANN202
    """Backward of one tile: s (B, bq, bk) scores -> p = exp(s - lse) in place; dp -> ds = p (dp - D) scale."""
    B, bq, bk = s.shape
    Bm, Lm = mask.shape[0], mask.shape[1]
    neg_inf = s.dtype.type(-np.inf)
    zero = s.dtype.type(0.0)  # a Python 0.0 would make x float64, and exp the slow scalar C call
    for r in prange(B * bq):
        b, i = r // bq, r % bq
        mrow = mask[b if Bm > 1 else 0, mrow0 + i if Lm > 1 else 0]
        li = lse[b, i]
        for t in range(bk):
            blocked = (causal and j0 + t > i0 + i) or (has_mask and mrow[j0 + t] == neg_inf) or li == neg_inf
            if blocked:
                s[b, i, t] = 0.0
                dp[b, i, t] = 0.0
            else:
                x = s[b, i, t] + (mrow[j0 + t] if has_mask else zero)
                p = fexp(x - li)
                s[b, i, t] = p
                dp[b, i, t] = p * (dp[b, i, t] - D[b, i]) * scale


def attention_forward(q, k, v, mask, scale, causal):  # noqa: ANN001, ANN201
    """q (B, L, E), k (B, S, E), v (B, S, Ev), mask None or (Bm, Lm, S) -> out (B, L, Ev), lse (B, L)."""
    q, k, v, m_arr, has_mask = _prep(q, k, v, mask)
    B, L, _ = q.shape
    S, Ev = k.shape[1], v.shape[2]
    dt = q.dtype
    scale = dt.type(scale)
    out = np.empty((B, L, Ev), dt)
    lse = np.empty((B, L), dt)
    kT = k.transpose(0, 2, 1)                                               # (B, E, S) view
    for i0 in range(0, L, BQ):
        i1 = min(i0 + BQ, L)
        qb = q[:, i0:i1] * scale                                            # (B, bq, E)
        m = np.full((B, i1 - i0), -np.inf, dt)
        l_sum = np.zeros((B, i1 - i0), dt)
        acc = np.zeros((B, i1 - i0, Ev), dt)
        stop = min(S, i1) if causal else S
        for j0 in range(0, stop, BK):
            j1 = min(j0 + BK, stop)
            s = np.matmul(qb, kT[:, :, j0:j1])                             # (B, bq, bk) scores, BLAS
            _tile_softmax_update(s, m_arr, has_mask, i0, causal, i0, j0, m, l_sum, acc)
            acc += np.matmul(s, v[:, j0:j1])                                # += P V, BLAS
        with np.errstate(divide="ignore", invalid="ignore"):
            empty = l_sum == 0
            out[:, i0:i1] = np.where(empty[..., None], 0, acc / np.where(empty, 1, l_sum)[..., None])
            lse[:, i0:i1] = np.where(empty, -np.inf, m + np.log(np.where(empty, 1, l_sum)))
    return out, lse


def attention_backward(dout, q, k, v, out, lse, mask, scale, causal):  # noqa: ANN001, ANN201
    q, k, v, m_arr, has_mask = _prep(q, k, v, mask)
    dout = np.ascontiguousarray(dout)
    B, L, _ = q.shape
    S = k.shape[1]
    dt = q.dtype
    scale = dt.type(scale)
    D = (dout * out).sum(axis=-1)                                           # (B, L) = rowsum(p * dp)
    dq = np.zeros_like(q)
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    kT, vT = k.transpose(0, 2, 1), v.transpose(0, 2, 1)
    for i0 in range(0, L, BQ):
        i1 = min(i0 + BQ, L)
        qb, dob = q[:, i0:i1], dout[:, i0:i1]
        qs = qb * scale
        stop = min(S, i1) if causal else S
        for j0 in range(0, stop, BK):
            j1 = min(j0 + BK, stop)
            s = np.matmul(qs, kT[:, :, j0:j1])                             # recomputed scores
            dp = np.matmul(dob, vT[:, :, j0:j1])                           # dP = dO V^T
            _tile_probs_and_ds(s, dp, m_arr, has_mask, i0, causal, i0, j0, lse[:, i0:i1], D[:, i0:i1], scale)
            dv[:, j0:j1] += np.matmul(s.transpose(0, 2, 1), dob)           # dV += P^T dO
            dq[:, i0:i1] += np.matmul(dp, k[:, j0:j1])                     # dQ += dS K
            dk[:, j0:j1] += np.matmul(dp.transpose(0, 2, 1), qb)           # dK += dS^T Q
    return dq, dk, dv

