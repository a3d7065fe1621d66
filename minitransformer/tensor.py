"""The Tensor: an array (NumPy or CuPy), an optional gradient, and the graph node that produced it.

Kept small on purpose: the ops live in `ops/` and are bound to Tensor as methods in `methods.py` (so are
`to` and `__setitem__`, which call ops: this file imports nothing from `ops/`); the engine lives in
`autograd.py`. This file holds construction, the properties PyTorch users expect, `backward`, and the in-place
ops (which are not recorded in the graph; see docs/autograd.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import autograd
from .dtypes import float16, float32, float64, get_default_dtype, int32, int64, is_floating
from .random import rand_array, randn_array
from .xp import array_module, device, device_of, normalize_device, to_device


def to_array(data: Any, dtype: Any = None, device: str | None = None) -> Any:
    """Convert Python data, a NumPy/CuPy array or a Tensor to an array with PyTorch's dtype rules:
    Python floats get the default dtype, ints int64, bools bool; arrays keep their dtype."""
    if isinstance(data, Tensor):
        data = data.data
    xp = array_module(data)
    if dtype is not None:
        arr = xp.asarray(data, dtype=np.dtype(dtype))
    elif hasattr(data, "dtype"):
        arr = xp.asarray(data)
    else:
        try:
            arr = np.asarray(data)
        except ValueError:
            raise ValueError(_ragged(data) or "cannot make a tensor from this data") from None
        if arr.dtype.kind == "f":
            arr = arr.astype(get_default_dtype(), copy=False)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64, copy=False)
        elif arr.dtype.kind not in "b":
            raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")
    if device is not None:
        arr = to_device(arr, normalize_device(device))
    return arr


def _ragged(data: Any, where: str = "") -> str | None:
    """The first place where nested lists have rows of different lengths, as one line (None: none found)."""
    if not isinstance(data, (list, tuple)):
        return None
    rows = [len(r) if isinstance(r, (list, tuple)) else None for r in data]
    if len(set(rows)) > 1:
        shown = ", ".join("a number" if n is None else str(n) for n in rows[:8]) + (", ..." if len(rows) > 8 else "")
        return (f"cannot make a tensor from ragged nested lists: the rows of data{where} have lengths {shown}; "
                "every row must have the same length")
    for i, r in enumerate(data):
        found = _ragged(r, f"{where}[{i}]")
        if found:
            return found
    return None


class Tensor:
    """An n-dimensional array that can record the ops applied to it and compute gradients.

    `data` is the underlying NumPy (or CuPy) array; `grad` is a Tensor or None. Build tensors with
    `mt.tensor(...)`, `mt.zeros(...)` and friends rather than with this constructor.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_ctx", "_version", "_retains_grad", "__weakref__")
    __array_ufunc__ = None  # `ndarray + Tensor` defers to Tensor.__radd__ instead of looping over it

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if not (isinstance(data, np.ndarray) or type(data).__module__.startswith("cupy")):
            data = to_array(data)
        self.data = data
        self.grad: Tensor | None = None
        self._ctx: autograd.Function | None = None
        self._version = [0]  # shared with views; bumped by every in-place change
        self._retains_grad = False
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    # ----------------------------------------------------------------------------------------------
    # properties
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not is_floating(self.data.dtype):
            raise RuntimeError(
                f"only tensors of floating dtype can require gradients, this one is {self.data.dtype}"
            )
        if not value and self._ctx is not None:
            raise RuntimeError("requires_grad can only be changed on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> device:
        """`mt.device("cpu")` or `mt.device("cuda")`: a `str` subclass, so it compares equal to "cpu"."""
        return device(device_of(self.data))

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> autograd.Function | None:
        return self._ctx

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    def size(self, dim: int | None = None) -> Any:
        """The shape as a tuple, or the length of dimension `dim`."""
        return self.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return int(self.data.itemsize)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return int(self.data.shape[0])

    # ----------------------------------------------------------------------------------------------
    # conversion
    def numpy(self) -> np.ndarray:
        """The underlying NumPy array (shares memory). Raises for a CUDA tensor: call .cpu() first."""
        if self.device != "cpu":
            raise TypeError("can't convert a cuda tensor to numpy: use .cpu().numpy()")
        return self.data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"a tensor with {self.data.size} elements cannot be converted to a scalar")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return to_device(self.data, "cpu").tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> Any:
        """Called only for a name Tensor lacks: say that PyTorch's method is not supported here."""
        if name.startswith("__"):
            raise AttributeError(f"'Tensor' object has no attribute {name!r}")
        raise AttributeError(f"torch.Tensor.{name} is not supported by minitransformer ('Tensor' object has no "
                             f"attribute {name!r}; docs/pytorch.md lists what is supported)")

    def __format__(self, spec: str) -> str:
        """`f"{loss:.4f}"` formats a one-element tensor as its number (as PyTorch); no spec gives repr."""
        if self.data.size == 1 and self.data.ndim == 0:
            return format(self.item(), spec)
        if not spec:
            return str(self)
        raise TypeError(f"unsupported format string {spec!r} for a tensor of shape {self.shape}: only a 0-d "
                        "tensor formats as a number (use .item() or .tolist())")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the values and requires_grad (not the graph), as PyTorch does; used by DataLoader workers."""
        return (_rebuild_tensor, (to_device(self.data, "cpu"), self._requires_grad and self._ctx is None,
                                  device_of(self.data)))

    def __repr__(self) -> str:
        body = np.array2string(to_device(self.data, "cpu"), separator=", ", prefix="tensor(")
        extras = []
        if self.data.dtype not in (get_default_dtype(), np.dtype(np.int64), np.dtype(np.bool_)):
            extras.append(f"dtype={self.data.dtype}")
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{type(self._ctx).__name__}Backward>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body, *extras]) + ")"

    # ----------------------------------------------------------------------------------------------
    # graph
    def detach(self) -> Tensor:
        """A new tensor sharing this one's data (and version counter), cut from the graph."""
        out = Tensor(self.data)
        out._version = self._version
        return out

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep `.grad` on this non-leaf tensor after backward (leaves always keep theirs)."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that does not require grad")
        self._retains_grad = True

    def backward(self, gradient: Any = None, retain_graph: bool | None = None,
                 create_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into `.grad` of every leaf it depends on.

        `gradient` (same shape as this tensor) is required unless this tensor has one element; it weights
        the result (a vector-Jacobian product). See `autograd.backward` for the rules.
        """
        if create_graph:
            raise NotImplementedError("higher-order gradients (create_graph=True) are not supported")
        if not self._requires_grad:
            raise RuntimeError("this tensor does not require grad and has no graph to backward through")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; this tensor has shape "
                    f"{self.shape}: pass `gradient` of that shape"
                )
            g = array_module(self.data).ones_like(self.data)
        else:
            g = to_array(gradient, dtype=self.data.dtype)
            if g.shape != self.data.shape:
                raise ValueError(f"backward: gradient has shape {tuple(g.shape)}, tensor has {self.shape}")
            if device_of(g) != self.device:
                raise TypeError(f"backward: gradient is on {device_of(g)}, tensor on {self.device}")
        autograd.backward(self, g, retain_graph=bool(retain_graph))

    # ----------------------------------------------------------------------------------------------
    # devices and dtypes
    def cpu(self, memory_format: Any = None) -> Tensor:
        return self.to("cpu")

    def cuda(self, device: Any = None, non_blocking: bool = False, memory_format: Any = None) -> Tensor:
        return self.to("cuda" if device is None else device)

    def pin_memory(self, device: Any = None) -> Tensor:
        """The tensor itself: page-locked memory speeds host-to-GPU copies in CUDA's own allocator, which
        NumPy does not use, so there is nothing to pin. Accepted so PyTorch's input pipelines run unchanged."""
        if self.device != "cpu":
            raise RuntimeError("cannot pin a cuda tensor: only CPU tensors can be pinned")
        return self

    def is_pinned(self, device: Any = None) -> bool:
        return False

    def float(self) -> Tensor:
        return self.to(float32)

    def double(self) -> Tensor:
        return self.to(float64)

    def half(self) -> Tensor:
        return self.to(float16)

    def long(self) -> Tensor:
        return self.to(int64)

    def int(self) -> Tensor:
        return self.to(int32)

    def bool(self) -> Tensor:
        return self.to(np.dtype(np.bool_))

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    # ----------------------------------------------------------------------------------------------
    # in-place ops: not recorded in the graph. They bump the version counter, so a graph that saved
    # this tensor's old value refuses to run backward instead of silently using the new one.
    def _begin_inplace(self, name: str) -> None:
        if self._requires_grad and autograd.is_grad_enabled():
            kind = "a leaf tensor" if self._ctx is None else "a tensor"
            raise RuntimeError(
                f"{name}: {kind} that requires grad cannot be modified in place while grad mode is on "
                "(in-place ops are not recorded). Wrap the update in `with mt.no_grad():`, or use the "
                "out-of-place op."
            )
        self._version[0] += 1

    def _operand(self, other: Any) -> Any:
        arr = other.data if isinstance(other, Tensor) else other
        if isinstance(other, Tensor) and other.device != self.device:
            raise TypeError(f"in-place op: tensor on {self.device}, operand on {other.device}")
        return arr

    def zero_(self) -> Tensor:
        self._begin_inplace("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value: Any) -> Tensor:
        self._begin_inplace("fill_")
        self.data[...] = self._operand(value)
        return self

    def copy_(self, src: Any) -> Tensor:
        """Copy `src` (a Tensor or array, broadcastable to this shape) into this tensor."""
        self._begin_inplace("copy_")
        arr = to_array(src)
        if self.device != device_of(arr):
            arr = to_device(arr, self.device)
        self.data[...] = arr
        return self

    def add_(self, other: Any, alpha: Any = 1) -> Tensor:
        self._begin_inplace("add_")
        o = self._operand(other)
        self.data += o if alpha == 1 else alpha * o
        return self

    def sub_(self, other: Any, alpha: Any = 1) -> Tensor:
        self._begin_inplace("sub_")
        o = self._operand(other)
        self.data -= o if alpha == 1 else alpha * o
        return self

    def mul_(self, other: Any) -> Tensor:
        self._begin_inplace("mul_")
        self.data *= self._operand(other)
        return self

    def div_(self, other: Any) -> Tensor:
        self._begin_inplace("div_")
        self.data /= self._operand(other)
        return self

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (PyTorch's names)
        self._begin_inplace("clamp_")
        array_module(self.data).clip(self.data, min, max, out=self.data)
        return self

    def masked_fill_(self, mask: Any, value: Any) -> Tensor:
        self._begin_inplace("masked_fill_")
        m = self._operand(mask)
        self.data[...] = array_module(self.data).where(m, self._operand(value), self.data)
        return self

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Tensor:
        self._begin_inplace("normal_")
        draw = randn_array(self.shape, self.data.dtype, generator)
        self.data[...] = mean + std * to_device(draw, self.device)
        return self

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> Tensor:
        self._begin_inplace("uniform_")
        draw = rand_array(self.shape, self.data.dtype, generator)
        self.data[...] = a + (b - a) * to_device(draw, self.device)
        return self

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)


def _rebuild_tensor(data: Any, requires_grad: bool, device_name: str = "cpu") -> Tensor:
    """Unpickling side of `Tensor.__reduce__`."""
    return Tensor(to_device(data, device_name) if device_name != "cpu" else data, requires_grad=requires_grad)
