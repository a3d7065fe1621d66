"""Module semantics: registration and names, state_dict round trips and load errors, train/eval,
zero_grad, apply, to(), deepcopy, containers, initialisation as PyTorch's."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import minitransformer as mt
from minitransformer import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.blocks = nn.ModuleList([nn.LayerNorm(4), nn.Linear(4, 2, bias=False)])
        self.heads = nn.ModuleDict({"a": nn.Linear(2, 1)})
        self.scale = nn.Parameter(mt.ones(1))
        self.register_buffer("running", mt.zeros(2))
        self.register_buffer("cache", mt.zeros(2), persistent=False)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = self.fc1(x)
        for b in self.blocks:
            x = b(x)
        return self.heads["a"](self.drop(x)) * self.scale


def test_names_follow_pytorch():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
        "heads.a.weight", "heads.a.bias"]
    assert list(net.state_dict()) == [
        "scale", "running", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
        "heads.a.weight", "heads.a.bias"]
    assert [n for n, _ in net.named_buffers()] == ["running", "cache"]
    assert [n for n, _ in net.named_children()] == ["fc1", "blocks", "heads", "drop"]
    assert len(list(net.modules())) == 8
    assert net.get_submodule("blocks.1") is net.blocks[1]


def test_state_dict_round_trip_and_numpy_values():
    a, b = Net(), Net()
    x = mt.randn(5, 3)
    a.eval()
    b.eval()
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    c = Net().eval()
    c.load_state_dict({k: v.numpy() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a(x).numpy(), c(x).numpy())
    sd = a.state_dict()
    assert not sd["fc1.weight"].requires_grad  # detached copies, as PyTorch


def test_load_state_dict_reports_every_problem():
    net = Net()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    del sd["fc1.bias"]
    sd["extra.weight"] = np.zeros(1)
    sd["fc1.weight"] = np.zeros((9, 9))
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert "Error(s) in loading state_dict for Net" in msg
    assert 'Missing key(s) in state_dict: "fc1.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert "size mismatch for fc1.weight: copying a param with shape (9, 9) from checkpoint, the shape in " \
           "current model is (4, 3)." in msg
    sd["fc1.weight"] = np.ones((4, 3))
    before = net.fc1.bias.numpy().copy()
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc1.bias"] and result.unexpected_keys == ["extra.weight"]
    assert net.fc1.weight.numpy().tolist() == [[1.0] * 3] * 4
    np.testing.assert_array_equal(net.fc1.bias.numpy(), before)


def test_train_eval_zero_grad_apply_requires_grad():
    net = Net()
    net.eval()
    assert not net.training and not net.drop.training and not net.blocks[0].training
    x = mt.randn(4, 3)
    np.testing.assert_array_equal(net(x).numpy(), net(x).numpy())  # dropout off
    net.train()
    assert net.drop.training
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not np.any(p.grad.numpy()) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen[0] == "Linear"
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_to_dtype_and_deepcopy_are_independent():
    net = Net().double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    twin = copy.deepcopy(net)
    with mt.no_grad():
        twin.fc1.weight.fill_(0.0)
    assert np.any(net.fc1.weight.numpy())
    assert isinstance(twin.fc1.weight, nn.Parameter) and twin.fc1.weight.requires_grad


def test_tied_parameters_are_listed_once_but_saved_under_each_name():
    gpt = nn.GPT(nn.GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=1, n_embd=4))
    names = [n for n, _ in gpt.named_parameters()]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names
    sd = gpt.state_dict()
    assert "lm_head.weight" in sd and "transformer.wte.weight" in sd
    assert gpt.lm_head.weight is gpt.transformer.wte.weight


def test_sequential_and_repr():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert seq(mt.randn(4, 2)).shape == (4, 1) and len(seq) == 3
    assert repr(seq).startswith("Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)")
    with pytest.raises(TypeError, match="cannot assign a Tensor as parameter 'weight'"):
        seq[0].weight = mt.ones(3, 2)


def test_initialisation_follows_pytorch():
    mt.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w = lin.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(lin.bias.numpy()).max() <= bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # U(-b, b) has std b / sqrt 3
    emb = nn.Embedding(500, 200, padding_idx=0)
    assert emb.weight.numpy()[1:].std() == pytest.approx(1.0, rel=0.02) and not emb.weight.numpy()[0].any()
    mha = nn.MultiheadAttention(64, 4)
    a = math.sqrt(6 / (64 + 3 * 64))  # xavier_uniform over (3E, E)
    assert np.abs(mha.in_proj_weight.numpy()).max() <= a and not mha.in_proj_bias.numpy().any()
    ln = nn.LayerNorm(8)
    assert ln.weight.tolist() == [1.0] * 8 and ln.bias.tolist() == [0.0] * 8
    gpt = nn.GPT(nn.GPTConfig(block_size=32, vocab_size=300, n_layer=4, n_head=2, n_embd=64))
    assert gpt.transformer.h[0].attn.c_attn.weight.numpy().std() == pytest.approx(0.02, rel=0.05)
    assert gpt.transformer.h[0].mlp.c_proj.weight.numpy().std() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
