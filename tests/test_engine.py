"""The engine's rules (docs/autograd.md): reused nodes, deep graphs, accumulation, retain_graph,
non-scalar roots, integer tensors, in-place protection, grad mode."""

from __future__ import annotations

import numpy as np
import pytest

import minitransformer as mt


def _micrograd_expression(a, b, relu):
    """micrograd's sanity-check expression, which reuses nodes many times."""
    c = a + b
    d = a * b + b ** 3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + relu(b + a)
    d = d + 3 * d + relu(b - a)
    e = c - d
    f = e ** 2
    g = f / 2.0
    g = g + 10.0 / f
    return g


def test_reused_nodes_match_an_independent_float_computation():
    a = mt.tensor(-4.0, dtype=mt.float64, requires_grad=True)
    b = mt.tensor(2.0, dtype=mt.float64, requires_grad=True)
    g = _micrograd_expression(a, b, lambda t: t.relu())
    g.backward()

    def f(x, y):
        return _micrograd_expression(x, y, lambda v: max(v, 0.0))

    h = 1e-6
    assert g.item() == pytest.approx(f(-4.0, 2.0), rel=1e-12)
    assert a.grad.item() == pytest.approx((f(-4 + h, 2.0) - f(-4 - h, 2.0)) / (2 * h), rel=1e-6)
    assert b.grad.item() == pytest.approx((f(-4.0, 2 + h) - f(-4.0, 2 - h)) / (2 * h), rel=1e-6)


def test_a_node_used_twice_gets_the_sum_of_both_gradients():
    a = mt.tensor([3.0], requires_grad=True)
    b = a + a
    c = b * b  # c = 4 a^2, dc/da = 8 a
    c.backward(mt.ones(1))
    assert a.grad.tolist() == [24.0]


def test_chain_of_100000_ops_does_not_recurse():
    x = mt.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_leaves_accumulate_until_zeroed():
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]
    x.grad.zero_()
    assert x.grad.tolist() == [0.0, 0.0]
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]


def test_graph_is_freed_unless_retained():
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_saved_arrays_are_released_after_backward():
    x = mt.randn(100, requires_grad=True)
    y = x.exp()
    z = y.sum()
    z.backward()
    assert vars(y.grad_fn) == {}  # the node no longer holds its output or inputs


def test_backward_of_non_scalar_needs_a_gradient():
    x = mt.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\)"):
        (x * 2).backward()
    (x * 2).backward(mt.ones(2, 3))
    assert x.grad.tolist() == [[2.0] * 3] * 2
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\), tensor has \(2, 3\)"):
        (x * 2).backward(mt.ones(3))


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="only tensors of floating dtype"):
        mt.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating"):
        mt.arange(3).requires_grad_()


def test_in_place_change_of_a_saved_input_raises_at_backward():
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    w = mt.tensor([3.0, 4.0])
    y = (x * w).sum()  # backward needs w
    w.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_in_place_change_through_a_view_is_seen():
    x = mt.tensor([[1.0, 2.0]], requires_grad=True)
    w = mt.tensor([[3.0, 4.0]])
    y = (x * w).sum()
    w.view(-1).mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_in_place_change_of_a_saved_output_raises():
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    s = y.sum()
    y.detach().zero_()  # detach shares memory and the version counter
    with pytest.raises(RuntimeError, match="output of Exp"):
        s.backward()


def test_in_place_change_of_an_unsaved_input_is_fine():
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    w = mt.tensor([3.0, 4.0])
    y = (x + w).sum()  # add does not need its inputs' values
    w.add_(1.0)
    y.backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_in_place_on_a_tensor_requiring_grad_needs_no_grad():
    p = mt.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="cannot be modified in place while grad mode is on"):
        p.add_(1.0)
    with pytest.raises(RuntimeError, match="cannot be modified in place"):
        p -= 1.0
    with mt.no_grad():
        p -= 1.0
    assert p.tolist() == [0.0, 1.0] and p.requires_grad and p.is_leaf


def test_no_grad_and_set_grad_enabled():
    x = mt.ones(2, requires_grad=True)
    with mt.no_grad():
        y = x * 2
        with mt.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad
    with mt.set_grad_enabled(False):
        assert not mt.is_grad_enabled()
        assert not (x * 2).requires_grad
    assert mt.is_grad_enabled()
    mt.set_grad_enabled(False)
    assert not (x + 1).requires_grad
    mt.set_grad_enabled(True)
    assert (x + 1).requires_grad

    @mt.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad


def test_non_leaf_keeps_grad_only_when_asked():
    x = mt.ones(2, requires_grad=True)
    h = x * 2
    k = x * 3
    k.retain_grad()
    (h * k).sum().backward()
    assert h.grad is None
    assert k.grad.tolist() == [2.0, 2.0]


def test_detach_shares_data_and_cuts_the_graph():
    x = mt.ones(2, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    y = x * 1
    d2 = y.detach()
    assert np.shares_memory(d2.numpy(), y.numpy())


def test_constant_inputs_get_no_gradient():
    x = mt.ones(3, requires_grad=True)
    c = mt.ones(3)
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


def test_broadcast_gradient_reduced_to_input_shape():
    x = mt.ones(3, 1, requires_grad=True)
    b = mt.ones(4, requires_grad=True)
    (x * b).sum().backward()
    assert x.grad.shape == (3, 1) and x.grad.tolist() == [[4.0]] * 3
    assert b.grad.shape == (4,) and b.grad.tolist() == [3.0] * 4


def test_higher_order_gradients_are_refused_clearly():
    x = mt.ones(1, requires_grad=True)
    with pytest.raises(NotImplementedError, match="create_graph"):
        (x * 2).sum().backward(create_graph=True)
