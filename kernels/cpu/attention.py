"""Fused scaled dot-product attention, FlashAttention style, Numba (same names and signatures as
reference/attention.py). Two versions, in order of sophistication:

v1  row-streaming, pure Numba (below): simple, O(TILE) extra memory per row, but every score is a
    separate dot product, so it runs no faster than the reference's BLAS calls.
v2  tiled with BLAS (in production): blocks of BQ queries against tiles of BK keys; the tile products (Q K^T, P V and
    the five products of the backward) go to NumPy's batched matmul, and everything between them (mask,
    online softmax, rescaling, dS) is one Numba pass over the tile. Tiles above the diagonal are skipped
    when causal; inside the tile on the diagonal, keys after it are cut by a select. NumPy's batched matmul
    runs its BLAS calls one after another on one core, so with two threads or more the first leading
    dimension is split in two halves that run side by side, one on a helper thread (_jit.HalfSplitter),
    with serial builds of the tile kernels that release the GIL. q, k, v may have any
    leading dims and strides (BLAS reads the (B, nh, T, hs) head views of a packed qkv buffer directly), the
    output is allocated in q's memory order, and the backward can write into given gradient views; the first
    product into each gradient tile is written in place (matmul's out=), later ones added.
    Extra memory: a few (B, BQ, BK) tiles, independent of the sequence length.
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

import numba
import numpy as np

from ._jit import HalfSplitter, fexp, pjit, prange, row_max, serial_and_parallel

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


def _layout_like(a, shape):  # noqa: ANN001, ANN202
    """An empty array of `shape` (same ndim as a) whose memory order follows a's strides: for q, a view
    (B, nh, T, hs) of a packed (B, T, 3, nh, hs) buffer, the result is (B, T, nh, hs) in memory, so the
    caller's transpose back to (B, T, C) is free."""
    return np.empty_like(a, shape=shape)


def _softmax_update_impl(s, mask, has_mask, mrow0, causal, i0, j0, scale, m, l_sum, acc):  # noqa: ANN001, ANN202
    """Raw scores q k^T s (B, bq, bk) -> p = exp(s scale + mask - m_new) in place, updating the running max
    m, sum l_sum and rescaling the accumulator acc (B, bq, Ev) for each row. Keys after a causal row's
    diagonal become -inf, then p = 0. Every loop runs over the whole tile row, with the cut as a select,
    so that it vectorises (a loop of a varying length i + 1 left most of the diagonal tile to scalar
    remainder code), and the mask test sits outside the loops (inside, it kept them scalar: 2x slower).
    Without a mask and with scale > 0, the scale is applied inside the exp (max(s scale) = scale max(s)),
    which saves a pass over the tile."""
    B, bq, bk = s.shape
    Bm, Lm = mask.shape[0], mask.shape[1]
    neg_inf = s.dtype.type(-np.inf)
    zero = s.dtype.type(0.0)
    fold_scale = not has_mask and scale > zero
    row_scale = scale if fold_scale else s.dtype.type(1.0)                 # what the exp pass still multiplies by
    for r in prange(B * bq):
        b, i = r // bq, r % bq
        row = s[b, i]
        n = min(bk, max(0, i0 + i - j0 + 1)) if causal else bk             # keys this row may see
        if has_mask:
            mseg = mask[b if Bm > 1 else 0, mrow0 + i if Lm > 1 else 0][j0:j0 + bk]
            for t in range(bk):
                x = mseg[t]
                y = row[t] * scale + x
                row[t] = y if (t < n and x != neg_inf) else neg_inf
        elif not fold_scale:
            for t in range(bk):
                y = row[t] * scale
                row[t] = y if t < n else neg_inf
        m_old = m[b, i]
        row_top = row_max(row, n) * scale if fold_scale else row_max(row, bk)
        m_new = max(m_old, row_top) if row_top == row_top else row_top      # a NaN score stays NaN (max drops it)
        if m_new == neg_inf:
            row[:] = zero
            continue
        corr = fexp(m_old - m_new)
        total = zero
        for t in range(bk):                 # scaled rows (not folded) already hold -inf past the cut: exp = 0
            p = fexp(row[t] * row_scale - m_new)
            p = p if t < n else zero
            row[t] = p
            total += p
        l_sum[b, i] = l_sum[b, i] * corr + total
        m[b, i] = m_new
        if corr != 1.0:
            for e in range(acc.shape[2]):
                acc[b, i, e] *= corr


def _probs_and_ds_impl(s, dp, mask, has_mask, mrow0, causal, i0, j0, lse, D, scale):  # noqa: ANN001, ANN202
    """Backward of one tile: raw scores s (B, bq, bk) -> p = exp(s scale + mask - lse) in place;
    dp -> ds = p (dp - D) scale. Blocked keys (masked, after the diagonal, or every key of a row) get 0.
    Whole-row loops with the causal cut as a select after the exp, and the mask test outside the loop, as
    in the forward."""
    B, bq, bk = s.shape
    Bm, Lm = mask.shape[0], mask.shape[1]
    neg_inf = s.dtype.type(-np.inf)
    zero = s.dtype.type(0.0)  # a Python 0.0 would make x float64, and exp the slow scalar C call
    for r in prange(B * bq):
        b, i = r // bq, r % bq
        li, Di = lse[b, i], D[b, i]
        n = min(bk, max(0, i0 + i - j0 + 1)) if causal else bk
        srow, dprow = s[b, i], dp[b, i]
        if li == neg_inf:                                                   # a row that sees no key at all
            srow[:] = zero
            dprow[:] = zero
            continue
        if has_mask:
            mseg = mask[b if Bm > 1 else 0, mrow0 + i if Lm > 1 else 0][j0:j0 + bk]
            for t in range(bk):
                x = mseg[t]
                p = fexp(srow[t] * scale + x - li)                          # exp(-inf) = 0 for a masked key
                p = p if (t < n and x != neg_inf) else zero
                srow[t] = p
                dprow[t] = p * (dprow[t] - Di) * scale
        else:
            for t in range(bk):
                p = fexp(srow[t] * scale - li)
                p = p if t < n else zero
                srow[t] = p
                dprow[t] = p * (dprow[t] - Di) * scale


# Each tile kernel is built twice: parallel over the tile's rows (the whole batch in one call), and serial
# without the GIL for the split below, where each half of the batch runs in its own Python thread.
_SOFTMAX_UPDATE = serial_and_parallel(_softmax_update_impl)
_PROBS_AND_DS = serial_and_parallel(_probs_and_ds_impl)


SPLIT_BATCH: bool | None = None  # None: decide by the thread count; True/False force it (the tests use both)


def _halves(n_lead: int) -> bool:
    """Whether to split the batch into two halves run side by side (see HalfSplitter): at least two threads
    and at least two entries along the first leading dimension."""
    if n_lead < 2:
        return False
    return numba.get_num_threads() >= 2 if SPLIT_BATCH is None else SPLIT_BATCH


def _mask_arg(mask, dt):  # noqa: ANN001, ANN202
    if mask is None:
        return _NO_MASK[dt], False
    return np.ascontiguousarray(mask, dtype=dt), True


def attention_forward(q, k, v, mask, scale, causal):  # noqa: ANN001, ANN201
    """q (..., L, E), k (..., S, E), v (..., S, Ev) with the same leading dims (any strides; nothing is
    copied), mask None or (Bm, Lm, S) with Bm in {1, prod(...)} -> out (..., L, Ev), lse (..., L).
    `out` is laid out in memory like q (see _layout_like). With two threads or more, the two halves of
    the first leading dimension run side by side (NumPy's batched matmul keeps to one core)."""
    lead, L, Ev = q.shape[:-2], q.shape[-2], v.shape[-1]
    dt = q.dtype
    m_arr, has_mask = _mask_arg(mask, dt)
    scale = dt.type(scale)
    out = _layout_like(q, lead + (L, Ev))
    lse = np.empty(lead + (L,), dt)
    if not _halves(lead[0] if lead else 0):
        _forward_into(q, k, v, m_arr, has_mask, scale, causal, out, lse, True)
        return out, lse

    def part(lo, hi):  # noqa: ANN001, ANN202
        _forward_into(q[lo:hi], k[lo:hi], v[lo:hi], _mask_rows(m_arr, lead, lo, hi), has_mask, scale, causal,
                      out[lo:hi], lse[lo:hi], False)
    _SPLITTER.run(part, lead[0])
    return out, lse


def _mask_rows(m_arr, lead, lo, hi):  # noqa: ANN001, ANN202
    """The rows of a (Bm, Lm, S) mask that belong to entries lo:hi of the first leading dimension."""
    if m_arr.shape[0] == 1:
        return m_arr
    per = m_arr.shape[0] // lead[0]                                         # rows per first-dim entry
    return m_arr[lo * per:hi * per]


def _forward_into(q, k, v, m_arr, has_mask, scale, causal, out, lse, parallel):  # noqa: ANN001, ANN202
    softmax_update = _SOFTMAX_UPDATE[parallel]
    lead, (L, _), (S, Ev) = q.shape[:-2], q.shape[-2:], v.shape[-2:]
    Bn = int(np.prod(lead, dtype=np.int64))
    dt = q.dtype
    kT = np.swapaxes(k, -1, -2)                                             # (..., E, S) view
    for i0 in range(0, L, BQ):
        i1 = min(i0 + BQ, L)
        bq = i1 - i0
        qb = q[..., i0:i1, :]                                               # (..., bq, E) view
        m = np.full((Bn, bq), -np.inf, dt)
        l_sum = np.zeros((Bn, bq), dt)
        acc = np.empty(lead + (bq, Ev), dt)
        stop = min(S, i1) if causal else S
        for j0 in range(0, stop, BK):
            j1 = min(j0 + BK, stop)
            s = np.matmul(qb, kT[..., j0:j1])                               # (..., bq, bk) raw scores, BLAS
            softmax_update(s.reshape(Bn, bq, j1 - j0), m_arr, has_mask, i0, causal, i0, j0, scale, m, l_sum,
                           acc.reshape(Bn, bq, Ev))
            if j0 == 0:
                np.matmul(s, v[..., j0:j1, :], out=acc)                     # P V, BLAS
            else:
                acc += np.matmul(s, v[..., j0:j1, :])
        if stop == 0:
            acc[...] = 0
        empty = l_sum == 0                                                  # rows with every key blocked
        with np.errstate(divide="ignore"):
            inv = np.where(empty, 0, 1 / np.where(empty, 1, l_sum))
            lse[..., i0:i1] = np.where(empty, -np.inf, m + np.log(np.where(empty, 1, l_sum))).reshape(lead + (bq,))
        np.multiply(acc, inv.reshape(lead + (bq, 1)), out=out[..., i0:i1, :])


def attention_backward(dout, q, k, v, out, lse, mask, scale, causal, grads=None):  # noqa: ANN001, ANN201
    """-> dq, dk, dv shaped like q, k, v (any leading dims and strides, as attention_forward). `grads`:
    optional zero-filled arrays (dq, dk, dv) to write into, e.g. views of one packed buffer."""
    lead = q.shape[:-2]
    dt = q.dtype
    m_arr, has_mask = _mask_arg(mask, dt)
    scale = dt.type(scale)
    dq, dk, dv = grads if grads is not None else (np.zeros_like(q), np.zeros_like(k), np.zeros_like(v))
    if not _halves(lead[0] if lead else 0):
        _backward_into(dout, q, k, v, out, lse, m_arr, has_mask, scale, causal, dq, dk, dv, True)
        return dq, dk, dv

    def part(lo, hi):  # noqa: ANN001, ANN202
        _backward_into(dout[lo:hi], q[lo:hi], k[lo:hi], v[lo:hi], out[lo:hi], lse[lo:hi],
                       _mask_rows(m_arr, lead, lo, hi), has_mask, scale, causal, dq[lo:hi], dk[lo:hi], dv[lo:hi],
                       False)
    _SPLITTER.run(part, lead[0])
    return dq, dk, dv


def _backward_into(dout, q, k, v, out, lse, m_arr, has_mask, scale, causal, dq, dk, dv, parallel):  # noqa: ANN001, ANN202
    probs_and_ds = _PROBS_AND_DS[parallel]
    lead, L, S = q.shape[:-2], q.shape[-2], k.shape[-2]
    Bn = int(np.prod(lead, dtype=np.int64))
    D = np.einsum("...e,...e->...", dout, out).reshape(Bn, L)               # rowsum(p * dp), one pass
    lse2 = lse.reshape(Bn, L)
    kT, vT = np.swapaxes(k, -1, -2), np.swapaxes(v, -1, -2)
    key_tiles_written = set()

    def add_product(dst, a, b, first):  # noqa: ANN001, ANN202
        # dst += a @ b; the first product into a (zero-filled) tile is written in place, with no temporary
        if first:
            np.matmul(a, b, out=dst)
        else:
            dst += np.matmul(a, b)

    for i0 in range(0, L, BQ):
        i1 = min(i0 + BQ, L)
        qb, dob = q[..., i0:i1, :], dout[..., i0:i1, :]
        stop = min(S, i1) if causal else S
        for j0 in range(0, stop, BK):
            j1 = min(j0 + BK, stop)
            s = np.matmul(qb, kT[..., j0:j1])                               # recomputed raw scores
            dp = np.matmul(dob, vT[..., j0:j1])                             # dP = dO V^T
            probs_and_ds(s.reshape(Bn, i1 - i0, j1 - j0), dp.reshape(Bn, i1 - i0, j1 - j0), m_arr, has_mask,
                         i0, causal, i0, j0, np.ascontiguousarray(lse2[:, i0:i1]),
                         np.ascontiguousarray(D[:, i0:i1]), scale)
            first_for_keys = j0 not in key_tiles_written
            key_tiles_written.add(j0)
            add_product(dv[..., j0:j1, :], np.swapaxes(s, -1, -2), dob, first_for_keys)   # dV += P^T dO
            add_product(dq[..., i0:i1, :], dp, k[..., j0:j1, :], j0 == 0)                 # dQ += dS K
            add_product(dk[..., j0:j1, :], np.swapaxes(dp, -1, -2), qb, first_for_keys)   # dK += dS^T Q


_SPLITTER = HalfSplitter()


# ---- one decoding step -----------------------------------------------------------------------------------
def _decode_impl(q, k, v, first, S, scale, out):  # noqa: ANN001, ANN202
    """Per (row, head): the head's keys and values from the row's first token on are taken as 2-D views and
    every loop runs from 0 (a loop over range(first, S) kept index checks inside and did not vectorise: 1.6x
    slower at the baby's shapes). Keys go four at a time: four dot products share each load of q, and the
    weighted sum adds four value rows per pass over the output, which it loads and stores a quarter as often."""
    B, nh, _, E = k.shape
    zero = q.dtype.type(0.0)
    for r in prange(B * nh):
        b, h = r // nh, r % nh
        f = first[b]
        n = S - f
        n4 = n - n % 4                                                          # keys in whole groups of four
        kr, vr, qr, o = k[b, h][f:S], v[b, h][f:S], q[b, h], out[b, h]
        s = np.empty(n, q.dtype)
        for t in range(0, n4, 4):
            k0, k1, k2, k3 = kr[t], kr[t + 1], kr[t + 2], kr[t + 3]
            a0 = a1 = a2 = a3 = zero
            for e in range(E):
                qe = qr[e]
                a0 += qe * k0[e]
                a1 += qe * k1[e]
                a2 += qe * k2[e]
                a3 += qe * k3[e]
            s[t], s[t + 1], s[t + 2], s[t + 3] = a0 * scale, a1 * scale, a2 * scale, a3 * scale
        for t in range(n4, n):
            kt = kr[t]
            acc = zero
            for e in range(E):
                acc += qr[e] * kt[e]
            s[t] = acc * scale
        m = row_max(s, n)
        total = zero
        for t in range(n):
            p = fexp(s[t] - m)                                                  # max subtracted: no overflow
            s[t] = p
            total += p
        inv = q.dtype.type(1.0) / total
        for e in range(E):
            o[e] = zero
        for t in range(0, n4, 4):
            p0, p1, p2, p3 = s[t] * inv, s[t + 1] * inv, s[t + 2] * inv, s[t + 3] * inv
            v0, v1, v2, v3 = vr[t], vr[t + 1], vr[t + 2], vr[t + 3]
            for e in range(E):
                o[e] += p0 * v0[e] + p1 * v1[e] + p2 * v2[e] + p3 * v3[e]
        for t in range(n4, n):
            p = s[t] * inv
            vt = vr[t]
            for e in range(E):
                o[e] += p * vt[e]


# a few rows and heads: threads would cost more than they save, so the serial build below PARALLEL_FROM
_decode, _decode_par = serial_and_parallel(_decode_impl)
PARALLEL_FROM = 1 << 16              # B * nh * S * E multiply-adds from which the rows go to threads


def decode_attention_forward(q, k, v, first, scale, length=None):  # noqa: ANN001, ANN201
    """One decoding step, fused (scores, softmax, weighted sum in one pass per row and head): q (B, nh, E),
    k, v (B, nh, cap, E) of which the first `length` positions are used (default: all), first (B,) or
    None -> (B, nh, E); see the reference. Pass a cache's whole buffer with `length` rather than a view
    of its filled part: a contiguous array compiles to unit-stride loops that vectorise (a view does not,
    and ran twice as slow)."""
    B, nh, cap, E = k.shape
    S = cap if length is None else length
    f = np.zeros(B, np.int64) if first is None else np.ascontiguousarray(first, dtype=np.int64)
    out = np.empty((B, nh, E), q.dtype)
    fn = _decode_par if B * nh * S * E >= PARALLEL_FROM else _decode
    fn(np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v), f, S, q.dtype.type(scale), out)
    return out
