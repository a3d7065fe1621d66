"""Every differentiable op of the library, one small Function class each (forward and backward side
by side), grouped by kind. `OPS` below lists the public functions that record gradients and
`NON_DIFFERENTIABLE` those that deliberately do not; tests and docs are generated from these lists."""

from .activation import gelu, log_softmax, relu, softmax
from .arith import (
    abs,
    add,
    cast,
    clamp,
    clip,
    div,
    exp,
    log,
    maximum,
    minimum,
    move,
    mul,
    neg,
    pow,
    rsqrt,
    sigmoid,
    sqrt,
    sub,
    tanh,
)
from .einsum import einsum
from .index import embedding, gather, getitem, one_hot
from .join import cat, chunk, concat, concatenate, split, stack
from .linalg import linear, matmul
from .loss import cross_entropy, ctc_loss, mse_loss, nll_loss
from .norm import layer_norm
from .pad import pad
from .reduce import amax, amin, argmax, argmin, logsumexp, max, mean, min, std, sum, topk, var
from .select import (
    allclose,
    dropout,
    eq,
    equal,
    ge,
    gt,
    isfinite,
    isnan,
    le,
    logical_and,
    logical_not,
    logical_or,
    lt,
    masked_fill,
    ne,
    tril,
    triu,
    where,
)
from .shape import (
    clone,
    contiguous,
    expand,
    expand_as,
    flatten,
    permute,
    reshape,
    roll,
    squeeze,
    transpose,
    unsqueeze,
    view,
)

OPS = (
    "add", "sub", "mul", "div", "pow", "neg", "maximum", "minimum",
    "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "abs", "clamp",
    "sum", "mean", "var", "std", "max", "min", "amax", "amin", "topk", "logsumexp", "softmax",
    "log_softmax",
    "matmul", "einsum", "linear", "layer_norm", "cross_entropy", "nll_loss", "mse_loss", "ctc_loss",
    "reshape", "transpose", "permute", "roll", "unsqueeze", "squeeze", "expand", "flatten", "contiguous", "clone",
    "pad", "getitem", "gather", "embedding",
    "cat", "stack", "split", "chunk",
    "where", "masked_fill", "tril", "triu", "dropout",
    "cast",
)
NON_DIFFERENTIABLE = (
    "argmax", "argmin", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
    "isnan", "isfinite", "allclose", "equal", "one_hot",
)

__all__ = [*OPS, *NON_DIFFERENTIABLE, "clip", "concat", "concatenate", "view", "expand_as", "move"]
