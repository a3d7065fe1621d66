"""mt.viz.graph: the DOT text is well formed (and Graphviz draws it when installed), labels carry the op,
shape, dtype, bytes held for backward and kernel tier, and repeated blocks fold (a GPT's four blocks to
one ×4) without folding anything that differs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minitransformer as mt
from minitransformer import nn
from minitransformer.explore import graph as viz_module
from minitransformer.nn import functional as F
from minitransformer.nn.gpt import GPT, GPTConfig

DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")


# ------------------------------------------------------------------------------------------------------
# helpers: a Graphviz-free check of the DOT text, and an independent count of the graph's nodes


def _strip_strings(source: str) -> str:
    """The DOT text with every quoted string emptied (escapes inside them honoured)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', source)


def _parse(source: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Declared node ids and edges; asserts the braces balance and every edge joins declared nodes."""
    bare = _strip_strings(source)
    depth = 0
    for ch in bare:
        depth += (ch == "{") - (ch == "}")
        assert depth >= 0
    assert depth == 0
    assert bare.lstrip().startswith("digraph")
    declared = set(re.findall(r"^\s*(\w+) \[", bare, re.M)) - {"graph", "node", "edge"}
    edges = re.findall(r"^\s*(\w+) -> (\w+);", bare, re.M)
    for a, b in edges:
        assert a in declared and b in declared
    return declared, edges


def _ops(source: str) -> list[str]:
    return [d for d in _parse(source)[0] if d.startswith("op")]


def _function_nodes(t: mt.Tensor) -> int:
    """How many Function nodes are reachable from t through _ctx.inputs (each counted once)."""
    seen: set[int] = set()
    stack = [t]
    while stack:
        u = stack.pop()
        if u._ctx is None or id(u._ctx) in seen:
            continue
        seen.add(id(u._ctx))
        stack.extend(u._ctx.inputs)
    return len(seen)


def _gpt_loss(n_layer: int) -> tuple[GPT, mt.Tensor]:
    mt.manual_seed(0)
    model = GPT(GPTConfig(n_layer=n_layer, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    rng = np.random.default_rng(0)
    idx, targets = (mt.tensor(rng.integers(0, 11, (2, 8))) for _ in range(2))
    _, loss = model(idx, targets)
    return model, loss


def _small_graph() -> tuple[dict[str, mt.Tensor], mt.Tensor]:
    mt.manual_seed(0)
    x = mt.randn(4, 8, requires_grad=True)
    w = mt.randn(16, 8, requires_grad=True)
    ln_w, ln_b = mt.ones(16, requires_grad=True), mt.zeros(16, requires_grad=True)
    h = F.layer_norm(F.gelu(F.linear(x, w)), (16,), ln_w, ln_b)
    return {"x": x, "w": w, "ln.weight": ln_w, "ln.bias": ln_b}, h.sum()


# ------------------------------------------------------------------------------------------------------
# the DOT text, and Graphviz


def test_dot_text_is_well_formed_and_str_is_the_source():
    params, loss = _small_graph()
    g = mt.viz.graph(loss, params)
    assert str(g) == g.source
    declared, edges = _parse(g.source)
    assert len(_ops(g.source)) == _function_nodes(loss) == 4  # Linear, GELU, LayerNorm, Sum
    assert {d for d in declared if d.startswith("leaf")} == {n.id for n in g.nodes if n.kind == "leaf"}
    assert len(edges) == 7  # x, w -> Linear -> GELU -> LayerNorm <- ln.weight, ln.bias; LayerNorm -> Sum


@needs_dot
def test_dot_draws_it_and_render_writes_svg_and_png(tmp_path):
    _, loss = _gpt_loss(2)
    g = mt.viz.graph(loss)
    done = subprocess.run([DOT, "-Tsvg"], input=g.source.encode(), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    svg = g.render(tmp_path / "graph.svg")
    png = g.render(tmp_path / "graph.png")
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg")) and "×2" in svg.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert g.render(tmp_path / "graph.out", format="svg").stat().st_size > 0
    assert "<svg" in g._repr_svg_()


def test_without_dot_render_says_what_to_install_and_the_source_still_works(tmp_path, monkeypatch):
    _, loss = _small_graph()
    g = mt.viz.graph(loss)
    monkeypatch.setattr(viz_module.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"install Graphviz .*apt-get install graphviz.*g\.source"):
        g.render(tmp_path / "graph.svg")
    assert g._repr_svg_() is None
    assert g.save(tmp_path / "graph.dot").read_text(encoding="utf-8") == g.source
    with pytest.raises(ValueError, match="format"):
        g.render(tmp_path / "graph.unknown")


# ------------------------------------------------------------------------------------------------------
# labels


def test_labels_show_op_names_shapes_dtypes_and_named_leaves():
    params, loss = _small_graph()
    g = mt.viz.graph(loss, params)
    ops = {n.name: n for n in g.nodes if n.kind == "op"}
    assert set(ops) == {"Linear", "GELU", "LayerNorm", "Sum"}
    assert (ops["Linear"].shape, ops["Linear"].dtype) == ((4, 16), "float32")
    assert ops["Sum"].shape == () and ops["Sum"].root
    assert r'"Linear\n(4, 16) float32\nsaved ' in g.source
    assert r'"Sum\n() float32\nsaved ' in g.source
    assert r'"ln.weight\n(16,) float32"' in g.source and r'"x\n(4, 8) float32"' in g.source
    root = next(line for line in g.source.splitlines() if r'"Sum\n' in line)
    assert "penwidth=2" in root  # the root is highlighted
    x64 = mt.randn(3, dtype=mt.float64, requires_grad=True)
    assert r"(3,) float64" in mt.viz.graph(x64.exp()).source
    bare = mt.viz.graph(loss, show_saved=False).source  # unnamed leaves: shape and dtype only
    assert "saved" not in bare and r'"(16, 8) float32"' in bare


def test_bytes_held_for_backward():
    mt.manual_seed(0)
    x = mt.randn(4, 8, requires_grad=True)
    w = mt.randn(16, 8, requires_grad=True)
    g = mt.viz.graph(F.linear(x, w))
    (node,) = (n for n in g.nodes if n.name == "Linear")
    expected = x.data.nbytes + w.data.nbytes  # Linear holds x and weight for dx and dweight
    assert node.saved_bytes == expected == 640
    assert f"saved {expected} B" in g.source
    # one buffer counts once: x * x holds x twice, and a view of x shares x's memory
    assert next(n for n in mt.viz.graph(x * x).nodes if n.name == "Mul").saved_bytes == x.data.nbytes
    y = x * 1.0
    shared = mt.viz.graph(y.view(32) * y.view(32))
    assert next(n for n in shared.nodes if n.root).saved_bytes == y.data.nbytes
    assert next(n for n in shared.nodes if n.name == "Reshape").saved_bytes == 0  # a view holds nothing


def test_tier_label_follows_the_backend_setting():
    params, loss = _small_graph()
    ln = lambda g: next(n for n in g.nodes if n.name == "LayerNorm")  # noqa: E731
    with mt.backend.use("numpy"):
        assert ln(mt.viz.graph(loss)).tier == "kernels: numpy"
    default = ln(mt.viz.graph(loss))
    assert default.tier == "kernels: " + mt.backend.tier_of("layernorm_forward")
    if "numba" in mt.backend.available():
        assert default.tier == "kernels: numba"
    assert next(n for n in mt.viz.graph(loss).nodes if n.name == "Linear").tier == "numpy (plain array code)"


# ------------------------------------------------------------------------------------------------------
# folding


def test_gpt_with_four_layers_folds_to_one_block_times_four():
    model, loss = _gpt_loss(4)
    params = dict(model.named_parameters())
    unfolded = mt.viz.graph(loss, params, fold=False)
    folded = mt.viz.graph(loss, params)
    assert len(_ops(unfolded.source)) == _function_nodes(loss) == unfolded.total_ops
    assert "×" not in unfolded.source and unfolded.folds == []
    names = [n.name for n in unfolded.nodes if n.kind == "op"]
    assert names.count("LayerNorm") == 9 and names.count("QKVAttention") == 4 and names.count("BiasGELU") == 4
    assert {"Embedding", "Add", "Linear", "Reshape", "CrossEntropy"} <= set(names)

    assert [(f.repeats, f.ops) for f in folded.folds] == [(4, 10)]
    assert folded.source.count("×") == 1 and "subgraph cluster_fold0" in folded.source
    _, one_layer = _gpt_loss(1)
    per_block = (_function_nodes(loss) - _function_nodes(one_layer)) // 3
    assert len(_ops(folded.source)) == _function_nodes(one_layer) == _function_nodes(loss) - 3 * per_block
    block = [n.name for n in folded.nodes if n.kind == "op" and n.cluster == 0]
    assert block == ["LayerNorm", "Linear", "QKVAttention", "Linear", "Add",
                     "LayerNorm", "Linear", "BiasGELU", "Linear", "Add"]
    outside = [n.name for n in folded.nodes if n.kind == "op" and n.cluster < 0]
    assert outside[-4:] == ["LayerNorm", "Linear", "Reshape", "CrossEntropy"]  # ln_f, lm_head, view, loss
    leaves = {n.name: n.cluster for n in folded.nodes if n.kind == "leaf"}
    assert leaves["transformer.h.{0..3}.attn.c_attn.weight"] == 0
    assert leaves["transformer.wte.weight"] == -1  # tied to lm_head: read outside the block
    assert next(n for n in folded.nodes if n.root).name == "CrossEntropy"


def test_one_layer_gpt_shows_no_fold():
    model, loss = _gpt_loss(1)
    g = mt.viz.graph(loss, dict(model.named_parameters()))
    assert g.folds == [] and "×" not in g.source
    assert g.source == mt.viz.graph(loss, dict(model.named_parameters()), fold=False).source


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_stack_folds(norm_first):
    mt.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    encoder = nn.TransformerEncoder(layer, 3)
    src = mt.randn(2, 5, 16, requires_grad=True)
    out = encoder(src).sum()
    g = mt.viz.graph(out, {"src": src, **dict(encoder.named_parameters())})
    assert [f.repeats for f in g.folds] == [3]
    assert len(_ops(g.source)) == g.folds[0].ops + 1 and g.total_ops == _function_nodes(out)  # + the Sum
    leaves = {n.name: n.cluster for n in g.nodes if n.kind == "leaf"}
    assert leaves["src"] == -1 and leaves["layers.{0..2}.linear1.weight"] == 0


def test_graph_without_repetition_is_drawn_unchanged():
    params, loss = _small_graph()
    assert mt.viz.graph(loss, params).source == mt.viz.graph(loss, params, fold=False).source


def test_same_shapes_but_different_ops_or_wiring_do_not_fold():
    x = mt.randn(8, requires_grad=True)
    y = x
    for op in (mt.tanh, mt.sigmoid, mt.exp, mt.tanh, mt.relu, mt.sigmoid, mt.exp, mt.relu):
        y = op(y)
    g = mt.viz.graph(y)
    assert g.folds == [] and len(_ops(g.source)) == 8
    a = mt.tanh(x) + x  # then the same ops wired differently
    h = mt.tanh(a)
    g = mt.viz.graph(h + h)
    assert g.folds == [] and len(_ops(g.source)) == 4
    same = x
    for _ in range(6):
        same = mt.tanh(same) + same
    g = mt.viz.graph(same)
    assert [(f.repeats, f.ops) for f in g.folds] == [(6, 2)] and len(_ops(g.source)) == 2


def test_side_by_side_copies_do_not_fold():
    x = mt.randn(8, requires_grad=True)
    z = mt.randn(8, requires_grad=True)
    branches = [mt.exp(mt.tanh(t)) for t in (x, z)]  # identical, but neither reads the other
    g = mt.viz.graph(branches[0] * branches[1])
    assert g.folds == [] and len(_ops(g.source)) == 5


def test_a_chain_of_10000_ops_needs_no_recursion():
    x = mt.randn(3, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    assert sys.getrecursionlimit() < 10_000
    assert len(_ops(mt.viz.graph(y, fold=False).source)) == 10_000
    folded = mt.viz.graph(y, {"x": x})
    assert [(f.repeats, f.ops) for f in folded.folds] == [(10_000, 1)] and "×10000" in folded.source


def test_a_freed_graph_and_a_leaf():
    _, loss = _small_graph()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        mt.viz.graph(loss)
    leaf = mt.randn(2, 3, requires_grad=True)
    g = mt.viz.graph(leaf, {"w": leaf})
    assert [(n.kind, n.name, n.root) for n in g.nodes] == [("leaf", "w", True)]
    with pytest.raises(TypeError, match="Tensor"):
        mt.viz.graph(np.ones(3))


def test_the_example_in_docs_autograd_md_gives_the_numbers_it_quotes():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "autograd.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Drawing the graph"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1).replace('g.render("graph.svg")', "")
    scope: dict[str, object] = {}
    exec(compile(code, "docs/autograd.md", "exec"), scope)
    g = scope["g"]
    assert [(n.name, n.saved_bytes) for n in g.nodes if n.kind == "op"] == [
        ("Linear", 704), ("GELU", 512), ("Mul", 512), ("Mean", 0)]
    assert "held for backward: 1.4 KiB (1,472 B)" in g.source
    assert "(1,472 B)" in section and "128 + 512 + 64 = 704 B" in section
