"""Test factories (MyGrad style): one declaration becomes a full Hypothesis test of an op.

`op_test(op, ref, shapes=..., ...)` returns a test function that draws shapes, float64 inputs and
keyword arguments, then checks:
  1. forward against `ref` (an independent float64 formula) with FORWARD_F64;
  2. every input's gradient against central differences of the op itself with GRAD_F64;
  3. that neither the inputs nor the upstream gradient were modified;
  4. that no gradient shares memory with an input, the upstream gradient, or another gradient.

`covers(*ops)` (or `op_test(..., covers=...)`) declares which ops of `mt.ops.OPS` / `NON_DIFFERENTIABLE`
a test checks; tests/test_op_coverage.py fails for an op that no test declares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt

from .gradcheck import numerical_grads
from .strategies import arrays, floats
from .tolerances import FORWARD_F64, GRAD_F64


def covers(*ops: str, forward: bool = True, grad: bool = True) -> Callable[[Any], Any]:
    """Declare that the decorated test checks each of `ops`: its forward against an independent formula
    (`forward`) and its float64 gradient against central differences (`grad`). The declaration is stored
    on the test (`op_checks`, op -> {"forward", "grad"}) where tests/test_op_coverage.py reads it."""
    return lambda test: _declare(test, ops, forward, grad)


def _declare(test: Any, ops: Sequence[str], forward: bool, grad: bool) -> Any:
    kinds = frozenset({"forward"} if forward else ()) | frozenset({"grad"} if grad else ())
    checks = dict(getattr(test, "op_checks", {}))
    for name in ops:
        checks[name] = checks.get(name, frozenset()) | kinds
    test.op_checks = checks
    return test


def check_op(op: Callable[..., Any], ref: Callable[..., Any] | None, inputs: Sequence[np.ndarray],
             kwargs: dict[str, Any], grad: bool = True, seed: int = 0) -> None:
    """The four checks above for one set of inputs."""
    originals = [a.copy() for a in inputs]
    tensors = [mt.tensor(a, requires_grad=grad) for a in inputs]
    out = op(*tensors, **kwargs)
    assert isinstance(out, mt.Tensor)
    assert out.dtype == np.float64, f"float64 inputs gave a {out.dtype} output"
    if ref is not None:
        expected = np.asarray(ref(*originals, **kwargs), dtype=np.float64)
        assert out.shape == expected.shape, f"shape {out.shape}, expected {expected.shape}"
        np.testing.assert_allclose(out.numpy(), expected, **FORWARD_F64)
    if not grad:
        return
    v = np.random.default_rng(seed).standard_normal(out.shape)
    upstream = mt.tensor(v)
    out.backward(upstream)
    np.testing.assert_array_equal(upstream.numpy(), v, err_msg="backward modified the upstream gradient")
    for t, o in zip(tensors, originals, strict=True):
        np.testing.assert_array_equal(t.numpy(), o, err_msg="the op modified its input")
    expected_grads = numerical_grads(lambda *xs: op(*xs, **kwargs), originals, v, range(len(inputs)))
    got = []
    for i, (t, g) in enumerate(zip(tensors, expected_grads, strict=True)):
        assert t.grad is not None, f"input {i} received no gradient"
        assert t.grad.shape == t.shape and t.grad.dtype == np.float64
        np.testing.assert_allclose(t.grad.numpy(), g, **GRAD_F64, err_msg=f"gradient of input {i}")
        got.append(t.grad.numpy())
        assert not np.shares_memory(t.grad.numpy(), t.numpy()), "a gradient aliases its input"
        assert not np.shares_memory(t.grad.numpy(), upstream.numpy()), "a gradient aliases the upstream"
    for i in range(len(got)):
        for j in range(i + 1, len(got)):
            assert not np.shares_memory(got[i], got[j]), f"gradients of inputs {i} and {j} alias"


def op_test(op: Callable[..., Any], ref: Callable[..., Any] | None, *, shapes: st.SearchStrategy,
            elements: Any = None, kwargs: Any = None, unique: bool = False,
            grad: bool = True, covers: str | tuple[str, ...] = (), backends: bool = False) -> Callable[..., None]:
    """Build a Hypothesis test for `op`.

    shapes    strategy of a tuple of shapes, one per tensor input
    elements  a strategy of floats for every input, or a list with one per input (default [-3, 3])
    kwargs    None, a strategy of dicts, or a function of the drawn shapes returning one
    unique    draw inputs without repeated values (no ties for max/min)
    covers    the names in mt.ops.OPS the test checks (forward when `ref` is given, gradient when `grad`)
    backends  run once per installed CPU backend (the kernel_backend fixture): for ops that call kernels
    """

    def run(data: st.DataObject) -> None:
        shp = data.draw(shapes, label="shapes")
        els = elements if isinstance(elements, (list, tuple)) else [elements] * len(shp)
        inputs = [data.draw(arrays(s, e if e is not None else floats(), unique=unique), label=f"x{i}")
                  for i, (s, e) in enumerate(zip(shp, els, strict=True))]
        kw_strategy = kwargs(shp) if callable(kwargs) else kwargs
        kw = data.draw(kw_strategy, label="kwargs") if kw_strategy is not None else {}
        check_op(op, ref, inputs, kw, grad=grad)

    if backends:
        @given(data=st.data())
        def test(kernel_backend: str, data: st.DataObject) -> None:
            run(data)
    else:
        @given(data=st.data())
        def test(data: st.DataObject) -> None:
            run(data)

    return _declare(test, (covers,) if isinstance(covers, str) else covers, forward=ref is not None, grad=grad)


def grid(lo: float = -3.0, hi: float = 3.0, step: float = 0.1, offset: float = 0.0) -> st.SearchStrategy:
    """Values on a grid lo + offset + k*step: exact ties are possible, near-ties are not."""
    n = int(round((hi - lo) / step))
    return st.integers(0, n).map(lambda k: lo + offset + k * step)


def attention_mask(kind: str, rng: np.random.Generator, B: int, L: int, S: int, dtype: Any) -> np.ndarray | None:
    """An additive attention mask (Bm, Lm, S) of one kind: "none", "padding" (keys of each batch entry
    blocked at random), "full" (arbitrary values per query and key), "fully_masked_rows" (two queries that
    see no key at all)."""
    if kind == "padding":
        return np.where(rng.random((B, 1, S)) < 0.3, -np.inf, 0).astype(dtype)
    if kind == "full":
        return rng.standard_normal((1, L, S)).astype(dtype)
    if kind == "fully_masked_rows":
        mask = np.zeros((1, L, S), dtype)
        mask[0, rng.integers(0, L, 2)] = -np.inf
        return mask
    return None
