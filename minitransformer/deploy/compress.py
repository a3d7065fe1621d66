"""Compressed language-model checkpoints: `minitransformer quantize`, `prune` and `eval`.

quantize_checkpoint  a trained checkpoint -> a new one whose Linears (and optionally the tied embedding)
                     hold int8 or 4-bit weights (nn/quantized.py); the manifest's "quantization" entry
                     says which, and tasks/language_model.load_model (so `sample`, `serve`, `eval`) rebuilds them.
prune_checkpoint     -> a new checkpoint with the smallest weights and/or the least important heads zeroed
                     (nn/prune.py), optionally fine-tuned for a few steps with the zeros held in place.
evaluate             the validation loss over every window of the validation split (deterministic, so
                     float, quantized and pruned models compare exactly), the checkpoint's file size, and
                     its weights' bytes in memory.

Compressed checkpoints are for inference: they carry no optimizer state, and --resume refuses them
(a fine-tuned pruned checkpoint is an ordinary training checkpoint and can be resumed).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..io import checkpoint
from ..nn import prune
from ..nn.quantized import quantize_, weight_bytes
from ..tasks.language_model import TrainConfig, load_model, train
from ..tasks.lm_data import prepare
from ..training.loop import saved_config

# manifest entries of a training checkpoint that an inference-only copy does not carry
_TRAINING_ONLY = ("format", "version", "step", "files", "sha256", "optimizer", "rng")


def _inference_manifest(doc: dict[str, Any], written_by: str, **extra: Any) -> dict[str, Any]:
    return {**{k: v for k, v in doc.items() if k not in _TRAINING_ONLY}, "written_by": written_by,
            "source_step": doc.get("step"), **extra}


def _same_dir(src: str | Path, dst: str | Path) -> None:
    if Path(src).resolve() == Path(dst).resolve():
        raise ValueError(f"--to must be a new directory, not the source checkpoint {src}")


def quantize_checkpoint(src: str | Path, dst: str | Path, bits: int = 8, group: int = 64,
                        embedding: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Write a quantized copy of the language-model checkpoint `src` to `dst` (refused when `dst` holds a
    checkpoint, unless `overwrite`); returns its "quantization" description."""

    _same_dir(src, dst)
    if not overwrite:
        checkpoint.refuse_to_replace(dst, "pass --overwrite to replace it, or choose another --to")
    model, _, doc = load_model(src)
    if "quantization" in doc:
        raise ValueError(f"{src} is already quantized ({doc['quantization']['bits']}-bit); quantize the float "
                         "checkpoint it was made from")
    desc = quantize_(model, bits, group, embedding)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    checkpoint.save(dst, int(doc["step"]), state, {}, _inference_manifest(doc, "quantize", quantization=desc))
    return desc


def prune_checkpoint(src: str | Path, dst: str | Path, sparsity: float = 0.0, heads: int = 0,
                     finetune_iters: int = 0, finetune_lr: float | None = None,
                     progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Write a pruned copy of `src` to `dst`: `sparsity` of the block weights by magnitude and the `heads`
    least important heads; with finetune_iters > 0, train that many steps (the source run's data and
    options; lr constant at finetune_lr, default the run's min_lr) with the zeros held. (Nothing pruned
    and a fine-tune: the control that tells what the extra steps alone are worth.) Returns the
    "pruning" description. `dst` must not hold a checkpoint, unless `overwrite`."""

    _same_dir(src, dst)
    if not overwrite:
        checkpoint.refuse_to_replace(dst, "pass --overwrite to replace it, or choose another --to")
    model, tokenizer, doc = load_model(src)
    if "quantization" in doc:
        raise ValueError(f"{src} is quantized; prune the float checkpoint (and quantize afterwards)")
    if sparsity == 0 and heads == 0 and finetune_iters == 0:
        raise ValueError("nothing to prune: give --sparsity (a fraction of weights) and/or --heads (a count)")
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    made: dict[str, Any] = {}  # the description, from whichever model start() prepared

    def start(m: Any) -> tuple[dict[str, Any], Any]:
        """Load the source weights into m and prune them; -> (manifest entry, mask re-application)."""
        m.load_state_dict(state)
        chosen = prune.least_important_heads(m, heads) if heads else {}
        masks = prune.prune_heads_(m, chosen) if chosen else {}
        if sparsity:  # each pruning applies its own masks; the merged ones are what fine-tuning keeps
            masks = prune.merge_masks(masks, prune.magnitude_prune_(m, sparsity))
        made["pruning"] = {"sparsity": sparsity, "heads": {str(k): v for k, v in chosen.items()},
                           "params": sorted(masks), "finetune_iters": finetune_iters,
                           "achieved_sparsity": prune.sparsity_of(m), **prune.describe(masks)}
        return dict(made), (lambda: prune.apply_masks_(m, masks))

    if finetune_iters > 0:
        cfg = saved_config(TrainConfig, doc)
        lr = cfg.min_lr if finetune_lr is None else finetune_lr
        cfg = dataclasses.replace(cfg, out=str(dst), resume=False, overwrite=True, max_iters=finetune_iters, lr=lr,
                                  min_lr=lr, warmup_iters=0, eval_interval=finetune_iters, sample_tokens=0,
                                  history=[])
        train(cfg, progress=progress, start=start, tokenizer=tokenizer)
    else:
        start(model)
        pruned = {k: v.numpy() for k, v in model.state_dict().items()}
        checkpoint.save(dst, int(doc["step"]), pruned, {}, _inference_manifest(doc, "prune", **made))
    return made["pruning"]


def checkpoint_bytes(out: str | Path) -> int:
    """Size on disk of the checkpoint's weight file."""
    return (Path(out) / checkpoint.read_manifest(out)["files"]["model"]).stat().st_size


@no_grad()
def val_loss(model: Any, tokens: np.ndarray, block_size: int, batch_size: int = 64) -> float:
    """Mean cross-entropy of predicting every token of `tokens` from the ones before it, in consecutive
    windows of block_size (each window starts its context afresh), over all windows that fit."""
    n = (len(tokens) - 1) // block_size
    if n == 0:
        raise ValueError(f"the validation split ({len(tokens)} tokens) is shorter than one block ({block_size})")
    x_all = np.asarray(tokens[:n * block_size], dtype=np.int64).reshape(n, block_size)       # (n, T)
    y_all = np.asarray(tokens[1:n * block_size + 1], dtype=np.int64).reshape(n, block_size)
    total = 0.0
    for i in range(0, n, batch_size):
        _, loss = model(x_all[i:i + batch_size], y_all[i:i + batch_size])
        total += loss.item() * len(x_all[i:i + batch_size])
    return total / n


def evaluate(out: str | Path, batch_size: int = 64, allow_nonfinite: bool = False) -> dict[str, Any]:
    """{"val_loss", "file_bytes", "weight_bytes", "quantization", "pruning"} of a language-model checkpoint;
    the data is the one its training run used (tokenized again into out/data when not cached there).
    Weights with NaN or infinity are refused unless `allow_nonfinite`."""

    model, tokenizer, doc = load_model(out, allow_nonfinite=allow_nonfinite)
    cfg = saved_config(TrainConfig, doc)
    data, _, _ = prepare(cfg.data, Path(out), tokenizer, cfg.tokenizer, cfg.vocab_size)
    return {"val_loss": val_loss(model, data.val, model.config.block_size, batch_size),
            "file_bytes": checkpoint_bytes(out), "weight_bytes": weight_bytes(model),
            "quantization": doc.get("quantization"), "pruning": doc.get("pruning")}
