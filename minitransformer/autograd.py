"""The autograd core: grad mode, the graph node (`Function`) and the backward engine.

A `Function` subclass is one op. Its `forward` takes and returns plain arrays; its `backward` takes the
gradient of the output (`dout`) and returns one gradient per input (or None). `Function.apply` runs
forward and, when grad mode is on and some input requires grad, records the node on the output tensor.

`backward` walks the graph from a root tensor in reverse topological order. The order is found with an
explicit stack, never recursion, so a chain of any length works. See docs/autograd.md for the rules.

What this file deliberately does not hold: the Tensor class (tensor.py) and the ops (ops/).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .xp import array_module

if TYPE_CHECKING:
    from .tensor import Tensor  # for type hints only


class _GradMode(threading.local):
    enabled = True


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    """True when new ops are recorded for backward."""
    return _grad_mode.enabled


class set_grad_enabled:
    """Turn recording on or off: as a call (`set_grad_enabled(False)`) or as a context manager."""

    def __init__(self, mode: bool) -> None:
        self.prev = _grad_mode.enabled
        _grad_mode.enabled = bool(mode)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        _grad_mode.enabled = self.prev


@contextmanager
def no_grad() -> Iterator[None]:
    """Context manager (and decorator) under which no op is recorded; results never require grad."""
    prev = _grad_mode.enabled
    _grad_mode.enabled = False
    try:
        yield
    finally:
        _grad_mode.enabled = prev


@contextmanager
def enable_grad() -> Iterator[None]:
    """Context manager that turns recording back on inside a `no_grad` block."""
    prev = _grad_mode.enabled
    _grad_mode.enabled = True
    try:
        yield
    finally:
        _grad_mode.enabled = prev


class Function:
    """One op: `forward(*arrays, **kwargs) -> array` and `backward(dout) -> tuple of grads`.

    Class attributes an op may set:
      saves_inputs  indices of the inputs whose values backward reads; an in-place change to one of them
                    after forward makes backward raise instead of giving a wrong gradient (default: all).
      saves_output  True when backward reads the output (exp, tanh, softmax, ...); same protection.
      is_view       True when the output may share memory with input 0 (reshape, transpose, ...); the two
                    then share one version counter, so writing through either is seen by both.
      kernels       the backend kernels (backend.py) its forward and backward call, for the profiler and
                    the graph pictures, which say which tier ran them.
    """

    saves_inputs: tuple[int, ...] | None = None  # None = every input
    saves_output = False
    is_view = False
    kernels: tuple[str, ...] = ()

    inputs: tuple[Tensor, ...]
    versions: tuple[int, ...]
    out_version: tuple[list[int], int] | None = None

    def forward(self, *arrays: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def backward(self, dout: Any) -> tuple[Any, ...]:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **kwargs: Any) -> Tensor:
        """Run forward on the inputs' arrays and record the node when a gradient will be needed."""
        if _PROFILER is not None:  # a profiler.profile block is open: it times the call
            return _PROFILER.run_op(cls, inputs, kwargs)
        return cls._apply(inputs, kwargs)

    @classmethod
    def _apply(cls, inputs: tuple[Tensor, ...], kwargs: dict[str, Any]) -> Tensor:
        Tensor = _tensor_class()  # noqa: N806

        ctx = cls()
        out = ctx.forward(*[t.data for t in inputs], **kwargs)
        record = _grad_mode.enabled and any(t.requires_grad for t in inputs)
        result = Tensor(out, requires_grad=record)
        if cls.is_view and inputs[0].data.__class__ is out.__class__ and _shares_memory(out, inputs[0].data):
            result._version = inputs[0]._version
        if record:
            ctx.inputs = inputs
            ctx.versions = tuple(t._version[0] for t in inputs)
            if cls.saves_output:
                ctx.out_version = (result._version, result._version[0])
            result._ctx = ctx
        return result

    def check_versions(self) -> None:
        """Raise if a tensor that backward reads was modified in place after forward."""
        idx = range(len(self.inputs)) if self.saves_inputs is None else self.saves_inputs
        for i in idx:
            t = self.inputs[i]
            if t._version[0] != self.versions[i]:
                raise RuntimeError(
                    f"one of the tensors needed for gradient computation (input {i} of "
                    f"{type(self).__name__}, shape {tuple(t.shape)}) has been modified by an in-place "
                    f"operation: it is at version {t._version[0]}, expected version {self.versions[i]}. "
                    "Use an out-of-place op, or modify a copy (.clone())."
                )
        if self.out_version is not None:
            counter, seen = self.out_version
            if counter[0] != seen:
                raise RuntimeError(
                    f"the output of {type(self).__name__} is needed for gradient computation but was "
                    f"modified by an in-place operation (version {counter[0]}, expected {seen})"
                )


def _tensor_class() -> type:
    """tensor.Tensor, imported once (tensor.py imports this module, so not at the top); an import statement
    in Function.apply cost a measurable share of a generation step."""
    global _TENSOR
    if _TENSOR is None:
        from .tensor import Tensor  # tensor.py imports this module: only once both are loaded

        _TENSOR = Tensor
    return _TENSOR


_TENSOR: type | None = None

# The open profiler.profile, or None (nearly always): Function.apply and backward test it once per op.
_PROFILER: Any = None


def _shares_memory(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.may_share_memory(a, b))
    return bool(array_module(a).may_share_memory(a, b))


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from `root` that require grad, each after all of its inputs (iterative DFS)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        ctx = t._ctx
        if ctx is not None:
            if not hasattr(ctx, "inputs"):
                raise RuntimeError(
                    "trying to backward through the graph a second time: its saved values were freed by "
                    "the first backward. Pass retain_graph=True to the first backward call if you need to."
                )
            for inp in ctx.inputs:
                if inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


class _BackwardState(threading.local):
    queued: list[Callable[[], None]] | None = None  # while a backward runs: what queue_callback was given


_backward_state = _BackwardState()


def queue_callback(fn: Callable[[], None]) -> None:
    """Call `fn()` once the backward pass now running has finished, when every leaf has its gradient
    (torch's `Variable._execution_engine.queue_callback`). DistributedDataParallel averages the gradients
    across ranks there. Only valid during a backward pass (from an op's `backward`); a backward that
    raises drops what was queued."""
    if _backward_state.queued is None:
        raise RuntimeError("queue_callback can only be called during a backward pass")
    _backward_state.queued.append(fn)


@contextmanager
def _callback_queue() -> Iterator[list[Callable[[], None]]]:
    """The list queue_callback appends to during one backward (its own list for a nested backward)."""
    outer = _backward_state.queued
    _backward_state.queued = queued = []
    try:
        yield queued
    finally:
        _backward_state.queued = outer


def backward(root: Tensor, grad: Any, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf), weighted by `grad`, into `.grad` of every leaf that requires grad.

    Rules (tested in tests/test_engine.py, explained in docs/autograd.md):
      - reverse topological order from an explicit stack: no recursion limit on depth;
      - a tensor used several times receives the sum of the gradients of every use;
      - leaves accumulate across calls (`.grad += ...`) until zeroed; non-leaves keep no grad unless
        `retain_grad()` was called on them;
      - the graph's saved values are freed afterwards unless `retain_graph=True`; a second backward
        through a freed graph raises;
      - backward raises if a tensor it needs was modified in place after forward;
      - the functions given to `queue_callback` during the pass run once it has finished.
    """
    from .tensor import Tensor  # tensor.py imports this module: only once both are loaded

    order = _topological_order(root)
    grads: dict[int, Any] = {id(root): grad}
    prof = _PROFILER
    with no_grad(), _callback_queue() as queued:
        for t in reversed(order):
            g = grads.pop(id(t), None)
            if g is None:
                continue
            ctx = t._ctx
            if ctx is None or t._retains_grad:
                if t.grad is None:
                    # Own the memory: an op may hand the same array to several inputs.
                    t.grad = Tensor(g.copy())
                else:
                    t.grad.data += g
            if ctx is None:
                continue
            ctx.check_versions()
            input_grads = ctx.backward(g) if prof is None else prof.run_backward(ctx, g)
            for inp, gi in zip(ctx.inputs, input_grads, strict=True):
                if gi is None or not inp.requires_grad:
                    continue
                if gi.shape != inp.data.shape:
                    raise RuntimeError(
                        f"internal error: {type(ctx).__name__}.backward returned a gradient of shape "
                        f"{gi.shape} for an input of shape {inp.data.shape}"
                    )
                prev = grads.get(id(inp))
                # Never add in place: `gi` may alias `g` or another input's gradient.
                grads[id(inp)] = gi if prev is None else prev + gi
            if not retain_graph:
                ctx.__dict__.clear()
    for fn in queued:
        fn()
