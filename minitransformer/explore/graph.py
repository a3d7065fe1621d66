"""Pictures of the autograd graph: `mt.viz.graph(loss)` returns Graphviz DOT text of the graph that
backward will walk, in the spirit of torchviz's `make_dot`.

Each op node (a `Function`) shows its class name, the output's shape and dtype, the bytes it holds for
backward and which kernel tier runs it; leaves that require grad are boxes named from `params`; the root
is highlighted; edges point from inputs to outputs (the direction data flows in forward).

Bytes held for backward, per node: the arrays stored on the node (attributes, also inside tuples, lists
and dicts) plus the data of the inputs its `saves_inputs` names (all inputs when None). Each memory
buffer counts once, at its full size: views of one base (qkv and its q, k, v views) count as that base,
because a view keeps its whole base alive. Parameters count too. The graph's label gives the total over
all nodes, again each buffer once.

The tier is what `backend.tier_of` says under the backend setting in force when the graph is drawn (the
one backward will use), not a record of what ran in forward.

Folding: the ops are laid out in a topological order that keeps each block together, and the graph is
cut at the ops every path from earlier ops to later ones passes through (the residual stream between
Transformer blocks: no edge jumps over that point; a tensor that several ops of one kind read, like a
decoder's memory, does not count as jumping). Between cuts, ranges of ops are compared by each op's class,
output shape and dtype, small settings and wiring; a run of consecutive identical ranges in which each
copy reads the one before it only through its last op is drawn once, in a cluster labelled "×n".
Different ops never fold, and a graph without such a run is drawn as with `fold=False`.

What this file does not do: run Graphviz unless asked (`render`, `_repr_svg_`), import the `graphviz`
package, or record anything; it only reads `Tensor._ctx` and each node's `inputs`.
"""

from __future__ import annotations

import functools
import heapq
import re
import shutil
import subprocess
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend
from ..autograd import Function, _topological_order
from ..tensor import Tensor

_NOT_SAVED = frozenset({"inputs", "versions", "out_version"})  # bookkeeping every node has
_FORMATS = ("svg", "png", "pdf")
_MAX_TRIES = 1024  # copy lengths tried at each start
_BASE, _MOD = 1_000_003, (1 << 61) - 1  # the prefix hash of op sequences


@dataclass
class Node:
    """One drawn box: an op (`kind == "op"`, a Function node) or a leaf (`kind == "leaf"`)."""

    id: str
    kind: str
    name: str  # the op's class name, or the leaf's name from `params` ("" when unnamed)
    shape: tuple[int, ...]
    dtype: str
    saved_bytes: int = 0  # ops: bytes held for backward (module docstring)
    tier: str = ""  # ops: "kernels: numba", "numpy (plain array code)", ...
    cluster: int = -1  # index into Graph.folds when drawn inside a folded run
    root: bool = False


@dataclass
class Fold:
    """A run of `repeats` identical copies drawn once; each copy has `ops` op nodes."""

    repeats: int
    ops: int
    saved_bytes: int  # held by one copy


class Graph:
    """The DOT text of one autograd graph (`str(g)`, `g.source`) and the nodes and edges it draws."""

    def __init__(self, source: str, nodes: list[Node], edges: list[tuple[str, str]], folds: list[Fold],
                 total_ops: int) -> None:
        self.source = source
        self.nodes = nodes
        self.edges = edges
        self.folds = folds
        self.total_ops = total_ops  # op nodes in the graph, drawn or folded away

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        drawn = sum(n.kind == "op" for n in self.nodes)
        return f"<Graph: {self.total_ops} ops ({drawn} drawn), {len(self.folds)} folded runs>"

    def pipe(self, format: str = "svg") -> bytes:
        """The picture as bytes, made by Graphviz's `dot` program."""
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError("drawing the graph needs Graphviz's `dot` program, which is not on PATH: install "
                               "Graphviz (apt-get install graphviz, brew install graphviz or conda install "
                               "graphviz), or use the DOT text, which needs nothing: g.source, g.save('g.dot')")
        done = subprocess.run([dot, f"-T{format}"], input=self.source.encode("utf-8"), capture_output=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"dot -T{format} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    def render(self, path: str | Path, format: str | None = None) -> Path:
        """Write the picture to `path`: SVG, PNG or PDF, from `format` or else the file's suffix."""
        path = Path(path)
        fmt = (format or path.suffix.lstrip(".")).lower()
        if fmt not in _FORMATS:
            raise ValueError(f"render: cannot tell the format of {path.name!r}; give format= one of "
                             f"{', '.join(_FORMATS)} (or save() for the DOT text)")
        path.write_bytes(self.pipe(fmt))
        return path

    def save(self, path: str | Path) -> Path:
        """Write the DOT text to `path` (conventionally `.dot`); needs no Graphviz."""
        path = Path(path)
        path.write_text(self.source, encoding="utf-8")
        return path

    def _repr_svg_(self) -> str | None:
        """Jupyter shows the picture when `dot` is installed (and the DOT text's repr otherwise)."""
        if shutil.which("dot") is None:
            return None
        return self.pipe("svg").decode("utf-8")


def graph(t: Tensor, params: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None,
          fold: bool = True, show_saved: bool = True) -> Graph:
    """The graph that produced `t`, as DOT text. `params` names leaves (`dict(model.named_parameters())`);
    `fold` draws repeated blocks once with "×n"; `show_saved` adds the bytes held for backward to labels."""
    if not isinstance(t, Tensor):
        raise TypeError(f"graph: expected a Tensor, got {type(t).__name__}")
    names = {id(p): name for name, p in (params.items() if isinstance(params, Mapping) else params or ())}
    try:
        order = _topological_order(t)
    except RuntimeError as e:
        raise RuntimeError("graph: this graph was freed by backward; draw it before calling backward, or call "
                           "backward(retain_graph=True)") from e
    ops = _block_order([u for u in order if u._ctx is not None])
    pos = {id(u): i for i, u in enumerate(ops)}
    runs = _find_runs(ops, pos) if fold else []
    return _draw(t, ops, pos, runs, names, show_saved)


# ------------------------------------------------------------------------------------------------------
# cutting and folding


def _block_order(ops: list[Tensor]) -> list[Tensor]:
    """The ops (given in a topological order, root last) in another topological order that keeps each
    block's ops together, so that cuts show. Walking back from the root, an op is taken once every op
    that reads it is; of the ops ready, the one with the shortest path from the graph's sources goes
    first, which puts a short side branch (a query projection) right before the op that reads it and a
    long one (the encoder, for every decoder layer) before everything that needs it."""
    if not ops:
        return ops
    depth: dict[int, int] = {}
    readers: dict[int, int] = {}
    for u in ops:
        own = [depth[id(inp)] for inp in u._ctx.inputs if id(inp) in depth]
        depth[id(u)] = 1 + max(own, default=-1)
        readers[id(u)] = 0
        for inp in u._ctx.inputs:
            if id(inp) in readers:
                readers[id(inp)] += 1
    backwards: list[Tensor] = []
    ready = [(depth[id(ops[-1])], 0, ops[-1])]
    count = 0
    while ready:
        u = heapq.heappop(ready)[2]
        backwards.append(u)
        for inp in u._ctx.inputs:
            if id(inp) in readers:
                readers[id(inp)] -= 1
                if readers[id(inp)] == 0:
                    count -= 1  # ties: the op freed last goes first
                    heapq.heappush(ready, (depth[id(inp)], count, inp))
    return backwards[::-1]


def _cuts(ops: list[Tensor], pos: dict[int, int], key: list[int]) -> list[bool]:
    """cut[c]: every path from the ops before c to the ops after c passes through ops[c] (the residual
    stream between blocks), so no edge jumps over c; found with a difference array in O(edges). Edges from
    a shared input do not count: a tensor that two ops of the same kind and shape read, like the encoder's
    output (memory) that every decoder layer projects to keys and values."""
    n = len(ops)
    readers: dict[int, set[int]] = {}
    shared: set[int] = set()
    for j, u in enumerate(ops):
        for inp in u._ctx.inputs:
            seen = readers.setdefault(id(inp), set())
            if key[j] in seen:
                shared.add(id(inp))
            seen.add(key[j])
    cover = [0] * (n + 1)  # cover[c] > 0 when some edge i -> j has i < c < j
    for j, u in enumerate(ops):
        for inp in u._ctx.inputs:
            i = pos.get(id(inp))
            if i is not None and j - i > 1 and id(inp) not in shared:
                cover[i + 1] += 1
                cover[j] -= 1
    cut, running = [], 0
    for c in range(n):
        running += cover[c]
        cut.append(running == 0)
    return cut


def _op_key(u: Tensor) -> tuple[Any, ...]:
    """An op's kind, output and small settings (ints, floats, strings, shapes), which must match to fold."""
    def plain(v: Any) -> bool:
        if isinstance(v, tuple):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str, np.generic, np.dtype))

    ctx = u._ctx
    cls = type(ctx)
    settings = tuple((k, v) for k, v in sorted(vars(ctx).items()) if k not in _NOT_SAVED and plain(v))
    return cls.__module__, cls.__qualname__, u.data.shape, u.data.dtype, settings


def _wiring(ops: list[Tensor], pos: dict[int, int], lo: int, hi: int) -> tuple[Any, ...]:
    """Where each input of ops[lo..hi] comes from: an op earlier in the range (by offset), or the k-th
    distinct tensor from outside it (with its shape and dtype)."""
    outside: dict[int, int] = {}
    refs = []
    for u in ops[lo:hi + 1]:
        for inp in u._ctx.inputs:
            i = pos.get(id(inp))
            if i is not None and i >= lo:
                refs.append(i - lo)
            else:
                refs.append((outside.setdefault(id(inp), len(outside)), inp.data.shape, inp.data.dtype))
    return tuple(refs)


def _find_runs(ops: list[Tensor], pos: dict[int, int]) -> list[tuple[int, int, int]]:
    """Runs of identical consecutive copies, as (first op, ops per copy, copies). A copy starts after a cut
    and ends at one. Greedy, left to right: at each start, the run covering the most ops (ties: the
    shorter copy). Ranges of ops are compared by a prefix hash first, so each try costs O(1)."""
    n = len(ops)
    intern: dict[tuple[Any, ...], int] = {}
    key = [intern.setdefault(_op_key(u), len(intern)) for u in ops]
    cut = _cuts(ops, pos, key)
    is_start = [True] + cut[:-1] + [True]  # is_start[n]: the end of the graph closes a copy too
    prefix, power = [0], [1]
    for k in key:
        prefix.append((prefix[-1] * _BASE + k + 1) % _MOD)
        power.append(power[-1] * _BASE % _MOD)

    def same(a: int, b: int, length: int) -> bool:  # key[a:a+length] == key[b:b+length]
        ha = (prefix[a + length] - prefix[a] * power[length]) % _MOD
        hb = (prefix[b + length] - prefix[b] * power[length]) % _MOD
        return ha == hb and key[a:a + length] == key[b:b + length]

    where: dict[int, list[int]] = {}
    for j, k in enumerate(key):
        where.setdefault(k, []).append(j)
    runs, b = [], 0
    while b < n:
        best = (0, 0, 0)  # (ops covered, ops per copy, copies)
        later = where[key[b]]
        first = bisect_right(later, b)
        for q in later[first:first + _MAX_TRIES]:
            L = q - b
            if 2 * L > n - b:
                break
            if not (is_start[q] and is_start[q + L] and same(b, q, L)):
                continue
            copies = 2
            while b + (copies + 1) * L <= n and is_start[b + (copies + 1) * L] and same(b, b + copies * L, L):
                copies += 1
            copies = _valid_copies(ops, pos, b, L, copies)
            if (copies - 1) * L >= 2 and copies * L > best[0]:  # folding one op away draws nothing shorter
                best = (copies * L, L, copies)
                if b + copies * L == n:
                    break
        if best[0]:
            runs.append((b, best[1], best[2]))
            b += best[0]
        else:
            b += 1
            while b < n and not is_start[b]:
                b += 1
    return runs


def _valid_copies(ops: list[Tensor], pos: dict[int, int], first: int, length: int, copies: int) -> int:
    """How many of the `copies` one drawn copy stands for honestly: the same wiring inside each copy;
    copy j > 0 reads the copy before it, and only through that copy's last op, and reads the same tensors
    from before the run (or leaves) as copy 1 does. Copy 0 may read anything from before the run."""
    def wiring(j: int) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        lo = first + j * length
        kinds = []
        for u in ops[lo:lo + length]:
            for inp in u._ctx.inputs:
                i = pos.get(id(inp))
                if i is None:
                    kinds.append(("leaf",))
                elif i >= lo:
                    kinds.append(("self",))
                elif j > 0 and i == lo - 1:
                    kinds.append(("chain",))
                elif i < first:
                    kinds.append(("before", id(inp)))
                else:
                    kinds.append(("far",))  # further back into the run: no single drawn copy shows that
        return _wiring(ops, pos, lo, lo + length - 1), kinds

    wire0, kinds0 = wiring(0)
    wire1, kinds1 = wiring(1)
    if (wire0 != wire1 or ("far",) in kinds1 or ("chain",) not in kinds1
            or [k == ("self",) for k in kinds0] != [k == ("self",) for k in kinds1]):
        return 1  # not a chain of copies (two side-by-side branches do not fold), or wired differently
    for j in range(2, copies):
        if wiring(j) != (wire1, kinds1):
            return j
    return copies


# ------------------------------------------------------------------------------------------------------
# measuring and drawing


def _is_array(v: Any) -> bool:
    return isinstance(v, np.ndarray) or (type(v).__module__.startswith("cupy") and hasattr(v, "nbytes"))


def _held_buffers(ctx: Function) -> dict[int, int]:
    """id -> nbytes of each memory buffer the node holds for backward (module docstring)."""
    idx = range(len(ctx.inputs)) if ctx.saves_inputs is None else ctx.saves_inputs
    todo = [v for k, v in vars(ctx).items() if k not in _NOT_SAVED] + [ctx.inputs[i].data for i in idx]
    held: dict[int, int] = {}
    seen: set[int] = set()
    while todo:
        v = todo.pop()
        if isinstance(v, Tensor):
            v = v.data
        if _is_array(v):
            while _is_array(getattr(v, "base", None)):  # a view keeps its base alive
                v = v.base
            held[id(v)] = int(v.nbytes)
        elif isinstance(v, (tuple, list, dict)) and id(v) not in seen:
            seen.add(id(v))
            todo.extend(v.values() if isinstance(v, dict) else v)
    return held


def _tier(u: Tensor) -> str:
    """Which tier runs the node's kernels under the current backend setting."""
    kernels = type(u._ctx).kernels
    if not kernels:
        return ("cupy" if type(u.data).__module__.startswith("cupy") else "numpy") + " (plain array code)"
    return "kernels: " + "/".join(backend.tiers_of(kernels, u.data))


def _size(n: int) -> str:
    """512 B, or 1.5 KiB (1,536 B): readable, and exact."""
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value >= 1024:
            value, unit = value / 1024, bigger
    return f"{value:.1f} {unit} ({n:,} B)"


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: np.dtype) -> str:
    return str(dtype)  # NumPy's str(dtype) is slow enough to show in a 10,000-op graph


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _merge_names(names: list[str]) -> str:
    """One name for a leaf drawn for several copies: 'h.{0..3}.ln_1.weight' when only a number differs."""
    if len(set(names)) <= 1:
        return names[0] if names else ""
    split = [re.split(r"(\d+)", n) for n in names]
    if len({len(s) for s in split}) != 1:
        return names[0] + ", ..."
    out = []
    for column in zip(*split, strict=True):
        if len(set(column)) == 1:
            out.append(column[0])
        elif all(c.isdigit() for c in column):
            nums = [int(c) for c in column]
            out.append(f"{{{nums[0]}..{nums[-1]}}}" if nums == list(range(nums[0], nums[0] + len(nums))) else "*")
        else:
            return names[0] + ", ..."
    return "".join(out)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _draw(root: Tensor, ops: list[Tensor], pos: dict[int, int], runs: list[tuple[int, int, int]],
          names: dict[int, str], show_saved: bool) -> Graph:
    held = [_held_buffers(u._ctx) for u in ops]
    total: dict[int, int] = {}
    for h in held:
        total.update(h)
    # folded copies: each op of copy j > 0 is drawn as its counterpart in copy 0
    rep: dict[int, int] = {}  # position -> position of the drawn op that stands for it
    cluster_of: dict[int, int] = {}  # position in a drawn copy -> index of its fold
    folds: list[Fold] = []
    for f, (first, length, copies) in enumerate(runs):
        one: dict[int, int] = {}
        for i in range(first, first + length):
            cluster_of[i] = f
            one.update(held[i])
        for i in range(first, first + copies * length):
            rep[i] = first + (i - first) % length
        folds.append(Fold(copies, length, sum(one.values())))

    nodes: list[Node] = []
    node_id: dict[int, str] = {}  # id(op's tensor) -> node id
    edges: list[tuple[str, str]] = []

    by_leaf: dict[int, Node] = {}  # id(leaf) -> its box

    def leaf_node(leaf: Tensor, name: str, cluster: int) -> str:
        node = by_leaf.get(id(leaf))
        if node is None:
            node = Node(f"leaf{len(nodes)}", "leaf", name, tuple(leaf.shape), _dtype_name(leaf.dtype),
                        cluster=cluster, root=leaf is root)
            by_leaf[id(leaf)] = node
            nodes.append(node)
        elif node.cluster != cluster:  # read from outside its copy too
            node.cluster = -1
        return node.id

    if not ops:
        leaf_node(root, names.get(id(root), ""), -1)
    root_at = rep.get(len(ops) - 1, len(ops) - 1)  # the root is the last op (or the copy drawn for it)
    for j, u in enumerate(ops):
        if rep.get(j, j) != j:
            continue
        ctx = u._ctx
        node_id[id(u)] = nid = f"op{len(nodes)}"
        f = cluster_of.get(j, -1)
        nodes.append(Node(nid, "op", type(ctx).__name__, tuple(u.shape), _dtype_name(u.dtype), sum(held[j].values()),
                          _tier(u), f, root=j == root_at))
        for q, inp in enumerate(ctx.inputs):
            i = pos.get(id(inp))
            if i is not None:
                src = node_id[id(ops[rep.get(i, i)])]
            elif inp.requires_grad:
                name, cluster = names.get(id(inp), ""), -1
                if f >= 0:  # a leaf in every copy (the copy's own weights): one box, one merged name
                    first, length, copies = runs[f]
                    same_slot = [ops[j + c * length]._ctx.inputs[q] for c in range(copies)]
                    if all(t._ctx is None for t in same_slot):
                        found = [names.get(id(t), "") for t in same_slot]
                        name, cluster = (_merge_names(found) if all(found) else name), f
                src = leaf_node(inp, name, cluster)
            else:
                continue  # constants (tensors that do not require grad) are not drawn
            edges.append((src, nid))
    n_leaves = sum(n.kind == "leaf" for n in nodes)
    title = (f"{type(root._ctx).__name__ if root._ctx else 'leaf'}: {_count(len(ops), 'op')}, "
             f"{_count(n_leaves, 'leaf', 'leaves')} drawn")
    if show_saved:
        title += f"; held for backward: {_size(sum(total.values()))}"
    return Graph(_dot(nodes, edges, folds, title, show_saved), nodes, edges, folds, len(ops))


def _label(n: Node, show_saved: bool) -> str:
    shape = f"{n.shape} {n.dtype}"
    if n.kind == "leaf":
        return f"{n.name}\n{shape}" if n.name else shape
    saved = f"\nsaved {_size(n.saved_bytes)}" if show_saved else ""
    return f"{n.name}\n{shape}{saved}\n{n.tier}"


def _dot(nodes: list[Node], edges: list[tuple[str, str]], folds: list[Fold], title: str, show_saved: bool) -> str:
    lines = [
        "digraph autograd {",
        f'  graph [label={_quote(title)}, labelloc=t, fontname="Helvetica", fontsize=12];',
        '  node [shape=box, style="rounded,filled", fillcolor="#e8e8e8", fontname="Helvetica", fontsize=10];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]

    def decl(n: Node, indent: str) -> str:
        attrs = {"label": _quote(_label(n, show_saved))}
        if n.kind == "leaf":  # parameters and inputs: square boxes, blue as in torchviz
            attrs.update(style="filled", fillcolor='"#cfe3f7"')
        if n.root:
            attrs.update(fillcolor='"#c9e7a8"', penwidth="2")
        return f"{indent}{n.id} [{', '.join(f'{k}={v}' for k, v in attrs.items())}];"

    lines += [decl(n, "  ") for n in nodes if n.cluster < 0]
    for f, fold in enumerate(folds):
        each = f"; {_size(fold.saved_bytes)} held for backward each" if show_saved else ""
        label = f"×{fold.repeats}  ({_count(fold.ops, 'op')} each, one copy drawn{each})"
        lines.append(f"  subgraph cluster_fold{f} {{")
        lines.append(f'    label={_quote(label)}; style="dashed,rounded"; color="#777777"; fontsize=11;')
        lines += [decl(n, "    ") for n in nodes if n.cluster == f]
        lines.append("  }")
    lines += [f"  {a} -> {b};" for a, b in edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
