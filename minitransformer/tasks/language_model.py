"""The language-model job (`minitransformer train`): a GPT trained on any text, with nanoGPT's options.
The loop itself (optimizer, schedule, evaluation, checkpoints, resume, Ctrl-C) is loop.fit, shared with the
other jobs; docs/training.md walks through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import creation, distributed
from ..io import checkpoint
from ..io.hf import export_gpt2
from ..nn.gpt import GPT, GPTConfig
from ..nn.prune import apply_masks_
from ..nn.quantized import apply_format
from ..text.tokenizers import tokenizer_from_dict
from ..training.config import LoopConfig, check_heads, job_config, model_field
from ..training.loop import Job, fit, lr_at
from ..training.options import NANOGPT, Alias
from .lm_data import prepare
from .steps import build, start_run

__all__ = ["TrainConfig", "load_model", "lr_at", "train"]


@job_config
class TrainConfig(LoopConfig):
    """Every option of `minitransformer train`, with nanoGPT's names; the defaults train the small
    "baby GPT" on the built-in corpus in a couple of minutes on two cores."""

    data: str | None = None          # a UTF-8 text file; None = the built-in Python-source corpus
    tokenizer: str = "char"          # "char" or "bpe"
    vocab_size: int = 512            # BPE only: the tokenizer's target (the model's is the tokenizer's size)
    # the GPT; its options are flat (--n-layer, n_layer = 4, TrainConfig(n_layer=4)), its vocab_size the data's
    model: GPTConfig = model_field(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False),
                                   options=("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias"))
    sample_tokens: int = 300          # printed at the end; 0 = none

    POSITIVE = LoopConfig.POSITIVE + ("vocab_size", "n_layer", "n_head", "n_embd", "block_size")
    RANGES = {**LoopConfig.RANGES, "sample_tokens": (0, math.inf, True), "dropout": (0, 1, True)}
    BELOW_ONE = LoopConfig.BELOW_ONE + ("dropout",)

    def validate(self) -> None:
        """Raise ValueError with one clear line for a bad value."""
        super().validate()
        check_heads(self.model, "n_embd", "n_head")
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"--tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")
        if self.tokenizer == "bpe" and self.vocab_size < 256:
            raise ValueError(f"--vocab-size must be at least 256 for byte-level BPE, got {self.vocab_size}")


def _dataset(value: str) -> str:
    return str(Path("data") / value / "input.txt")


NANOGPT["dataset"] = Alias("data", _dataset, str, TrainConfig,
                           help="train on data/DATASET/input.txt, the text nanoGPT's prepare.py downloads")

def train(cfg: TrainConfig, overrides: dict[str, Any] | None = None, progress: bool = True,
          start: Callable[[GPT], tuple[dict[str, Any], Callable[[], None] | None]] | None = None,
          tokenizer: Any = None) -> dict[str, Any]:
    """Train (or resume) per `cfg`; returns {"step", "train_loss", "val_loss", "out", "model", "tokenizer"}.

    With cfg.resume the checkpoint in cfg.out supplies every option, except those in `overrides` (the
    options given explicitly on the command line), and training continues exactly where it stopped.
    `start(model)`, when given, prepares the new model before training (fine-tuning loads and prunes it
    there) and returns (entries for the checkpoint manifest, a function to run after each step or None);
    `tokenizer` replaces the one built from the data.
    """

    cfg, resumed = start_run(cfg, overrides, progress)
    if resumed:
        tokenizer = tokenizer_from_dict(resumed["doc"]["tokenizer"])
    w = distributed.world()
    if not w.is_main:
        w.barrier()  # under MPI, rank 0 writes the token file first; the others then read it
    data, tokenizer, source = prepare(cfg.data, Path(cfg.out), tokenizer, cfg.tokenizer, cfg.vocab_size)
    if w.is_main:
        w.barrier()
    model = build(GPT, cfg.model, resumed, vocab_size=tokenizer.vocab_size)  # --vocab-size is BPE's target
    extra, after_step = start(model) if start is not None else ({}, None)
    if resumed and "pruning" in resumed["doc"]:  # a pruned model's fine-tune: its zeros stay zeros
        params = dict(model.named_parameters())
        masks = {n: params[n].numpy() != 0 for n in resumed["doc"]["pruning"]["params"]}
        extra, after_step = {"pruning": resumed["doc"]["pruning"]}, lambda: apply_masks_(model, masks)

    def loss(split: str, rng: np.random.Generator) -> Any:
        x, y = data.batch(split, cfg.batch_size, cfg.model.block_size, rng)
        if cfg.device != "cpu":  # the batch goes where the model is
            x, y = creation.tensor(x, device=cfg.device), creation.tensor(y, device=cfg.device)
        return model(x, y)[1]

    where = cfg.data or "the Python standard library's sources"
    job = Job(model, loss, {"task": "lm", "model_config": asdict(model.config), "tokenizer": tokenizer.to_dict(),
                            **extra},
              describe=f"data: {where}, {len(data.tokens):,} tokens ({tokenizer.kind} tokenizer, vocabulary "
                       f"{tokenizer.vocab_size}); model: {model.num_parameters() / 1e6:.2f}M parameters; "
                       f"backend {cfg.backend}",
              tokens_per_step=cfg.batch_size * cfg.model.block_size * cfg.grad_accum, after_step=after_step)
    result = fit(cfg, job, resumed, progress)
    return {**result, "model": model, "tokenizer": tokenizer, "source": source}


def load_model(out: str | Path, allow_nonfinite: bool = False) -> tuple[GPT, Any, dict[str, Any]]:
    """The model and tokenizer of the checkpoint in `out` (for sampling); raises CheckpointError. Weights
    with NaN or infinity are refused unless `allow_nonfinite`."""
    doc, state = checkpoint.load_task(out, "lm", "a language model's", allow_nonfinite=allow_nonfinite)
    model = GPT(GPTConfig(**doc["model_config"]))
    with checkpoint.building(out, doc):
        if "quantization" in doc:  # integer weights and scales in place of the float Linears
            apply_format(model, doc["quantization"])
        model.load_state_dict(state)
    return model.eval(), tokenizer_from_dict(doc["tokenizer"]), doc


def export_hf(ckpt_dir: str, out_dir: str) -> str:
    """The language model and tokenizer of the checkpoint in `ckpt_dir` written to `out_dir` as a Hugging
    Face GPT-2 directory (`minitransformer export --hf`); returns a one-line summary. Raises ValueError
    (CheckpointError) for a missing or corrupt checkpoint, another job's, a quantized one, or out_dir equal
    to ckpt_dir."""
    if Path(out_dir).resolve() == Path(ckpt_dir).resolve():
        raise ValueError(f"--hf must name a new directory, not the checkpoint {ckpt_dir}")
    task = checkpoint.read_manifest(ckpt_dir).get("task", "lm")
    if task != "lm":
        raise ValueError(f"{ckpt_dir}: a {task} checkpoint; Hugging Face export covers language models")
    model, tokenizer, doc = load_model(ckpt_dir)
    if "quantization" in doc:
        raise ValueError(f"{ckpt_dir} is quantized ({doc['quantization']['bits']}-bit); export the float "
                         "checkpoint it was made from")
    export_gpt2(model, tokenizer, out_dir)
    c = model.config
    n = model.num_parameters(non_embedding=False)
    return (f"{out_dir}: Hugging Face GPT-2 (n_layer {c.n_layer}, n_head {c.n_head}, n_embd {c.n_embd}, "
            f"n_positions {c.block_size}, {n / 1e6:.2f}M parameters, {tokenizer.kind} tokenizer of "
            f"{tokenizer.vocab_size} tokens) from {ckpt_dir} at step {doc.get('step', '?')}")
