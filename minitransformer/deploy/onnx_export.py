"""ONNX export of the GPT and of the encoder-decoder Transformer (translation models), written node by
node with the `onnx` package's helpers (the optional `onnx` extra); `minitransformer export` calls it.

    export_gpt(model, "gpt.onnx")          input  idx (batch, time) int64
                                           output logits (batch, time, vocab) float32
    export_seq2seq(model, "s2s.onnx")      inputs src (batch, src_time), tgt (batch, tgt_time) int64
                                           output logits (batch, tgt_time, vocab) float32

Batch and time are dynamic axes. Opset 17 (LayerNormalization is a single node there). The graph is the
eval-mode forward: dropout is left out, attention is written out as MatMul -> scale -> mask -> Softmax ->
MatMul, with the causal mask built from the input's length (Trilu) and, for translation models, the
padding mask from the <pad> id, so a padded batch gives the same logits as here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io import checkpoint
from ..tasks.common import PAD
from ..tasks.language_model import load_model
from ..tasks.translation import load

OPSET = 17


def _onnx() -> Any:
    try:
        import onnx  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise RuntimeError("ONNX export needs the onnx package: pip install 'minitransformer[onnx]'") from None
    return onnx


def _weight_bias(mod: Any, base: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A float Linear's (weight, bias or None); a quantized layer is refused."""
    if not hasattr(mod, "weight"):
        raise ValueError(f"{base}: a quantized layer; export the float checkpoint it was made from")
    return mod.weight.numpy(), None if mod.bias is None else mod.bias.numpy()


class _Graph:
    """Collects nodes and initializers; every op returns the name of its (single) output."""

    def __init__(self) -> None:
        self.onnx = _onnx()
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def _name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value: Any, base: str = "const") -> str:
        name = self._name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    # ---- layers -------------------------------------------------------------------------------------------
    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, base: str) -> str:
        """x (..., in) @ weight^T (+ bias): the weight is stored transposed, (in, out), for MatMul."""
        y = self.op("MatMul", x, self.const(np.ascontiguousarray(weight.T, dtype=np.float32), base + ".weight_t"))
        return self.op("Add", y, self.const(bias.astype(np.float32), base + ".bias")) if bias is not None else y

    def module_linear(self, x: str, mod: Any, base: str) -> str:
        return self.linear(x, *_weight_bias(mod, base), base)

    def layer_norm(self, x: str, ln: Any, base: str) -> str:
        (C,) = ln.normalized_shape
        w = ln.weight.numpy() if ln.weight is not None else np.ones(C, np.float32)
        b = ln.bias.numpy() if ln.bias is not None else np.zeros(C, np.float32)
        return self.op("LayerNormalization", x, self.const(w.astype(np.float32), base + ".weight"),
                       self.const(b.astype(np.float32), base + ".bias"), axis=-1, epsilon=float(ln.eps))

    def gelu(self, x: str, approximate: str = "none") -> str:
        """0.5 x (1 + erf(x / sqrt 2)), or the tanh form."""
        if approximate == "tanh":
            inner = self.op("Mul", self.op("Add", x, self.op("Mul", self.const(np.float32(0.044715)),
                                                             self.op("Pow", x, self.const(np.float32(3.0))))),
                            self.const(np.float32(math.sqrt(2.0 / math.pi))))
            core = self.op("Tanh", inner)
        else:
            core = self.op("Erf", self.op("Mul", x, self.const(np.float32(1.0 / math.sqrt(2.0)))))
        return self.op("Mul", self.op("Mul", x, self.const(np.float32(0.5))),
                       self.op("Add", core, self.const(np.float32(1.0))))

    def length(self, ids: str) -> str:
        """The time length of ids (batch, time) as a 1-element int64 tensor [T]."""
        return self.op("Shape", ids, start=1, end=2)

    def causal_blocked(self, T: str) -> str:
        """(T, T) bool, True above the diagonal: the future a position may not see."""
        ones = self.op("ConstantOfShape", self.op("Concat", T, T, axis=0),
                       value=self.onnx.numpy_helper.from_array(np.array([1], np.int64)))
        return self.op("Cast", self.op("Trilu", ones, self.const(np.array(1, np.int64)), upper=1),
                       to=self.onnx.TensorProto.BOOL)

    def attention(self, q_in: str, kv_in: str, w: np.ndarray, b: np.ndarray | None, w_out: np.ndarray,
                  b_out: np.ndarray | None, nh: int, blocked: list[str], base: str) -> str:
        """Multi-head attention with the packed projection w (3C, C) = [Wq; Wk; Wv]; `blocked` holds bool
        tensors broadcastable to (B, nh, T, S), True where a query may not see a key."""
        C = w.shape[1]
        hs = C // nh
        heads = self.const(np.array([0, 0, nh, hs], np.int64), base + ".heads")

        def proj(x: str, i: int, perm: list[int]) -> str:
            y = self.linear(x, w[i * C:(i + 1) * C], None if b is None else b[i * C:(i + 1) * C], f"{base}.{'qkv'[i]}")
            return self.op("Transpose", self.op("Reshape", y, heads), perm=perm)  # (B, T, nh, hs) -> perm

        q = proj(q_in, 0, [0, 2, 1, 3])                                          # (B, nh, T, hs)
        kt = proj(kv_in, 1, [0, 2, 3, 1])                                        # (B, nh, hs, S)
        v = proj(kv_in, 2, [0, 2, 1, 3])                                         # (B, nh, S, hs)
        s = self.op("Mul", self.op("MatMul", q, kt), self.const(np.float32(1.0 / math.sqrt(hs))))
        for m in blocked:
            s = self.op("Where", m, self.const(np.float32(-np.inf)), s)
        y = self.op("MatMul", self.op("Softmax", s, axis=-1), v)                  # (B, nh, T, hs)
        y = self.op("Reshape", self.op("Transpose", y, perm=[0, 2, 1, 3]), self.const(np.array([0, 0, C], np.int64)))
        return self.linear(y, w_out, b_out, base + ".out")

    def save(self, inputs: list[tuple[str, list[str]]], output: str, out_axes: list[str], path: str | Path,
             name: str) -> None:
        onnx, h = self.onnx, self.onnx.helper
        ins = [h.make_tensor_value_info(n, onnx.TensorProto.INT64, axes) for n, axes in inputs]
        self.nodes.append(h.make_node("Identity", [output], ["logits"]))
        outs = [h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, out_axes)]
        graph = h.make_graph(self.nodes, name, ins, outs, self.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="minitransformer")
        onnx.checker.check_model(model)
        Path(path).write_bytes(model.SerializeToString())


def export_gpt(model: Any, path: str | Path) -> None:
    """Write a GPT (mt.nn.GPT, float weights) as ONNX: idx (batch, time) -> logits (batch, time, vocab)."""
    g = _Graph()
    c = model.config
    tr = model.transformer
    T = g.length("idx")
    pos = g.op("Range", g.const(np.array(0, np.int64)), g.op("Squeeze", T), g.const(np.array(1, np.int64)))
    x = g.op("Add", g.op("Gather", g.const(tr.wte.weight.numpy(), "wte"), "idx"),
             g.op("Gather", g.const(tr.wpe.weight.numpy(), "wpe"), pos))          # (B, T, C)
    causal = g.causal_blocked(T)
    for i, block in enumerate(tr.h):
        p = f"h.{i}"
        a = block.attn
        h = g.layer_norm(x, block.ln_1, p + ".ln_1")
        h = g.attention(h, h, *_weight_bias(a.c_attn, p + ".attn.c_attn"), *_weight_bias(a.c_proj, p + ".attn.c_proj"),
                        c.n_head, [causal], p + ".attn")
        x = g.op("Add", x, h)
        m = block.mlp
        h = g.gelu(g.module_linear(g.layer_norm(x, block.ln_2, p + ".ln_2"), m.c_fc, p + ".c_fc"), m.gelu.approximate)
        x = g.op("Add", x, g.module_linear(h, m.c_proj, p + ".mlp.c_proj"))
    x = g.layer_norm(x, tr.ln_f, "ln_f")
    g.save([("idx", ["batch", "time"])], g.module_linear(x, model.lm_head, "lm_head"),
           ["batch", "time", "vocab"], path, "gpt")


def _mha_weights(mha: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    w = mha.in_proj_weight.numpy()
    b = None if mha.in_proj_bias is None else mha.in_proj_bias.numpy()
    ob = None if mha.out_proj.bias is None else mha.out_proj.bias.numpy()
    return w, b, mha.out_proj.weight.numpy(), ob


def export_seq2seq(model: Any, path: str | Path) -> None:
    """Write a translation model (tasks.translation.Seq2SeqTransformer) as ONNX:
    src (batch, src_time), tgt (batch, tgt_time) -> logits (batch, tgt_time, vocab)."""

    g = _Graph()
    cfg = model.config
    nh = cfg.nhead
    pe = g.const(model.pos.pe.numpy().astype(np.float32), "pe")
    scale = g.const(np.float32(math.sqrt(cfg.d_model)))
    zero = g.const(np.array([0], np.int64))

    def embed(ids: str, emb: Any, name: str) -> str:
        T = g.length(ids)
        x = g.op("Mul", g.op("Gather", g.const(emb.weight.numpy(), name), ids), scale)
        return g.op("Add", x, g.op("Slice", pe, zero, T, zero))                    # + pe[:T]

    def ff(x: str, layer: Any, p: str) -> str:
        h = g.module_linear(x, layer.linear1, p + ".linear1")
        act = layer.activation
        h = g.op("Relu", h) if getattr(act, "__name__", "") == "relu" else g.gelu(h)
        return g.module_linear(h, layer.linear2, p + ".linear2")

    def sublayer(x: str, norm: Any, norm_first: bool, fn: Any, p: str) -> str:
        if norm_first:
            return g.op("Add", x, fn(g.layer_norm(x, norm, p)))
        return g.layer_norm(g.op("Add", x, fn(x)), norm, p)

    src_pad = g.op("Unsqueeze", g.op("Equal", "src", g.const(np.array(PAD, np.int64))),
                   g.const(np.array([1, 2], np.int64)))                             # (B, 1, 1, S)
    x = embed("src", model.src_embed, "src_embed")
    enc = model.transformer.encoder
    for i, layer in enumerate(enc.layers):
        p = f"encoder.{i}"
        sa = _mha_weights(layer.self_attn)
        x = sublayer(x, layer.norm1, layer.norm_first,
                     lambda h, p=p, sa=sa: g.attention(h, h, *sa, nh, [src_pad], p + ".self_attn"), p + ".norm1")
        x = sublayer(x, layer.norm2, layer.norm_first, lambda h, p=p, L=layer: ff(h, L, p), p + ".norm2")
    memory = g.layer_norm(x, enc.norm, "encoder.norm") if enc.norm is not None else x
    y = embed("tgt", model.tgt_embed, "tgt_embed")
    causal = g.causal_blocked(g.length("tgt"))
    dec = model.transformer.decoder
    for i, layer in enumerate(dec.layers):
        p = f"decoder.{i}"
        sa, ca = _mha_weights(layer.self_attn), _mha_weights(layer.multihead_attn)
        y = sublayer(y, layer.norm1, layer.norm_first,
                     lambda h, p=p, sa=sa: g.attention(h, h, *sa, nh, [causal], p + ".self_attn"), p + ".norm1")
        y = sublayer(y, layer.norm2, layer.norm_first,
                     lambda h, p=p, ca=ca: g.attention(h, memory, *ca, nh, [src_pad], p + ".cross_attn"),
                     p + ".norm2")
        y = sublayer(y, layer.norm3, layer.norm_first, lambda h, p=p, L=layer: ff(h, L, p), p + ".norm3")
    if dec.norm is not None:
        y = g.layer_norm(y, dec.norm, "decoder.norm")
    g.save([("src", ["batch", "src_time"]), ("tgt", ["batch", "tgt_time"])],
           g.module_linear(y, model.generator, "generator"), ["batch", "tgt_time", "vocab"], path, "seq2seq")


def export_checkpoint(out: str | Path, path: str | Path) -> str:
    """Export the model of the checkpoint in `out` (a language model or a translation model); returns
    which kind it was."""

    task = checkpoint.read_manifest(out).get("task", "lm")
    if task == "lm":
        export_gpt(load_model(out)[0], path)  # a quantized model is refused there, layer named
        return "GPT"
    if task == "translate":
        export_seq2seq(load(out)[0], path)
        return "encoder-decoder Transformer"
    raise ValueError(f"{out}: ONNX export covers language models and translation models, not a {task} checkpoint")
