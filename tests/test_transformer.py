"""MultiheadAttention, the encoder/decoder layers and nn.Transformer: gradient checks by random
projection on small random configurations (masks and padding included), and the properties every
attention model must have (causality, padding, permutation equivariance)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import nn

from .gradcheck import directional_check


def _float64(module: nn.Module) -> nn.Module:
    return module.double().eval()


def _params(module: nn.Module) -> list:
    return list(module.parameters())


@st.composite
def mha_config(draw):
    H = draw(st.integers(1, 3))
    E = H * draw(st.integers(1, 3))
    separate = draw(st.booleans())
    kdim = draw(st.integers(1, 4)) if separate else None
    vdim = draw(st.integers(1, 4)) if separate else None
    return dict(embed_dim=E, num_heads=H, kdim=kdim, vdim=vdim, bias=draw(st.booleans()),
                batch_first=draw(st.booleans()))


@given(cfg=mha_config(), L=st.integers(1, 4), S=st.integers(1, 4), N=st.integers(1, 3),
       use_masks=st.booleans(), seed=st.integers(0, 1000))
def test_multihead_attention_gradients(cfg, L, S, N, use_masks, seed):
    rng = np.random.default_rng(seed)
    mha = _float64(nn.MultiheadAttention(**cfg))
    E, kd, vd = cfg["embed_dim"], cfg["kdim"] or cfg["embed_dim"], cfg["vdim"] or cfg["embed_dim"]

    def shaped(T, D):
        return mt.tensor(rng.standard_normal((N, T, D) if cfg["batch_first"] else (T, N, D)), requires_grad=True)

    q, k, v = shaped(L, E), shaped(S, kd), shaped(S, vd)
    kw = {}
    if use_masks:
        kpm = rng.random((N, S)) < 0.3
        kw = {"key_padding_mask": kpm, "attn_mask": rng.standard_normal((L, S))}
    directional_check(lambda: mha(q, k, v, **kw)[0], _params(mha) + [q, k, v], seed=seed)


@given(norm_first=st.booleans(), activation=st.sampled_from(["relu", "gelu"]), seed=st.integers(0, 1000),
       S=st.integers(1, 4), T=st.integers(1, 4))
def test_transformer_gradients_with_masks_and_padding(norm_first, activation, seed, S, T):
    rng = np.random.default_rng(seed)
    model = _float64(nn.Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                    dim_feedforward=6, dropout=0.0, activation=activation,
                                    norm_first=norm_first, batch_first=True))
    src = mt.tensor(rng.standard_normal((2, S, 4)), requires_grad=True)
    tgt = mt.tensor(rng.standard_normal((2, T, 4)), requires_grad=True)
    pad = np.zeros((2, S), dtype=bool)
    pad[1, S - 1:] = S > 1
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=mt.float64)

    def run():
        return model(src, tgt, tgt_mask=tgt_mask, src_key_padding_mask=pad, memory_key_padding_mask=pad)

    directional_check(run, _params(model) + [src, tgt], seed=seed)


def test_causal_mask_means_the_future_cannot_change_the_past():
    mt.manual_seed(0)
    layer = _float64(nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True))
    rng = np.random.default_rng(0)
    tgt = rng.standard_normal((2, 6, 8))
    mem = rng.standard_normal((2, 3, 8))
    mask = nn.Transformer.generate_square_subsequent_mask(6, dtype=mt.float64)
    out = layer(mt.tensor(tgt), mt.tensor(mem), tgt_mask=mask).numpy()
    changed = tgt.copy()
    changed[:, 4:] += 100.0  # rewrite the last two positions
    out2 = layer(mt.tensor(changed), mt.tensor(mem), tgt_mask=mask).numpy()
    np.testing.assert_allclose(out2[:, :4], out[:, :4], rtol=1e-12, atol=1e-12)
    assert not np.allclose(out2[:, 4:], out[:, 4:])


def test_key_padding_gets_zero_weight_and_its_value_changes_nothing():
    mt.manual_seed(1)
    mha = _float64(nn.MultiheadAttention(6, 3, batch_first=True))
    rng = np.random.default_rng(1)
    q, kv = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 5, 6))
    pad = np.zeros((2, 5), dtype=bool)
    pad[0, 3:] = True
    pad[1, 1] = True
    out, w = mha(mt.tensor(q), mt.tensor(kv), mt.tensor(kv), key_padding_mask=pad)
    _, w_heads = mha(mt.tensor(q), mt.tensor(kv), mt.tensor(kv), key_padding_mask=pad, average_attn_weights=False)
    assert np.all(w.numpy()[0, :, 3:] == 0) and np.all(w.numpy()[1, :, 1] == 0)
    assert np.all(w_heads.numpy()[0, :, :, 3:] == 0)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0)
    kv2 = kv.copy()
    kv2[pad] = rng.standard_normal((int(pad.sum()), 6)) * 1e3
    out2, _ = mha(mt.tensor(q), mt.tensor(kv2), mt.tensor(kv2), key_padding_mask=pad)
    np.testing.assert_allclose(out2.numpy(), out.numpy(), rtol=1e-12, atol=1e-12)


def test_encoder_without_positions_is_permutation_equivariant():
    mt.manual_seed(2)
    enc = _float64(nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), num_layers=2,
                                         norm=nn.LayerNorm(8)))
    x = np.random.default_rng(2).standard_normal((5, 3, 8))  # (S, N, E)
    perm = np.array([3, 0, 4, 1, 2])
    out = enc(mt.tensor(x)).numpy()
    out_perm = enc(mt.tensor(x[perm])).numpy()
    np.testing.assert_allclose(out_perm, out[perm], rtol=1e-10, atol=1e-12)


def test_transformer_shapes_layouts_and_errors():
    model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=8)
    out = model(mt.randn(5, 3, 8), mt.randn(4, 3, 8))  # (S, N, E), (T, N, E)
    assert out.shape == (4, 3, 8)
    names = list(model.state_dict())
    assert names[:4] == ["encoder.layers.0.self_attn.in_proj_weight", "encoder.layers.0.self_attn.in_proj_bias",
                         "encoder.layers.0.self_attn.out_proj.weight", "encoder.layers.0.self_attn.out_proj.bias"]
    assert "decoder.layers.1.multihead_attn.in_proj_weight" in names and "decoder.norm.weight" in names
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        model(mt.randn(5, 3, 8), mt.randn(4, 2, 8))
    with pytest.raises(RuntimeError, match="equal to d_model=8"):
        model(mt.randn(5, 3, 6), mt.randn(4, 3, 6))
    mask = nn.Transformer.generate_square_subsequent_mask(3)
    assert mask.tolist() == [[0.0, -np.inf, -np.inf], [0.0, 0.0, -np.inf], [0.0, 0.0, 0.0]]


def test_positional_encodings():
    pe = nn.SinusoidalPositionalEncoding(6, max_len=10)
    table = pe.pe.numpy()
    p, i = 3, 1  # PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)
    assert table[p, 2 * i] == np.float32(np.sin(p / 10000 ** (2 * i / 6)))
    assert table[p, 2 * i + 1] == np.float32(np.cos(p / 10000 ** (2 * i / 6)))
    x = mt.zeros(4, 2, 6)
    np.testing.assert_array_equal(pe(x).numpy()[:, 1], table[:4])
    learned = nn.LearnedPositionalEmbedding(10, 6)
    y = mt.zeros(2, 4, 6, requires_grad=True)
    learned(y).sum().backward()
    assert learned.weight.grad.numpy()[:4].tolist() == [[2.0] * 6] * 4 and not learned.weight.grad.numpy()[4:].any()


@given(D=st.integers(1, 4), T=st.integers(1, 4), seed=st.integers(0, 1000), bias=st.booleans(),
       approximate=st.sampled_from(["none", "tanh"]))
def test_basic_modules_gradients(D, T, seed, bias, approximate):
    """Embedding -> positions (learned and sinusoidal) -> Linear -> GELU -> LayerNorm -> Linear, checked as
    one model by random projection."""
    mt.manual_seed(seed)
    rng = np.random.default_rng(seed)
    emb, learned = nn.Embedding(5, D, padding_idx=0).double(), nn.LearnedPositionalEmbedding(4, D).double()
    sinus = nn.SinusoidalPositionalEncoding(D, max_len=4, batch_first=True, dtype=mt.float64)
    body = _float64(nn.Sequential(nn.Linear(D, 3, bias=bias), nn.GELU(approximate), nn.LayerNorm(3, bias=bias),
                                  nn.Linear(3, 2)))
    ids = rng.integers(1, 5, (2, T))
    params = _params(emb) + _params(learned) + _params(body)
    directional_check(lambda: body(sinus(learned(emb(ids)))), params, seed=seed)


@given(norm_first=st.booleans(), seed=st.integers(0, 1000), T=st.integers(1, 4), S=st.integers(1, 4))
def test_encoder_and_decoder_stacks_gradients(norm_first, seed, T, S):
    mt.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = _float64(nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2, 5, dropout=0.0, norm_first=norm_first,
                                                                    activation="gelu"), 2, nn.LayerNorm(4)))
    dec = _float64(nn.TransformerDecoder(nn.TransformerDecoderLayer(4, 1, 5, dropout=0.0, norm_first=norm_first,
                                                                    activation="gelu"), 2))
    src = mt.tensor(rng.standard_normal((S, 2, 4)), requires_grad=True)
    tgt = mt.tensor(rng.standard_normal((T, 2, 4)), requires_grad=True)
    causal = np.triu(np.ones((T, T), dtype=bool), 1)  # bool: True = may not attend
    directional_check(lambda: dec(tgt, enc(src), tgt_mask=causal), _params(enc) + _params(dec) + [src, tgt],
                      seed=seed)
