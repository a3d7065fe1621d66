"""Direct comparisons with PyTorch, run only when PyTorch is installed (the suite never needs it).

A PyTorch module's state_dict, converted to NumPy arrays, loads into the matching minitransformer module
and gives the same outputs and gradients; losses, optimizers and schedules follow the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

import minitransformer as mt
import minitransformer.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

F64 = {"rtol": 1e-9, "atol": 1e-10}


def np_state(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def same_grads(ours: mt.nn.Module, theirs, **tol) -> None:
    theirs_named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        tp = theirs_named[name]
        if tp.grad is None:
            assert p.grad is None or not np.any(p.grad.numpy()), name
            continue
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), err_msg=name, **(tol or F64))


def test_linear_layernorm_embedding_load_torch_weights():
    torch.manual_seed(0)
    rng = np.random.default_rng(11)
    for t_mod, m_mod, x in [
        (torch.nn.Linear(5, 3), mt.nn.Linear(5, 3), rng.standard_normal((2, 4, 5))),
        (torch.nn.Linear(5, 3, bias=False), mt.nn.Linear(5, 3, bias=False), rng.standard_normal((4, 5))),
        (torch.nn.LayerNorm((3, 4)), mt.nn.LayerNorm((3, 4)), rng.standard_normal((2, 3, 4))),
        (torch.nn.LayerNorm(4, bias=False), mt.nn.LayerNorm(4, bias=False), rng.standard_normal((5, 4))),
    ]:
        t_mod = t_mod.double()
        with torch.no_grad():
            for p in t_mod.parameters():
                p.add_(torch.randn_like(p))
        m_mod.double().load_state_dict(np_state(t_mod))
        tx = torch.tensor(x, requires_grad=True)
        mx = mt.tensor(x, requires_grad=True)
        v = rng.standard_normal(t_mod(tx).shape)
        (t_mod(tx) * torch.tensor(v)).sum().backward()
        (m_mod(mx) * mt.tensor(v)).sum().backward()
        np.testing.assert_allclose(m_mod(mx).numpy(), t_mod(tx).detach().numpy(), **F64)
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), **F64)
        same_grads(m_mod, t_mod)


def test_embedding_with_padding_matches_torch():
    t_emb = torch.nn.Embedding(6, 3, padding_idx=2).double()
    m_emb = mt.nn.Embedding(6, 3, padding_idx=2).double()
    m_emb.load_state_dict(np_state(t_emb))
    ids = np.array([[0, 2, 2, 5], [1, 1, 2, 3]])
    (t_emb(torch.tensor(ids)) ** 2).sum().backward()
    (m_emb(mt.tensor(ids)) ** 2).sum().backward()
    same_grads(m_emb, t_emb)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(kernel_backend, reduction, smoothing, weighted):
    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((6, 5)), rng.integers(0, 5, 6)),
             (rng.standard_normal((2, 5, 3)), rng.integers(0, 5, (2, 3))),
             (rng.standard_normal(5), np.array(3))]
    w = rng.random(5) + 0.5 if weighted else None
    for logits, target in cases:
        target = target.copy()
        if target.ndim:
            target.reshape(-1)[1] = -100  # one ignored position
        tl = torch.tensor(logits, requires_grad=True)
        ml = mt.tensor(logits, requires_grad=True)
        kw = dict(reduction=reduction, label_smoothing=smoothing)
        tout = TF.cross_entropy(tl, torch.tensor(target), weight=None if w is None else torch.tensor(w), **kw)
        mout = F.cross_entropy(ml, mt.tensor(target), weight=None if w is None else mt.tensor(w), **kw)
        np.testing.assert_allclose(mout.numpy(), tout.detach().numpy(), **F64)
        g = np.random.default_rng(1).standard_normal(tout.shape)
        tout.backward(torch.tensor(g))
        mout.backward(mt.tensor(g))
        np.testing.assert_allclose(ml.grad.numpy(), tl.grad.numpy(), **F64)
        # class-probability targets of the same shape as the logits
        probs = np.random.default_rng(2).random(logits.shape)
        tl.grad = None
        ml.grad = None
        tout = TF.cross_entropy(tl, torch.tensor(probs), weight=None if w is None else torch.tensor(w), **kw)
        mout = F.cross_entropy(ml, mt.tensor(probs), weight=None if w is None else mt.tensor(w), **kw)
        np.testing.assert_allclose(mout.numpy(), tout.detach().numpy(), **F64)


def test_nll_and_mse_match_torch():
    rng = np.random.default_rng(3)
    logp = np.log(rng.dirichlet(np.ones(4), size=5))
    t = np.array([0, 3, -100, 1, 1])
    w = rng.random(4) + 0.1
    for reduction in ("mean", "sum", "none"):
        np.testing.assert_allclose(
            F.nll_loss(mt.tensor(logp), mt.tensor(t), weight=mt.tensor(w), reduction=reduction).numpy(),
            TF.nll_loss(torch.tensor(logp), torch.tensor(t), weight=torch.tensor(w), reduction=reduction).numpy(),
            **F64)
        a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
        np.testing.assert_allclose(F.mse_loss(mt.tensor(a), mt.tensor(b), reduction=reduction).numpy(),
                                   TF.mse_loss(torch.tensor(a), torch.tensor(b), reduction=reduction).numpy(),
                                   **F64)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal", "fully_masked_row"])
def test_sdpa_matches_torch(kernel_backend, mask_kind):
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 6, 4)), rng.standard_normal((2, 3, 6, 2))
    kw = {}
    if mask_kind == "bool":
        m = rng.random((5, 6)) > 0.3
        m[:, 0] = True
        kw = {"attn_mask": m}
    elif mask_kind == "float":
        kw = {"attn_mask": rng.standard_normal((2, 1, 5, 6))}
    elif mask_kind == "causal":
        k, v = k[:, :, :5], v[:, :, :5]
        kw = {"is_causal": True}
    elif mask_kind == "fully_masked_row":
        m = np.ones((5, 6), dtype=bool)
        m[2] = False
        kw = {"attn_mask": m}
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    mq, mk, mv = (mt.tensor(a, requires_grad=True) for a in (q, k, v))
    tkw = {a: (torch.tensor(b) if isinstance(b, np.ndarray) else b) for a, b in kw.items()}
    tout = TF.scaled_dot_product_attention(tq, tk, tv, **tkw)
    mout = F.scaled_dot_product_attention(mq, mk, mv, **kw)
    np.testing.assert_allclose(mout.numpy(), tout.detach().numpy(), **F64)
    g = rng.standard_normal(tout.shape)
    tout.backward(torch.tensor(g))
    mout.backward(mt.tensor(g))
    for m_, t_ in ((mq, tq), (mk, tk), (mv, tv)):
        np.testing.assert_allclose(m_.grad.numpy(), t_.grad.numpy(), **F64)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kv_dims", [None, (3, 5)])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "3d"])
def test_multihead_attention_matches_torch(batch_first, kv_dims, masks):
    torch.manual_seed(1)
    rng = np.random.default_rng(5)
    E, H, L, S, N = 8, 2, 4, 5, 3
    kdim, vdim = kv_dims or (None, None)
    t_mha = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=batch_first).double()
    m_mha = mt.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=batch_first).double()
    with torch.no_grad():
        for p in t_mha.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m_mha.load_state_dict(np_state(t_mha))
    assert list(m_mha.state_dict()) == list(t_mha.state_dict())

    def shaped(*s):
        return rng.standard_normal((N, s[0], s[1]) if batch_first else (s[0], N, s[1]))

    q = shaped(L, E)
    k = shaped(S, kdim or E)
    v = shaped(S, vdim or E)
    kw = {}
    if masks == "bool":
        kpm = rng.random((N, S)) > 0.7
        kpm[:, 0] = False
        kw = {"key_padding_mask": kpm, "attn_mask": rng.random((L, S)) > 0.8}
        kw["attn_mask"][:, 1] = False
    elif masks == "float":
        kw = {"key_padding_mask": rng.standard_normal((N, S)), "attn_mask": rng.standard_normal((L, S))}
    elif masks == "3d":
        kw = {"attn_mask": rng.standard_normal((N * H, L, S))}
    for average in (True, False):
        tin = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        min_ = [mt.tensor(a, requires_grad=True) for a in (q, k, v)]
        tkw = {a: torch.tensor(b) for a, b in kw.items()}
        tout, tw = t_mha(*tin, average_attn_weights=average, **tkw)
        mout, mw = m_mha(*min_, average_attn_weights=average, **kw)
        np.testing.assert_allclose(mout.numpy(), tout.detach().numpy(), **F64)
        np.testing.assert_allclose(mw.numpy(), tw.detach().numpy(), **F64)
        g = rng.standard_normal(tout.shape)
        t_mha.zero_grad()
        m_mha.zero_grad()
        tout.backward(torch.tensor(g))
        mout.backward(mt.tensor(g))
        same_grads(m_mha, t_mha)
        for a, b in zip(min_, tin, strict=True):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **F64)


def test_multihead_self_attention_unbatched_and_is_causal():
    torch.manual_seed(2)
    t_mha = torch.nn.MultiheadAttention(6, 3).double()
    m_mha = mt.nn.MultiheadAttention(6, 3).double()
    m_mha.load_state_dict(np_state(t_mha))
    x = np.random.default_rng(6).standard_normal((4, 6))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    tx, mx = torch.tensor(x), mt.tensor(x)
    tout = t_mha(tx, tx, tx, attn_mask=mask, is_causal=True)
    mout = m_mha(mx, mx, mx, attn_mask=mask.numpy(), is_causal=True)
    np.testing.assert_allclose(mout[0].numpy(), tout[0].detach().numpy(), **F64)
    np.testing.assert_allclose(mout[1].numpy(), tout[1].detach().numpy(), **F64)
    np.testing.assert_array_equal(mt.nn.Transformer.generate_square_subsequent_mask(4).numpy(),
                                  torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_matches_torch(norm_first, activation):
    torch.manual_seed(3)
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=16,
              dropout=0.0, activation=activation, norm_first=norm_first, batch_first=True)
    t_tr = torch.nn.Transformer(**kw).double()
    m_tr = mt.nn.Transformer(**kw).double()
    assert list(m_tr.state_dict()) == list(t_tr.state_dict())
    m_tr.load_state_dict(np_state(t_tr))
    rng = np.random.default_rng(7)
    src, tgt = rng.standard_normal((3, 5, 8)), rng.standard_normal((3, 4, 8))
    src_kpm = np.zeros((3, 5), dtype=bool)
    src_kpm[0, 3:] = True
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    tout = t_tr(torch.tensor(src), torch.tensor(tgt), tgt_mask=tgt_mask, src_key_padding_mask=torch.tensor(src_kpm),
                memory_key_padding_mask=torch.tensor(src_kpm))
    mout = m_tr(mt.tensor(src), mt.tensor(tgt), tgt_mask=tgt_mask.numpy(), src_key_padding_mask=src_kpm,
                memory_key_padding_mask=src_kpm)
    np.testing.assert_allclose(mout.numpy(), tout.detach().numpy(), **F64)
    g = rng.standard_normal(tout.shape)
    tout.backward(torch.tensor(g))
    mout.backward(mt.tensor(g))
    same_grads(m_tr, t_tr, rtol=1e-8, atol=1e-9)


def _quadratic_params(rng):
    return [rng.standard_normal((3, 4)), rng.standard_normal(4)]


@pytest.mark.parametrize("name,kw", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.001, momentum=0.9, nesterov=True, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.3, amsgrad=True, maximize=True)),
])
def test_optimizers_match_torch(kernel_backend, name, kw):
    rng = np.random.default_rng(8)
    init = _quadratic_params(rng)
    targets = _quadratic_params(rng)
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    mp = [mt.tensor(a, requires_grad=True) for a in init]
    topt = getattr(torch.optim, name)(tp, **kw)
    mopt = getattr(mt.optim, name)(mp, **kw)
    for step in range(6):
        topt.zero_grad()
        mopt.zero_grad()
        sum(((p - torch.tensor(t)) ** 4).sum() for p, t in zip(tp, targets, strict=True)).backward()
        sum(((p - mt.tensor(t)) ** 4).sum() for p, t in zip(mp, targets, strict=True)).backward()
        topt.step()
        mopt.step()
        for a, b in zip(mp, tp, strict=True):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"step {step}")


def test_schedulers_match_torch():
    def pair(cls_name, **kw):
        tp = torch.nn.Parameter(torch.zeros(1))
        mp = mt.zeros(1, requires_grad=True)
        topt, mopt = torch.optim.SGD([tp], lr=0.5), mt.optim.SGD([mp], lr=0.5)
        ts = getattr(torch.optim.lr_scheduler, cls_name)(topt, **kw)
        ms = getattr(mt.optim.lr_scheduler, cls_name)(mopt, **kw)
        for _ in range(25):
            assert ms.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
            topt.step()
            mopt.step()
            ts.step()
            ms.step()

    pair("LambdaLR", lr_lambda=lambda e: 0.9 ** e)
    pair("StepLR", step_size=4, gamma=0.5)
    pair("CosineAnnealingLR", T_max=20, eta_min=0.01)


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(9)
    grads = [rng.standard_normal((3, 3)) * 5, rng.standard_normal(4)]
    for norm_type in (2.0, 1.0, float("inf")):
        tp = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
        mp = [mt.zeros(*g.shape, dtype=mt.float64, requires_grad=True) for g in grads]
        for t, m, g in zip(tp, mp, grads, strict=True):
            t.grad = torch.tensor(g.copy())
            m.grad = mt.tensor(g.copy())
        tn = torch.nn.utils.clip_grad_norm_(tp, 1.5, norm_type=norm_type)
        mn = mt.nn.utils.clip_grad_norm_(mp, 1.5, norm_type=norm_type)
        assert mn.item() == pytest.approx(tn.item(), rel=1e-12)
        for t, m in zip(tp, mp, strict=True):
            np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=1e-12)


class _TorchGPT(torch.nn.Module):
    """nanoGPT's model written with torch, only to serve as an independent reference."""

    def __init__(self, V, T, n_layer, n_head, C):
        super().__init__()
        nn = torch.nn
        self.n_head = n_head
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, C), wpe=nn.Embedding(T, C), drop=nn.Dropout(0.0),
            h=nn.ModuleList([nn.ModuleDict(dict(
                ln_1=nn.LayerNorm(C), attn=nn.ModuleDict(dict(c_attn=nn.Linear(C, 3 * C), c_proj=nn.Linear(C, C))),
                ln_2=nn.LayerNorm(C), mlp=nn.ModuleDict(dict(c_fc=nn.Linear(C, 4 * C), c_proj=nn.Linear(4 * C, C)))))
                for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(C)))
        self.lm_head = nn.Linear(C, V, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T))
        for b in self.transformer.h:
            h = b.ln_1(x)
            q, k, v = b.attn.c_attn(h).split(x.shape[-1], dim=2)
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, -1)
            x = x + b.attn.c_proj(y)
            x = x + b.mlp.c_proj(TF.gelu(b.mlp.c_fc(b.ln_2(x))))
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, TF.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-1)


def test_gpt_golden_against_torch_logits_loss_grads_and_adamw_steps():
    """llm.c's golden test: same weights, same batch -> same logits, loss, every gradient, and the
    parameters after the first AdamW steps."""
    cfg = mt.nn.GPTConfig(block_size=8, vocab_size=13, n_layer=2, n_head=2, n_embd=8)
    mt.manual_seed(0)
    ours = mt.nn.GPT(cfg).double()
    theirs = _TorchGPT(13, 8, 2, 2, 8).double()
    assert set(theirs.state_dict()) == set(ours.state_dict())
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(10)
    idx, tgt = rng.integers(0, 13, (3, 8)), rng.integers(0, 13, (3, 8))
    tgt[0, 0] = -1
    kw = dict(lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    mopt = mt.optim.AdamW(mt.optim.weight_decay_groups(ours, 0.1), **kw)
    topt = torch.optim.AdamW([{"params": [p for p in theirs.parameters() if p.ndim >= 2], "weight_decay": 0.1},
                              {"params": [p for p in theirs.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                             **kw)
    for _ in range(3):
        mlog, mloss = ours(mt.tensor(idx), mt.tensor(tgt))
        tlog, tloss = theirs(torch.tensor(idx), torch.tensor(tgt))
        np.testing.assert_allclose(mlog.numpy(), tlog.detach().numpy(), rtol=1e-9, atol=1e-10)
        assert mloss.item() == pytest.approx(tloss.item(), rel=1e-10)
        mopt.zero_grad()
        topt.zero_grad()
        mloss.backward()
        tloss.backward()
        same_grads(ours, theirs, rtol=1e-8, atol=1e-10)
        mopt.step()
        topt.step()
