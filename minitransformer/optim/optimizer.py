"""The Optimizer base class (parameter groups, state, zero_grad, state_dict) and the helper that puts
only 2-D+ weights in the weight-decay group.

Optimizer state (momentum buffers, Adam moments) is kept as raw arrays beside each parameter; updates
are written in place into `p.data` and bump the parameter's version counter, so a graph that still
holds the old values refuses a later backward instead of mixing old and new weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..autograd import enable_grad
from ..tensor import Tensor
from ..xp import to_device


class Optimizer:
    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (missing options take the defaults)."""
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients: set them to None (default, as PyTorch 2) or fill them with zeros."""
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; `closure` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update(p, p.grad.data, self.state.setdefault(p, {}), group)
                p._version[0] += 1
        return loss

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- saving and restoring ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {name: value}}, 'param_groups': [options with 'params' as indices]}; indices
        number the parameters in group order, as PyTorch's. Arrays are copied to the CPU."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = {k: (to_device(v, "cpu").copy() if hasattr(v, "shape") else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and state saved by state_dict() from an optimizer over the same parameters."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for i, (s, g) in enumerate(zip(saved, self.param_groups, strict=True)):
            if len(s["params"]) != len(g["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has {len(s['params'])} parameters, "
                                 f"this optimizer's has {len(g['params'])}")
        by_index = {}
        for s, g in zip(saved, self.param_groups, strict=True):
            for i, p in zip(s["params"], g["params"], strict=True):
                by_index[i] = p
            g.update({k: v for k, v in s.items() if k != "params"})
        self.state = {}
        for i, st in state_dict["state"].items():
            p = by_index[int(i)]
            restored = {}
            for k, v in st.items():
                if isinstance(v, Tensor):
                    v = v.data
                if hasattr(v, "shape") and getattr(v, "ndim", 0) == 0:
                    # PyTorch keeps counters such as Adam's `step` in 0-d tensors: back to Python numbers
                    v = to_device(v, "cpu").item()
                    v = int(v) if k == "step" else v
                elif hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"state {k!r} of parameter {i} has shape {tuple(v.shape)}, "
                                         f"the parameter has {p.shape}")
                    v = to_device(np.asarray(v) if not hasattr(v, "device") else v, p.device)
                    v = v.astype(p.dtype, copy=True)
                restored[k] = v
            self.state[p] = restored

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def weight_decay_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups, as nanoGPT: weights of 2+ dims (matmuls, embeddings) decay; biases and
    LayerNorm gains (1-D) do not. `model` is a Module or an iterable of (name, parameter) pairs."""
    named = model.named_parameters() if hasattr(model, "named_parameters") else model
    params = [p for _, p in named if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
