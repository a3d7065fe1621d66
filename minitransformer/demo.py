"""`python -m minitransformer demo`: fit a small character-level model to Python source with the
autograd engine alone, printing the loss as it falls and a sample at the end.

The model is a multilayer perceptron over the previous `context` characters (Bengio et al. 2003):
embedding -> tanh hidden layer -> logits, trained with minibatch SGD on a few modules of the Python
standard library (found through `sysconfig`, so nothing is downloaded).
"""

from __future__ import annotations

import math
import sysconfig
import time
from pathlib import Path

import numpy as np

import minitransformer as mt
import minitransformer.nn.functional as F

STDLIB_FILES = ("textwrap.py", "string.py", "fnmatch.py", "bisect.py", "colorsys.py", "shlex.py")


def stdlib_text(files: tuple[str, ...] = STDLIB_FILES) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = [(root / f).read_text(encoding="utf-8") for f in files if (root / f).is_file()]
    if not parts:
        raise FileNotFoundError(f"none of {files} found under {root}")
    return "\n".join(parts)


def windows(ids: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """All (context, next) pairs: X (N, context), Y (N,)."""
    n = len(ids) - context
    X = np.lib.stride_tricks.sliding_window_view(ids, context)[:n]
    return np.ascontiguousarray(X), ids[context:]


def main(steps: int = 3000, context: int = 8, emb: int = 16, hidden: int = 256, batch: int = 128,
         seed: int = 1337) -> float:
    mt.manual_seed(seed)
    mt.backend.warmup(verbose=True)
    text = stdlib_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    Xtr, Ytr = windows(ids[:split], context)
    Xva, Yva = windows(ids[split:], context)
    V = len(chars)
    print(f"corpus: {len(text):,} characters of Python source, vocabulary {V}, "
          f"{len(Xtr):,} training windows; expect loss to start near ln({V}) = {math.log(V):.2f}")

    params = {
        "emb": mt.randn(V, emb) * 0.5,
        "w1": mt.randn(context * emb, hidden) * (1.0 / math.sqrt(context * emb)),
        "b1": mt.zeros(hidden),
        "w2": mt.randn(hidden, V) * 0.01,
        "b2": mt.zeros(V),
    }
    for p in params.values():
        p.requires_grad_()

    def loss_fn(X: np.ndarray, Y: np.ndarray) -> mt.Tensor:
        x = F.embedding(mt.tensor(X), params["emb"])             # (B, context, emb)
        h = (x.reshape(len(X), -1) @ params["w1"] + params["b1"]).tanh()  # (B, hidden)
        logits = h @ params["w2"] + params["b2"]                 # (B, V)
        logp = F.log_softmax(logits, dim=-1)
        return -logp.gather(1, mt.tensor(Y).unsqueeze(1)).mean()  # mean negative log-likelihood

    rng = mt.random.generator()
    t0 = time.perf_counter()
    for step in range(steps + 1):
        lr = 0.1 if step < steps * 2 // 3 else 0.01
        idx = rng.integers(0, len(Xtr), batch)
        loss = loss_fn(Xtr[idx], Ytr[idx])
        for p in params.values():
            p.grad = None
        loss.backward()
        with mt.no_grad():
            for p in params.values():
                p -= lr * p.grad
        if step % 500 == 0 or step == steps:
            with mt.no_grad():
                val = loss_fn(Xva[:4000], Yva[:4000]).item()
            print(f"step {step:5d}: train loss {loss.item():.4f}, val loss {val:.4f} "
                  f"({time.perf_counter() - t0:.1f}s)")

    # sample: feed the model its own output, one character at a time
    out, ctx = [], list(ids[:context])
    with mt.no_grad():
        for _ in range(300):
            x = F.embedding(mt.tensor(np.array([ctx[-context:]])), params["emb"])
            h = (x.reshape(1, -1) @ params["w1"] + params["b1"]).tanh()
            probs = F.softmax(h @ params["w2"] + params["b2"], dim=-1)
            nxt = int(mt.multinomial(probs, 1).item())
            ctx.append(nxt)
            out.append(chars[nxt])
    print("sample:\n" + "".join(out))
    return val
