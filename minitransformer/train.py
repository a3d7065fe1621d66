"""The language-model training loop (docs/training.md walks through it): a GPT trained with AdamW, a
warmup-then-cosine learning rate, gradient accumulation and clipping, periodic evaluation in nanoGPT's
format, atomic checkpoints, exact resume, and Ctrl-C that saves before exiting.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import backend, checkpoint
from .autograd import no_grad
from .nn.gpt import GPT, GPTConfig
from .nn.utils import clip_grad_norm_
from .optim import AdamW, weight_decay_groups
from .random import get_rng_state, manual_seed, set_rng_state
from .tokenizers import tokenizer_from_dict


@dataclass
class TrainConfig:
    """Every option of `minitransformer train`, with nanoGPT's names; the defaults train the small
    "baby GPT" on the built-in corpus in a couple of minutes on two cores."""

    data: str | None = None          # a UTF-8 text file; None = the built-in Python-source corpus
    tokenizer: str = "char"          # "char" or "bpe"
    vocab_size: int = 512            # BPE only
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    dropout: float = 0.0
    bias: bool = False
    max_iters: int = 1500
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None = max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0            # 0 disables clipping
    grad_accum: int = 1
    eval_interval: int = 250
    eval_iters: int = 20
    out: str = "out"
    resume: bool = False
    seed: int = 1337
    backend: str = "auto"
    device: str = "cpu"
    sample_tokens: int = 300          # printed at the end; 0 = none
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def validate(self) -> None:
        """Raise ValueError with one clear line for a bad value."""
        positive = ["vocab_size", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters",
                    "grad_accum", "eval_interval", "eval_iters"]
        for name in positive:
            if getattr(self, name) <= 0 and not (name == "max_iters" and self.max_iters == 0):
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"--n-embd ({self.n_embd}) must be divisible by --n-head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"--tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")
        if self.tokenizer == "bpe" and self.vocab_size < 256:
            raise ValueError(f"--vocab-size must be at least 256 for byte-level BPE, got {self.vocab_size}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"need 0 <= --min-lr <= --lr and --lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_iters < 0 or (self.lr_decay_iters is not None and self.lr_decay_iters < self.warmup_iters):
            raise ValueError("--lr-decay-iters must be at least --warmup-iters")
        for b in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, b) < 1.0:
                raise ValueError(f"--{b} must be in [0, 1), got {getattr(self, b)}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"--device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device.startswith("cuda"):
            from .xp import cupy_module

            try:
                cupy_module()
            except RuntimeError as e:
                raise ValueError(f"--device {self.device}: {e}") from None
        if self.backend not in ("auto", "numpy", "numba"):
            raise ValueError(f"--backend must be auto, numpy or numba, got {self.backend!r}")


def lr_at(it: int, cfg: TrainConfig) -> float:
    """Linear warmup from lr/(warmup+1) (never 0), cosine decay to min_lr at lr_decay_iters, then min_lr."""
    decay = cfg.lr_decay_iters if cfg.lr_decay_iters is not None else cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it > decay or decay == cfg.warmup_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / (decay - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


class Progress:
    """A live progress line: tqdm when installed, a plain carriage-return line otherwise."""

    def __init__(self, total: int, initial: int, enabled: bool = True) -> None:
        self.bar = None
        self.enabled = enabled and sys.stderr.isatty()
        if self.enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, leave=False)
            except ImportError:
                self.bar = None

    def update(self, step: int, total: int, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            print(f"\rstep {step}/{total} {text}", end="", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            if self.enabled:
                print("\r" + " " * 100 + "\r", end="", file=sys.stderr)
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)


def _optim_split(opt: AdamW) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Optimizer state -> (arrays for safetensors, the JSON rest)."""
    sd = opt.state_dict()
    arrays, scalars = {}, {}
    for i, st in sd["state"].items():
        scalars[str(i)] = {k: v for k, v in st.items() if not hasattr(v, "shape")}
        for k, v in st.items():
            if hasattr(v, "shape"):
                arrays[f"{i}.{k}"] = v
    return arrays, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optim_join(arrays: dict[str, np.ndarray], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in rest["scalars"].items()}
    for key, arr in arrays.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = arr
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(out: Path, step: int, model: GPT, opt: AdamW, tokenizer: Any, cfg: TrainConfig,
                    batch_rng: np.random.Generator) -> None:
    arrays, rest = _optim_split(opt)
    manifest = {"model_config": asdict(model.config), "tokenizer": tokenizer.to_dict(), "optimizer": rest,
                "train_config": asdict(cfg),
                "rng": {"global": get_rng_state(), "batches": batch_rng.bit_generator.state}}
    checkpoint.save(out, step, {k: v.numpy() for k, v in model.state_dict().items()}, arrays, manifest)


def load_model(out: str | Path) -> tuple[GPT, Any, dict[str, Any]]:
    """The model and tokenizer of the checkpoint in `out` (for sampling); raises CheckpointError."""
    doc, state, _ = checkpoint.load(out)
    model = GPT(GPTConfig(**doc["model_config"]))
    model.load_state_dict(state)
    return model.eval(), tokenizer_from_dict(doc["tokenizer"]), doc


class _StopRequest:
    """Ctrl-C once: finish the current step, save, exit. Twice: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> _StopRequest:
        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit now)",
                  file=sys.stderr, flush=True)

        try:
            self.previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def train(cfg: TrainConfig, overrides: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) per `cfg`; returns {"step", "train_loss", "val_loss", "out"}.

    With cfg.resume the checkpoint in cfg.out supplies every option, except those in `overrides` (the
    options given explicitly on the command line), and training continues exactly where it stopped.
    """
    from .data import prepare

    out = Path(cfg.out)
    doc = model_state = optim_arrays = None
    if cfg.resume:
        doc, model_state, optim_arrays = checkpoint.load(out)
        saved = TrainConfig(**{k: v for k, v in doc["train_config"].items() if k in TrainConfig.__dataclass_fields__})
        cfg = dataclasses.replace(saved, **(overrides or {}), resume=True)
    cfg.validate()
    backend.use(cfg.backend)
    backend.warmup(verbose=progress)
    tokenizer = tokenizer_from_dict(doc["tokenizer"]) if doc else None
    data, tokenizer, source = prepare(cfg.data, out, tokenizer, cfg.tokenizer, cfg.vocab_size)

    manual_seed(cfg.seed)
    batch_rng = np.random.default_rng(cfg.seed)
    gpt_cfg = GPTConfig(block_size=cfg.block_size, vocab_size=tokenizer.vocab_size, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias)
    model = GPT(gpt_cfg)
    if cfg.device != "cpu":
        model.to(cfg.device)
    opt = AdamW(weight_decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    step = 0
    if doc is not None:
        model.load_state_dict(model_state)
        opt.load_state_dict(_optim_join(optim_arrays, doc["optimizer"]))
        step = int(doc["step"])
        set_rng_state(doc["rng"]["global"])
        batch_rng.bit_generator.state = doc["rng"]["batches"]
    log = Progress(cfg.max_iters, step, enabled=progress)
    where = cfg.data or "the Python standard library's sources"
    log.write(f"data: {where}, {len(data.tokens):,} tokens ({tokenizer.kind} tokenizer, vocabulary "
              f"{tokenizer.vocab_size}); model: {model.num_parameters() / 1e6:.2f}M parameters; "
              f"backend {cfg.backend}; " + (f"resuming at step {step}" if doc else "starting"))

    @no_grad()
    def estimate_loss() -> dict[str, float]:
        model.eval()
        eval_rng = np.random.default_rng([cfg.seed, step])  # evaluation never moves the training streams
        out_losses = {}
        for split in ("train", "val"):
            losses = [model(*data.batch(split, cfg.batch_size, cfg.block_size, eval_rng))[1].item()
                      for _ in range(cfg.eval_iters)]
            out_losses[split] = float(np.mean(losses))
        model.train()
        return out_losses

    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum
    losses: dict[str, float] = {}
    last_loss = float("nan")
    with _StopRequest() as stop:
        while True:
            if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                losses = estimate_loss()
                cfg.history.append({"step": step, "train": losses["train"], "val": losses["val"]})
                log.write(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                if step > 0:
                    save_checkpoint(out, step, model, opt, tokenizer, cfg, batch_rng)
            if step >= cfg.max_iters or stop.requested:
                break
            t0 = time.perf_counter()
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            for _ in range(cfg.grad_accum):
                x, y = data.batch("train", cfg.batch_size, cfg.block_size, batch_rng)
                _, loss = model(x, y)
                # the mean over grad_accum micro-batches: each contributes 1/grad_accum of the gradient
                (loss / cfg.grad_accum).backward()
            if cfg.grad_clip > 0:
                clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            last_loss = loss.item()
            dt = time.perf_counter() - t0
            log.update(step, cfg.max_iters, f"loss {last_loss:.4f} lr {lr:.2e} {dt * 1e3:.0f} ms/step "
                                            f"{tokens_per_step / dt:,.0f} tok/s")
        if stop.requested:
            save_checkpoint(out, step, model, opt, tokenizer, cfg, batch_rng)
            log.write(f"saved a checkpoint at step {step} in {out}; continue with --resume")
    log.close()
    _plot(cfg.history, out)
    return {"step": step, "train_loss": losses.get("train", last_loss), "val_loss": losses.get("val"),
            "out": str(out), "model": model, "tokenizer": tokenizer, "source": source}


def _plot(history: list[dict[str, float]], out: Path) -> None:
    """out/loss.png (train and val loss against step) when matplotlib is installed."""
    (out / "history.json").write_text(json.dumps(history))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["train"] for h in history], label="train")
    ax.plot(steps, [h["val"] for h in history], label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
