"""Hypothesis strategies shared by the tests: shapes (size-1 and broadcastable ones included) and
float64 arrays with values in safe bounds (away from an op's kinks and poles when asked)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_SIDE = 4


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = MAX_SIDE):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num: int = 2, min_dims: int = 0, max_dims: int = 4):
    """Tuples of `num` shapes that broadcast together (some dims 1, some missing)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num, min_dims=min_dims, max_dims=max_dims,
                                             max_side=MAX_SIDE).map(lambda s: s.input_shapes)


def floats(lo: float = -3.0, hi: float = 3.0, avoid: float | None = None):
    """Floats in [lo, hi]; with `avoid=eps`, none within eps of zero (a kink or a pole)."""
    base = st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)
    if avoid is None:
        return base
    return st.one_of(st.floats(max(lo, avoid), hi), st.floats(lo, min(hi, -avoid)))


def arrays(shape, elements=None, unique: bool = False):
    return hnp.arrays(np.float64, shape, elements=elements if elements is not None else floats(),
                      unique=unique)


def dim_kwargs(shps, extra: int = 0):
    """kwargs {"dim": d} with d a valid dim of the first drawn shape (extra=1 allows one past the end,
    as unsqueeze and stack do)."""
    nd = len(shps[0])
    return st.fixed_dictionaries({"dim": st.integers(-nd - extra, nd - 1 + extra)})
