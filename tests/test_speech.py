"""Speech to text: CTC (gradient checks in float64 on drawn cases with repeated labels and inputs that are
barely long enough, hand-computed losses, Numba against the reference, PyTorch when installed), decoding,
edit distance, the features, and a tiny model trained on synthesised speech (needs espeak-ng; skipped,
saying so, without it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import backend
from minitransformer.tasks import speech as S

from .factories import covers
from .gradcheck import numerical_grads
from .tolerances import GRAD_F64

ROOT = Path(__file__).resolve().parent.parent
R = backend._load("numpy")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


@st.composite
def ctc_case(draw):
    """(log_probs (T, B, C), targets, input_lengths, target_lengths): labels drawn from few classes so
    repeats are common; some inputs exactly as long as the labels need (U + number of repeats)."""
    B, C = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    targets, il, tl = [], [], []
    for _ in range(B):
        U = draw(st.integers(0, 4))
        y = rng.integers(1, C, U)
        need = max(1, U + int(np.sum(y[1:] == y[:-1])))
        il.append(need + draw(st.sampled_from([0, 0, 1, 3])))
        targets.append(y)
        tl.append(U)
    T = max(il)
    tg = np.zeros((B, max(max(tl), 1)), np.int64)
    for b, y in enumerate(targets):
        tg[b, :len(y)] = y
    x = rng.standard_normal((T, B, C))
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return lp, tg, np.array(il), np.array(tl)


@covers("ctc_loss", forward=False)
@settings(deadline=None, max_examples=40)
@given(case=ctc_case())
def test_ctc_gradient_matches_numerical(kernel_backend, case):
    lp, tg, il, tl = case
    v = np.random.default_rng(0).standard_normal(lp.shape[1])
    t = mt.tensor(lp, requires_grad=True)
    loss = mt.nn.functional.ctc_loss(t, tg, il, tl, reduction="none")
    assert np.all(np.isfinite(loss.numpy()))
    loss.backward(mt.tensor(v))
    (num,) = numerical_grads(lambda a: mt.nn.functional.ctc_loss(a, tg, il, tl, reduction="none"), [lp], v, [0])
    np.testing.assert_allclose(t.grad.numpy(), num, **GRAD_F64)


@settings(deadline=None, max_examples=40)
@given(case=ctc_case(), short=st.booleans())
def test_ctc_numba_matches_the_reference(case, short):
    if "numba" not in backend.available():
        pytest.skip("the Numba backend is optional")
    lp, tg, il, tl = case
    if short:  # one frame fewer than needed somewhere: no alignment, loss inf, NaN gradient
        il = np.maximum(il - (tl > 0), 1)
    a, ca = R["ctc_forward"](lp, tg, il, tl, 0)
    b, cb = backend._load("numba")["ctc_forward"](lp, tg, il, tl, 0)
    np.testing.assert_allclose(b, a, rtol=1e-12)
    # the numba tier lists no ctc_backward: the reference's runs on the cache its ctc_forward leaves
    numba_backward = backend._load("numba").get("ctc_backward", R["ctc_backward"])
    ga, gb = R["ctc_backward"](np.ones(len(il)), ca), numba_backward(np.ones(len(il)), cb)
    np.testing.assert_array_equal(np.isnan(ga), np.isnan(gb))
    np.testing.assert_allclose(np.nan_to_num(gb), np.nan_to_num(ga), rtol=1e-10, atol=1e-12)


@covers("ctc_loss", grad=False)
def test_ctc_hand_cases(kernel_backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 3))
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    F = mt.nn.functional

    def loss(T, y):  # noqa: ANN001, ANN202
        return float(F.ctc_loss(mt.tensor(lp[:T]), np.array([y or [1]]), [T], [len(y)], reduction="sum").item())

    assert loss(1, []) == pytest.approx(-lp[0, 0, 0])                           # only blank
    assert loss(2, [1, 1]) == np.inf                                             # "11" needs a blank between
    assert loss(3, [1, 1]) == pytest.approx(-(lp[0, 0, 1] + lp[1, 0, 0] + lp[2, 0, 1]))  # the one path: 1 _ 1
    # "12" in 2 frames: the one path 1 2
    assert loss(2, [1, 2]) == pytest.approx(-(lp[0, 0, 1] + lp[1, 0, 2]))
    # "1" in 2 frames: paths 1 1, 1 _, _ 1
    p = np.exp(lp[0, 0, 1] + lp[1, 0, 1]) + np.exp(lp[0, 0, 1] + lp[1, 0, 0]) + np.exp(lp[0, 0, 0] + lp[1, 0, 1])
    assert loss(2, [1]) == pytest.approx(-np.log(p))
    z = F.ctc_loss(mt.tensor(lp[:2]), np.array([[1, 1]]), [2], [2], zero_infinity=True)
    assert z.item() == 0
    with pytest.raises(ValueError, match="differ from the blank"):
        F.ctc_loss(mt.tensor(lp), np.array([[0]]), [3], [1])
    with pytest.raises(ValueError, match="input_lengths must be in"):
        F.ctc_loss(mt.tensor(lp), np.array([[1]]), [4], [1])


def test_ctc_matches_pytorch(kernel_backend):
    torch = pytest.importorskip("torch", reason="comparison with PyTorch's ctc_loss needs torch")
    rng = np.random.default_rng(2)
    T, B, C = 30, 4, 6
    x = rng.standard_normal((T, B, C))
    tg, tl, il = rng.integers(1, C, (B, 8)), np.array([8, 3, 1, 6]), np.array([30, 25, 4, 12])
    for reduction in ("mean", "sum", "none"):
        ours_x = mt.tensor(x, requires_grad=True)
        ours = mt.nn.functional.ctc_loss(mt.nn.functional.log_softmax(ours_x, dim=-1), tg, il, tl, reduction=reduction)
        tx = torch.tensor(x, requires_grad=True)
        theirs = torch.nn.functional.ctc_loss(torch.log_softmax(tx, -1), torch.tensor(tg), torch.tensor(il),
                                              torch.tensor(tl), reduction=reduction)
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-10)
        (ours.sum() if reduction == "none" else ours).backward()
        (theirs.sum() if reduction == "none" else theirs).backward()
        np.testing.assert_allclose(ours_x.grad.numpy(), tx.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_decoding():
    lp = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]]))
    assert S.greedy_decode(lp) == [1, 1, 2]                                       # 1 1 _ 1 2 -> "1 1 2"
    assert S.beam_decode(lp, beam=1) == S.greedy_decode(lp)
    # the likeliest path is blank blank (0.36) but the likeliest labelling is "1" (0.64): greedy misses it
    lp2 = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert S.greedy_decode(lp2) == [] and S.beam_decode(lp2, beam=4) == [1]
    assert S.decode_ids(S.encode("0919")) == "0919" and S.encode("0") == [1]
    with pytest.raises(ValueError, match="not a digit"):
        S.encode("12a")


def test_edit_distance_and_cer():
    assert S.edit_distance("kitten", "sitting") == 3
    assert S.edit_distance("", "123") == 3 and S.edit_distance("123", "") == 3 and S.edit_distance("12", "12") == 0
    assert S.cer(["123", "45"], ["1234", "45"]) == pytest.approx(1 / 6)


def test_features():
    sr = 16000
    fb = S.mel_filterbank(sr, 512, 80)
    assert fb.shape == (80, 257) and fb.min() >= 0 and fb.max() <= 1
    assert np.all(fb.sum(axis=1) > 0)                                           # no empty filter
    t = np.arange(sr) / sr
    feats = S.log_mel(np.sin(2 * np.pi * 1000 * t), sr)
    assert feats.shape == (1 + (sr - 400) // 160, 80)
    np.testing.assert_allclose(feats.mean(axis=0), 0, atol=1e-4)
    raw = np.log(np.abs(np.fft.rfft(np.sin(2 * np.pi * 1000 * t[:400]) * np.hanning(400), 512)) ** 2 @ fb.T + 1e-10)
    centers = (np.arange(257) * sr / 512) @ fb.T / fb.sum(axis=1)               # each filter's centre frequency
    assert abs(centers[raw.argmax()] - 1000) < 80                                # the tone lands in its mel bin
    masked = S.spec_augment(feats, np.random.default_rng(0), time_width=30)
    assert masked.shape == feats.shape and (masked == 0).sum() > 0


def test_read_wav_errors(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(ValueError, match="not a readable WAV"):
        S.read_wav(tmp_path / "bad.wav")
    with wave.open(str(tmp_path / "u8.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(100))
    with pytest.raises(ValueError, match="16-bit PCM expected"):
        S.read_wav(tmp_path / "u8.wav")


@needs_espeak
def test_tiny_model_trains_and_transcribes(tmp_path):
    """300 utterances, a 2-layer model, 60 steps: the held-out voices' CTC loss falls well below that of a
    model that outputs uniform probabilities; the commands eval and transcribe run on the checkpoint."""
    cfg = S.SpeechTrainConfig(data_dir=str(tmp_path / "data"), n_train=300, n_test=40, out=str(tmp_path / "asr"),
                              d_model=64, nhead=4, num_layers=2, dim_feedforward=128, max_iters=60, batch_size=16,
                              eval_interval=60, eval_iters=2, warmup_iters=10, lr=2e-3, dropout=0.0)
    result = S.train(cfg, progress=False)
    corpus = S.load_corpus(cfg.data_dir, cfg.n_train, cfg.n_test, cfg.test_voices, cfg.noise, cfg.seed)
    assert not set(corpus["train_voices"]) & set(corpus["test_voices"])
    # the trivial baseline: uniform probabilities over the 11 classes for every test utterance
    feats, text = corpus["test"]["feats"], corpus["test"]["text"]
    lengths = -(-np.array([len(f) for f in feats]) // S.STACK)
    tl = np.array([len(t) for t in text])
    tg = np.zeros((len(text), tl.max()), np.int64)
    for i, t in enumerate(text):
        tg[i, :len(t)] = S.encode(t)
    uniform = np.full((lengths.max(), len(text), 11), -np.log(11.0))
    baseline = mt.nn.functional.ctc_loss(mt.tensor(uniform), tg, lengths, tl, zero_infinity=True).item()
    assert result["val_loss"] < 0.6 * baseline
    (tmp_path / "a.wav").write_bytes(subprocess.run(["espeak-ng", "--stdout", "-v", "en-us", "4 2 7"],
                                                    capture_output=True, check=True).stdout)
    run = [sys.executable, "-m", "minitransformer", "asr"]
    r = subprocess.run(run + ["transcribe", "--out", cfg.out, str(tmp_path / "a.wav")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith(str(tmp_path / "a.wav") + "\t"), r.stderr
    assert set(r.stdout.split("\t")[1].strip()) <= set("0123456789")
    r = subprocess.run(run + ["transcribe", "--out", cfg.out, str(tmp_path / "missing.wav")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "error:" in r.stderr
