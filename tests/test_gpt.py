"""The GPT: the golden test in llm.c's style (loss at init near ln(V), one batch overfit by AdamW),
gradients by random projection, causality, and generation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import nn

from .gradcheck import directional_check

TINY = nn.GPTConfig(block_size=16, vocab_size=32, n_layer=2, n_head=2, n_embd=32)


def test_loss_at_init_is_near_ln_vocab_and_one_batch_is_overfit():
    mt.manual_seed(1337)
    model = nn.GPT(TINY)
    rng = np.random.default_rng(0)
    idx = mt.tensor(rng.integers(0, TINY.vocab_size, (4, 16)))
    targets = mt.tensor(rng.integers(0, TINY.vocab_size, (4, 16)))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(TINY.vocab_size)) < 0.1
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=3e-3, betas=(0.9, 0.99))
    for _step in range(300):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert loss.item() < 0.05


@given(n_layer=st.integers(1, 2), n_head=st.integers(1, 2), hs=st.integers(1, 3), T=st.integers(1, 5),
       bias=st.booleans(), seed=st.integers(0, 1000))
def test_gpt_gradients(n_layer, n_head, hs, T, bias, seed):
    mt.manual_seed(seed)
    cfg = nn.GPTConfig(block_size=5, vocab_size=7, n_layer=n_layer, n_head=n_head, n_embd=n_head * hs, bias=bias)
    model = nn.GPT(cfg).double()
    rng = np.random.default_rng(seed)
    idx, tgt = rng.integers(0, 7, (2, T)), rng.integers(-1, 7, (2, T))
    tgt[0, 0] = 3
    directional_check(lambda: model(idx, tgt)[1], list(model.parameters()), seed=seed)


def test_gpt_is_causal():
    mt.manual_seed(0)
    model = nn.GPT(TINY).eval()
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 32, (2, 10))
    logits, _ = model(idx, idx)
    changed = idx.copy()
    changed[:, 7:] = (changed[:, 7:] + 1) % 32
    logits2, _ = model(changed, changed)
    np.testing.assert_array_equal(logits2.numpy()[:, :7], logits.numpy()[:, :7])


def test_parameter_names_and_count_follow_nanogpt():
    model = nn.GPT(TINY)
    names = list(model.state_dict())
    assert names[:7] == ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
                         "transformer.h.0.ln_1.bias", "transformer.h.0.attn.c_attn.weight",
                         "transformer.h.0.attn.c_attn.bias", "transformer.h.0.attn.c_proj.weight"]
    assert names[-3:] == ["transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight"]
    C, V, T, L = TINY.n_embd, TINY.vocab_size, TINY.block_size, TINY.n_layer
    per_block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C)
    assert model.num_parameters(non_embedding=False) == V * C + T * C + L * per_block + 2 * C
    assert model.num_parameters() == V * C + L * per_block + 2 * C


def test_weight_decay_groups_put_only_matrices_in_the_decay_group():
    model = nn.GPT(TINY)
    decay, no_decay = mt.optim.weight_decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_generate_crops_the_context_and_respects_top_k():
    mt.manual_seed(3)
    model = nn.GPT(nn.GPTConfig(block_size=4, vocab_size=9, n_layer=1, n_head=1, n_embd=8)).eval()
    start = mt.tensor([[1, 2, 3], [4, 5, 6]])
    out = model.generate(start, max_new_tokens=6, top_k=1)
    assert out.shape == (2, 9) and out[:, :3].tolist() == start.tolist()
    # top_k=1 is greedy: each new token is the argmax given the last block_size tokens
    for t in range(3, 9):
        ctx = out[:, max(0, t - 4):t]
        logits, _ = model(ctx)
        assert out[:, t].tolist() == logits[:, -1].argmax(dim=-1).tolist()
    mt.manual_seed(5)
    a = model.generate(start, 5, temperature=0.8).tolist()
    mt.manual_seed(5)
    assert model.generate(start, 5, temperature=0.8).tolist() == a
    with pytest.raises(ValueError, match="block_size is 4"):
        model(mt.zeros(1, 5, dtype=mt.int64))


@pytest.mark.parametrize("bias", [False, True])
def test_decode_step_equals_the_models_forward(bias):
    """generation.decode_step (plain arrays, the cache) continuing a prompt by one token and by several gives
    the logits of the model's own forward on the whole sequence, and its cache holds every position's keys."""
    import minitransformer as mt
    from minitransformer.nn import generation

    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(block_size=32, vocab_size=17, n_layer=2, n_head=2, n_embd=8,
                                      bias=bias)).eval()
    prompt = np.random.default_rng(0).integers(0, 17, (2, 5))
    for new in ([[3], [4]], [[1, 2, 3], [4, 5, 6]]):
        caches = generation.new_caches(model)
        first = generation.decode_step(model, prompt, 0, caches)                                # causal, no mask
        with mt.no_grad():
            np.testing.assert_allclose(first[:, 0], model(mt.tensor(prompt))[0].numpy()[:, -1], rtol=1e-5, atol=1e-6)
        got = generation.decode_step(model, np.array(new), prompt.shape[1], caches)           # (B, 1, V)
        whole = np.concatenate([prompt, new], axis=1)
        seen = []  # layer 0's packed q, k, v of the whole sequence, from the model's own forward
        c_attn = model.transformer.h[0].attn.c_attn
        hook = c_attn.register_forward_hook(lambda m, a, out, seen=seen: seen.append(out.numpy()))
        with mt.no_grad():
            want, _ = model(mt.tensor(whole), targets=mt.tensor(whole))                         # (B, T, V)
        hook.remove()
        np.testing.assert_allclose(got[:, 0], want.numpy()[:, -1], rtol=1e-5, atol=1e-6)
        B, T = whole.shape
        keys = seen[0][:, :, 8:16].reshape(B, T, 2, 4).transpose(0, 2, 1, 3)                   # (B, nh, T, hs)
        np.testing.assert_allclose(caches[0]["k"].numpy(), keys, rtol=1e-5, atol=1e-6)


def test_generation_records_no_graph(monkeypatch):
    """Every sampled token comes out of a step run without grad (the parameters require grad), with the cache
    (the decode step) and without (the model's forward)."""
    import minitransformer as mt
    from minitransformer.nn import generation

    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_embd=8)).eval()
    modes = []
    step, forward = generation.decode_step, model.forward
    monkeypatch.setattr(generation, "decode_step", lambda *a, **k: (modes.append(mt.is_grad_enabled()),
                                                                    step(*a, **k))[1])
    model.forward = lambda *a, **k: (modes.append(mt.is_grad_enabled()), forward(*a, **k))[1]
    for use_cache in (True, False):
        tokens = list(model.generate_stream(mt.tensor([[1, 2, 3]]), 5, use_cache=use_cache))
        assert all(not t.requires_grad for t in tokens)
    assert len(modes) == 10 and not any(modes)
    assert mt.is_grad_enabled()  # the caller's mode is untouched


def test_cached_generation_past_the_buffer_and_the_block_equals_uncached():
    """100 tokens with block_size 48: the key/value buffers grow (16 -> 32 -> 64 positions) and the context
    is cropped and the cache rebuilt; greedy and seeded sampling give the tokens of generation without a cache."""
    import minitransformer as mt

    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(block_size=48, vocab_size=13, n_layer=2, n_head=2, n_embd=16)).eval()
    ctx = mt.tensor(np.random.default_rng(1).integers(0, 13, (2, 3)))
    greedy = [model.generate(ctx, 100, top_k=1, use_cache=c).numpy() for c in (True, False)]
    np.testing.assert_array_equal(*greedy)
    sampled = []
    for c in (True, False):
        mt.manual_seed(5)
        sampled.append(model.generate(ctx, 60, temperature=1.0, use_cache=c).numpy())
    np.testing.assert_array_equal(*sampled)


def test_batched_generation_gives_each_prompt_its_own_continuation():
    """Prompts of lengths 1..14 left-padded into one batch (block_size 16, so the longer ones are cropped
    while generating): each row's greedy tokens are the ones it gets alone, with and without the cache."""
    import minitransformer as mt

    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(block_size=16, vocab_size=30, n_layer=2, n_head=2, n_embd=32,
                                      bias=True)).eval()
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 30, n).tolist() for n in (3, 9, 1, 14)]
    alone = [model.generate(np.array([p]), 8, top_k=1).numpy()[0, len(p):].tolist() for p in prompts]
    assert model.generate_batch(prompts, 8, top_k=1) == alone
    assert model.generate_batch(prompts, 8, top_k=1, use_cache=False, pad_id=7) == alone
    assert model.generate_batch(prompts, 0) == [[], [], [], []]
    with pytest.raises(ValueError, match="at least one token"):
        model.generate_batch([[1], []], 3)


def test_sampling_follows_the_distribution():
    """20,000 draws from fixed probabilities: frequencies within 5 standard errors, a zero-probability
    token never drawn, top_k restricting to the k likeliest."""
    import minitransformer as mt
    from minitransformer.nn.generation import sample_next

    p = np.array([0.5, 0.0, 0.2, 0.25, 0.05])
    logits = np.log(np.where(p > 0, p, 1e-300))[None].repeat(20000, axis=0)
    logits[:, 1] = -np.inf
    mt.manual_seed(3)
    draws = sample_next(logits).numpy()[:, 0]
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[1] == 0
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / len(draws)) + 1e-12)
    top2 = sample_next(logits[:2000], top_k=2).numpy()[:, 0]
    assert set(top2.tolist()) == {0, 3}
