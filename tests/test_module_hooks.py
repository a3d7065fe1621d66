"""Module.register_forward_hook and register_forward_pre_hook (nn/module.py): what each hook sees, what its
return value replaces, the order hooks run in, removal through the handle, always_call, and the same call log
as PyTorch's hooks for the same registrations."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import minitransformer as mt
import minitransformer.nn as nn
from minitransformer.nn.gpt import GPT, GPTConfig


class Scale(nn.Module):
    """forward(x, factor=2.0) = x * factor, recording its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def forward(self, x: Any, factor: float = 2.0) -> Any:
        self.calls.append((x, factor))
        return x * factor


def test_a_module_without_hooks_has_no_hook_store_of_its_own() -> None:
    m = Scale()
    assert m(3) == 6
    assert "_forward_hooks" not in m.__dict__ and "_forward_pre_hooks" not in m.__dict__
    h = m.register_forward_hook(lambda mod, args, out: None)
    assert "_forward_hooks" in m.__dict__
    h.remove()
    assert not m._forward_hooks  # empty again: __call__ takes the plain path


def test_forward_hook_sees_module_args_and_output_and_may_replace_the_output() -> None:
    m = Scale()
    seen = []
    m.register_forward_hook(lambda mod, args, out: seen.append((mod, args, out)))
    assert m(5, factor=3.0) == 15
    assert seen == [(m, (5,), 15)]  # keyword arguments are not in args, as in PyTorch
    m.register_forward_hook(lambda mod, args, out: out + 1)
    assert m(5) == 11


def test_forward_hook_with_kwargs_sees_the_keyword_arguments() -> None:
    m = Scale()
    seen = []
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.append((args, kwargs, out)), with_kwargs=True)
    m(4, factor=0.5)
    assert seen == [((4,), {"factor": 0.5}, 2.0)]


def test_pre_hook_replaces_the_args_a_single_value_is_wrapped_in_a_tuple() -> None:
    m = Scale()
    m.register_forward_pre_hook(lambda mod, args: args[0] + 1)      # not a tuple: becomes (x + 1,)
    m.register_forward_pre_hook(lambda mod, args: (args[0] * 10,))  # a tuple: used as it is
    seen = []
    m.register_forward_hook(lambda mod, args, out: seen.append(args))  # the args the pre-hooks left
    assert m(1) == 40 and seen == [(20,)]
    assert m.calls == [(20, 2.0)]


def test_pre_hook_with_kwargs_replaces_args_and_kwargs_and_a_bad_answer_is_refused() -> None:
    m = Scale()
    h = m.register_forward_pre_hook(lambda mod, args, kwargs: ((args[0],), {**kwargs, "factor": 5.0}),
                                    with_kwargs=True)
    assert m(2, factor=1.0) == 10
    h.remove()
    m.register_forward_pre_hook(lambda mod, args, kwargs: (1, 2, 3), with_kwargs=True)
    with pytest.raises(RuntimeError, match=r"tuple of \(new_args, new_kwargs\)"):
        m(2)


def test_hooks_run_in_registration_order_and_prepend_puts_one_first() -> None:
    m = Scale()
    log = []
    for name in "ab":
        m.register_forward_hook(lambda mod, args, out, name=name: log.append(name))
        m.register_forward_pre_hook(lambda mod, args, name=name: log.append("pre-" + name))
    m.register_forward_hook(lambda mod, args, out: log.append("first"), prepend=True)
    m.register_forward_pre_hook(lambda mod, args: log.append("pre-first"), prepend=True)
    m(1)
    assert log == ["pre-first", "pre-a", "pre-b", "first", "a", "b"]


def test_the_handle_removes_its_hook_once_twice_or_on_leaving_a_with_block() -> None:
    m = Scale()
    count = []
    h = m.register_forward_hook(lambda mod, args, out: count.append(1))
    m(1)
    h.remove()
    h.remove()
    m(1)
    assert len(count) == 1
    with m.register_forward_pre_hook(lambda mod, args: count.append(2)):
        m(1)
    m(1)
    assert count == [1, 2] and not m._forward_pre_hooks
    a, b = m.register_forward_hook(lambda *a: None), m.register_forward_hook(lambda *a: None)
    assert a.id != b.id and a.id != h.id


def test_a_hook_may_remove_itself_while_the_hooks_run() -> None:
    m = Scale()
    log = []
    handle = None

    def once(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        log.append("once")
        handle.remove()

    handle = m.register_forward_hook(once)
    m.register_forward_hook(lambda mod, args, out: log.append("always"))
    m(1)
    m(1)
    assert log == ["once", "always", "always"]


def test_always_call_hooks_run_when_forward_raises() -> None:
    class Fails(nn.Module):
        def forward(self, x: Any) -> Any:
            raise ValueError("no")

    m = Fails()
    log = []
    m.register_forward_hook(lambda mod, args, out: log.append(("always", out)), always_call=True)
    m.register_forward_hook(lambda mod, args, out: log.append("plain"))
    with pytest.raises(ValueError, match="no"):
        m(1)
    assert log == [("always", None)]


def test_a_replaced_output_is_differentiated_through() -> None:
    lin = nn.Linear(3, 2)
    lin.register_forward_hook(lambda mod, args, out: out * 2.0)
    x = mt.randn(4, 3, requires_grad=True)
    lin(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * np.tile(lin.weight.numpy().sum(axis=0), (4, 1)), rtol=1e-6)


def test_hooks_on_a_gpt_capture_each_block_and_leave_its_logits_alone() -> None:
    mt.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=3, n_head=2, n_embd=8)).eval()
    idx = mt.tensor([[1, 2, 3, 4]])
    with mt.no_grad():
        plain = model(idx)[0].numpy()
    blocks, qkv = [], []
    handles = [b.register_forward_hook(lambda mod, args, out: blocks.append(out.numpy())) for b in model.transformer.h]
    handles += [b.attn.c_attn.register_forward_hook(lambda mod, args, out: qkv.append(out.numpy()))
                for b in model.transformer.h]
    with mt.no_grad():
        hooked = model(idx)[0].numpy()
    np.testing.assert_array_equal(hooked, plain)
    assert [b.shape for b in blocks] == [(1, 4, 8)] * 3 and [q.shape for q in qkv] == [(1, 4, 24)] * 3
    for h in handles:
        h.remove()
    assert not any(m._forward_hooks for m in model.modules())


def test_a_deep_copy_keeps_the_hooks_and_the_handle_still_removes_only_the_original() -> None:
    m = Scale()
    log = []
    h = m.register_forward_hook(lambda mod, args, out: log.append(mod))
    c = copy.deepcopy(m)
    h.remove()
    m(1)
    c(1)
    assert log == [c]


def test_the_same_registrations_give_pytorchs_call_log() -> None:
    torch = pytest.importorskip("torch")

    def run(module: Any, x: Any, to_float: Any) -> list[Any]:
        log: list[Any] = []
        module.register_forward_pre_hook(lambda mod, args: log.append(("pre", to_float(args[0]))))
        module.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
        module.register_forward_pre_hook(lambda mod, args, kwargs: log.append(("kw", sorted(kwargs))) or None,
                                         with_kwargs=True, prepend=True)
        module.register_forward_hook(lambda mod, args, out: log.append(("out", to_float(out))))
        h = module.register_forward_hook(lambda mod, args, out: out + 1)
        module.register_forward_hook(lambda mod, args, out: log.append(("after", to_float(out))), prepend=True)
        log.append(("result", to_float(module(x))))
        h.remove()
        log.append(("result", to_float(module(x))))
        return log

    tl = torch.nn.Linear(2, 1)
    ml = nn.Linear(2, 1)
    ml.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    xs = np.array([[1.0, -2.0]], dtype=np.float32)
    ours = run(ml, mt.tensor(xs), lambda t: round(float(t.numpy().sum()), 5))
    theirs = run(tl, torch.tensor(xs), lambda t: round(float(t.detach().numpy().sum()), 5))
    assert ours == theirs
