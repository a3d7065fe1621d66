"""Pruning: set weights to zero and keep them there.

- magnitude_prune_: unstructured; the `sparsity` fraction of the smallest |w| among the weights of the
  given Linears (one threshold across all of them, "global" pruning, so layers that matter less lose more).
- prune_heads_: structured; whole attention heads of a GPT are removed by zeroing their query, key and
  value rows of c_attn (and biases) and their columns of c_proj: the head then adds nothing to the
  residual stream. head_importance scores heads without data: |W_v of the head| * |W_proj columns of the
  head| (Frobenius norms), the size of the path by which a head can write to the residual stream.

Each returns masks {parameter name: bool array, True = kept}; apply_masks_ re-applies them (after each
optimizer step while fine-tuning, so pruned weights stay zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import no_grad
from .layers import Linear
from .module import Module


def prunable_linears(model: Module) -> list[str]:
    """Names of the Linears inside the blocks: every Linear except an output layer tied to an embedding."""
    emb = {id(m.weight) for m in model.modules() if type(m).__name__ == "Embedding"}
    return [n for n, m in model.named_modules() if isinstance(m, Linear) and id(m.weight) not in emb]


def apply_masks_(model: Module, masks: dict[str, np.ndarray]) -> None:
    """weight *= mask for every masked parameter, in place."""
    params = dict(model.named_parameters())
    with no_grad():
        for name, mask in masks.items():
            p = params[name]
            p.data[...] = np.where(mask, p.numpy(), 0).astype(p.dtype)


def merge_masks(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Masks that keep a weight only where both keep it."""
    out = dict(a)
    for k, m in b.items():
        out[k] = out[k] & m if k in out else m
    return out


def magnitude_prune_(model: Module, sparsity: float, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Zero the `sparsity` fraction (0..1) of smallest-magnitude weights of the Linears `names` (default:
    prunable_linears), with one global threshold; biases are kept. Returns the masks."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    names = prunable_linears(model) if names is None else names
    weights = {f"{n}.weight": model.get_submodule(n).weight.numpy() for n in names}
    if not weights:
        return {}
    mags = np.concatenate([np.abs(w).ravel() for w in weights.values()])
    k = int(round(sparsity * mags.size))
    if k == 0:
        masks = {n: np.ones(w.shape, bool) for n, w in weights.items()}
    else:
        # the k-th smallest magnitude; ties at the threshold are broken by position so exactly k go
        order = np.argsort(mags, kind="stable")
        keep = np.ones(mags.size, bool)
        keep[order[:k]] = False
        masks, at = {}, 0
        for n, w in weights.items():
            masks[n] = keep[at:at + w.size].reshape(w.shape)
            at += w.size
    apply_masks_(model, masks)
    return masks


def head_importance(model: Module) -> np.ndarray:
    """(n_layer, n_head) scores of a GPT's heads: |W_v rows of the head| * |W_proj columns of the head|."""
    c = model.config
    hs = c.n_embd // c.n_head
    scores = np.zeros((c.n_layer, c.n_head))
    for i, block in enumerate(model.transformer.h):
        w_attn, w_proj = block.attn.c_attn.weight.numpy(), block.attn.c_proj.weight.numpy()
        for h in range(c.n_head):
            v = w_attn[2 * c.n_embd + h * hs: 2 * c.n_embd + (h + 1) * hs]    # (hs, C) the head's value rows
            scores[i, h] = np.linalg.norm(v) * np.linalg.norm(w_proj[:, h * hs:(h + 1) * hs])
    return scores


def prune_heads_(model: Module, heads: dict[int, list[int]]) -> dict[str, np.ndarray]:
    """Remove the heads {layer: [head, ...]} of a GPT (zeroing their weights); returns the masks."""
    c = model.config
    C, hs = c.n_embd, c.n_embd // c.n_head
    masks: dict[str, np.ndarray] = {}
    for layer, hs_list in heads.items():
        if not 0 <= layer < c.n_layer or any(not 0 <= h < c.n_head for h in hs_list):
            raise ValueError(f"no head {hs_list} in layer {layer} (the model has {c.n_layer} layers of "
                             f"{c.n_head} heads)")
        p = f"transformer.h.{layer}.attn"
        m_attn = np.ones((3 * C, C), bool)
        m_proj = np.ones((C, C), bool)
        m_bias = np.ones(3 * C, bool)
        for h in hs_list:
            for part in range(3):                                         # q, k, v rows of the head
                m_attn[part * C + h * hs: part * C + (h + 1) * hs] = False
                m_bias[part * C + h * hs: part * C + (h + 1) * hs] = False
            m_proj[:, h * hs:(h + 1) * hs] = False
        masks[f"{p}.c_attn.weight"] = m_attn
        masks[f"{p}.c_proj.weight"] = m_proj
        if model.get_submodule(f"{p}.c_attn").bias is not None:
            masks[f"{p}.c_attn.bias"] = m_bias
    apply_masks_(model, masks)
    return masks


def least_important_heads(model: Module, n: int) -> dict[int, list[int]]:
    """The n heads with the lowest head_importance, never every head of a layer."""
    scores = head_importance(model)
    L, H = scores.shape
    if not 0 <= n <= L * (H - 1):
        raise ValueError(f"can remove 0 to {L * (H - 1)} heads (one per layer must stay), got {n}")
    chosen: dict[int, list[int]] = {}
    for flat in np.argsort(scores, axis=None, kind="stable"):
        if sum(len(v) for v in chosen.values()) == n:
            break
        layer, head = divmod(int(flat), H)
        if len(chosen.get(layer, [])) < H - 1:
            chosen.setdefault(layer, []).append(head)
    return {k: sorted(v) for k, v in sorted(chosen.items())}


def sparsity_of(model: Module, names: list[str] | None = None) -> float:
    """Fraction of zero weights among the Linears `names` (default: prunable_linears)."""
    names = prunable_linears(model) if names is None else names
    ws = [model.get_submodule(n).weight.numpy() for n in names]
    total = sum(w.size for w in ws)
    return float(sum(int((w == 0).sum()) for w in ws) / total) if total else 0.0


def describe(masks: dict[str, np.ndarray]) -> dict[str, Any]:
    """Counts for a manifest: weights masked and kept."""
    pruned = int(sum((~m).sum() for m in masks.values()))
    return {"masked": pruned, "total": int(sum(m.size for m in masks.values()))}
