"""Pointwise arithmetic: + - * / ** neg, maximum/minimum, exp log sqrt rsqrt tanh sigmoid abs clamp,
and the dtype/device casts. Each op's backward sits right below its forward.

Binary ops broadcast; their backward sums the gradient back to each input's shape (`unbroadcast`).
"""

from __future__ import annotations

from typing import Any

from ..autograd import Function
from ..dtypes import is_floating
from ..tensor import Tensor
from ..xp import array_module, to_device
from .base import broadcast_shape, operands, quiet, unbroadcast

# --------------------------------------------------------------------------------------------------
# binary


class Add(Function):
    saves_inputs = ()

    def forward(self, a, b):
        self.sa, self.sb = a.shape, b.shape
        return a + b

    def backward(self, dout):
        return unbroadcast(dout, self.sa), unbroadcast(dout, self.sb)


class Sub(Function):
    saves_inputs = ()

    def forward(self, a, b):
        self.sa, self.sb = a.shape, b.shape
        return a - b

    def backward(self, dout):
        return unbroadcast(dout, self.sa), unbroadcast(-dout, self.sb)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, dout):
        return unbroadcast(dout * self.b, self.a.shape), unbroadcast(dout * self.a, self.b.shape)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, dout):
        da = dout / self.b
        return unbroadcast(da, self.a.shape), unbroadcast(-da * self.a / self.b, self.b.shape)


class Pow(Function):
    """a ** b with both operands tensors; d/db = a**b * log(a) (defined for a > 0)."""

    saves_output = True

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, dout):
        xp = array_module(dout)
        a, b, out = self.a, self.b, self.out
        da = dout * b * a ** (b - 1)
        with quiet(a):  # log(a) for a <= 0 is only used where the gradient wrt b is needed
            db = dout * out * xp.log(xp.where(a > 0, a, 1)) if self.inputs[1].requires_grad else None
        return unbroadcast(da, a.shape), None if db is None else unbroadcast(db, b.shape)


class PowScalar(Function):
    """x ** p for a Python number p: d/dx = p * x ** (p - 1)."""

    def forward(self, x, p):
        self.x, self.p = x, p
        return x ** p

    def backward(self, dout):
        if self.p == 2:
            return (2 * dout * self.x,)
        return (dout * self.p * self.x ** (self.p - 1),)


class RPowScalar(Function):
    """c ** x for a Python number c > 0: d/dx = c ** x * log(c)."""

    saves_output = True

    def forward(self, x, c):
        self.out, self.logc = c ** x, array_module(x).log(x.dtype.type(c))
        return self.out

    def backward(self, dout):
        return (dout * self.out * self.logc,)


class Maximum(Function):
    """Elementwise max; at ties each input gets half the gradient (as PyTorch)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).maximum(a, b)

    def backward(self, dout):
        wa = (self.a > self.b) + 0.5 * (self.a == self.b)
        wa = wa.astype(dout.dtype)
        return unbroadcast(dout * wa, self.a.shape), unbroadcast(dout * (1 - wa), self.b.shape)


class Minimum(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).minimum(a, b)

    def backward(self, dout):
        wa = ((self.a < self.b) + 0.5 * (self.a == self.b)).astype(dout.dtype)
        return unbroadcast(dout * wa, self.a.shape), unbroadcast(dout * (1 - wa), self.b.shape)


def _binary(cls: type[Function], a: Any, b: Any, op: str) -> Tensor:
    ta, tb = operands(a, b, op)
    broadcast_shape(ta.data.shape, tb.data.shape, op)
    return cls.apply(ta, tb)


def add(input: Any, other: Any, alpha: Any = 1) -> Tensor:
    """input + alpha * other, broadcasting."""
    return _binary(Add, input, other if alpha == 1 else mul(other, alpha), "add")


def sub(input: Any, other: Any, alpha: Any = 1) -> Tensor:
    """input - alpha * other, broadcasting."""
    return _binary(Sub, input, other if alpha == 1 else mul(other, alpha), "sub")


def mul(input: Any, other: Any) -> Tensor:
    return _binary(Mul, input, other, "mul")


def div(input: Any, other: Any) -> Tensor:
    return _binary(Div, input, other, "div")


def maximum(input: Any, other: Any) -> Tensor:
    return _binary(Maximum, input, other, "maximum")


def minimum(input: Any, other: Any) -> Tensor:
    return _binary(Minimum, input, other, "minimum")


def pow(input: Any, exponent: Any) -> Tensor:  # noqa: A001 (PyTorch's name)
    """input ** exponent; either may be a Python number."""
    if isinstance(input, Tensor) and isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        if input.dtype.kind != "f" and (exponent < 0 or isinstance(exponent, float)):
            input = input.float()
        return PowScalar.apply(input, p=exponent)
    if isinstance(exponent, Tensor) and isinstance(input, (int, float)) and not isinstance(input, bool):
        if input <= 0:
            return _binary(Pow, input, exponent, "pow")
        if exponent.dtype.kind != "f":
            exponent = exponent.float()
        return RPowScalar.apply(exponent, c=input)
    return _binary(Pow, input, exponent, "pow")


def neg(input: Tensor) -> Tensor:
    return Neg.apply(input)


class Neg(Function):
    saves_inputs = ()

    def forward(self, x):
        return -x

    def backward(self, dout):
        return (-dout,)


# --------------------------------------------------------------------------------------------------
# unary


class Exp(Function):
    saves_inputs = ()
    saves_output = True

    def forward(self, x):
        self.out = array_module(x).exp(x)
        return self.out

    def backward(self, dout):
        return (dout * self.out,)


class Log(Function):
    def forward(self, x):
        self.x = x
        return array_module(x).log(x)

    def backward(self, dout):
        return (dout / self.x,)


class Sqrt(Function):
    saves_inputs = ()
    saves_output = True

    def forward(self, x):
        self.out = array_module(x).sqrt(x)
        return self.out

    def backward(self, dout):
        return (dout * 0.5 / self.out,)


class Rsqrt(Function):
    saves_inputs = ()
    saves_output = True

    def forward(self, x):
        self.out = 1.0 / array_module(x).sqrt(x)
        return self.out

    def backward(self, dout):
        return (-0.5 * dout * self.out * self.out * self.out,)


class Tanh(Function):
    saves_inputs = ()
    saves_output = True

    def forward(self, x):
        self.out = array_module(x).tanh(x)
        return self.out

    def backward(self, dout):
        return (dout * (1 - self.out * self.out),)


class Sigmoid(Function):
    saves_inputs = ()
    saves_output = True

    def forward(self, x):
        xp = array_module(x)
        e = xp.exp(-xp.abs(x))  # exp of a non-positive number: never overflows
        self.out = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.out

    def backward(self, dout):
        return (dout * self.out * (1 - self.out),)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return array_module(x).abs(x)

    def backward(self, dout):
        return (dout * array_module(dout).sign(self.x),)


class Clamp(Function):
    """Gradient passes where min <= x <= max (bounds included), as in PyTorch."""

    def forward(self, x, lo, hi):
        self.x, self.lo, self.hi = x, lo, hi
        return array_module(x).clip(x, lo, hi)

    def backward(self, dout):
        keep = True
        if self.lo is not None:
            keep = self.x >= self.lo
        if self.hi is not None:
            keep = keep & (self.x <= self.hi)
        return (dout * keep,)


class Cast(Function):
    saves_inputs = ()

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, dout):
        return (dout.astype(self.in_dtype) if is_floating(self.in_dtype) else None,)  # bfloat16 included


class Move(Function):
    saves_inputs = ()

    def forward(self, x, device):
        self.src = "cuda" if type(x).__module__.startswith("cupy") else "cpu"
        return to_device(x, device)

    def backward(self, dout):
        return (to_device(dout, self.src),)


def exp(input: Tensor) -> Tensor:
    return Exp.apply(input)


def log(input: Tensor) -> Tensor:
    return Log.apply(input)


def sqrt(input: Tensor) -> Tensor:
    return Sqrt.apply(input)


def rsqrt(input: Tensor) -> Tensor:
    return Rsqrt.apply(input)


def tanh(input: Tensor) -> Tensor:
    return Tanh.apply(input)


def sigmoid(input: Tensor) -> Tensor:
    return Sigmoid.apply(input)


def abs(input: Tensor) -> Tensor:  # noqa: A001 (PyTorch's name)
    return Abs.apply(input)


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limit values to [min, max]; either bound may be None."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    lo = min.data if isinstance(min, Tensor) else min
    hi = max.data if isinstance(max, Tensor) else max
    return Clamp.apply(input, lo=lo, hi=hi)


clip = clamp


def cast(input: Tensor, dtype: Any) -> Tensor:
    return Cast.apply(input, dtype=dtype)


def move(input: Tensor, device: str) -> Tensor:
    return Move.apply(input, device=device)
