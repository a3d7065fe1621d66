"""The folders are the layers (docs/architecture.md): every import in the package, those inside functions
included, goes to the importer's own layer or one below it; and imports sit at the top of a file unless a
comment on the line says why (an optional dependency, or a heavy module loaded on first use)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "minitransformer"

# lowest first; a module's layer is the first entry whose prefix names it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("kernels", ("kernels",)),
    ("core", ("tensor", "autograd", "creation", "dtypes", "random", "xp", "backend")),
    ("ops", ("ops", "methods")),
    ("library", ("nn", "optim", "utils", "text", "io", "amp", "backends", "compiler", "cuda", "distributed",
                 "profiler", "serialization", "porting")),
    ("training", ("training",)),
    ("tasks", ("tasks",)),
    ("applications", ("deploy", "explore")),
    ("command line", ("__main__", "__init__")),
]


def layer_of(module: str) -> int:
    """The layer index of `minitransformer.<module>` (dotted, without the package name)."""
    head = module.split(".")[0]
    for i, (_, names) in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"minitransformer.{module} belongs to no layer: add it to LAYERS and docs/architecture.md")


def modules() -> list[tuple[Path, str]]:
    out = []
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(PKG).with_suffix("").parts
        out.append((f, ".".join(parts)))
    return out


def imported(f: Path, module: str) -> list[tuple[int, str, bool]]:
    """(line, imported module under the package, at the top level?) for every import of the package."""
    tree = ast.parse(f.read_text())
    top = {id(n) for n in tree.body}
    package = module.split(".")[:-1]  # an __init__'s module ends in "__init__", so both drop the last part
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("minitransformer"):
                target = node.module[len("minitransformer"):].lstrip(".")
            else:
                continue
            names = [target + "." + a.name if target else a.name for a in node.names]
            for name in names or [target]:
                out.append((node.lineno, name if (PKG / Path(*name.split("."))).exists()
                            or (PKG / Path(*name.split("."))).with_suffix(".py").exists() else target,
                            id(node) in top))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("minitransformer."):
                    out.append((node.lineno, a.name[len("minitransformer."):], id(node) in top))
    return [(line, name, at_top) for line, name, at_top in out if name]


def test_every_import_goes_down_or_sideways():
    wrong = []
    for f, module in modules():
        if module in ("__main__", "__init__"):
            continue
        mine = layer_of(module)
        for line, name, _ in imported(f, module):
            if layer_of(name) > mine:
                wrong.append(f"minitransformer/{f.relative_to(PKG)}:{line} ({LAYERS[mine][0]}) imports "
                             f"minitransformer.{name} ({LAYERS[layer_of(name)][0]})")
    assert not wrong, "imports that go up a layer:\n" + "\n".join(wrong)


def test_imports_sit_at_the_top_unless_a_comment_says_why():
    late = []
    for f, _ in modules():
        lines = f.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                    continue
                text = " ".join(lines[node.lineno - 1:node.end_lineno])
                above = lines[node.lineno - 2] if node.lineno > 1 else ""
                comments = [c.split("#", 1)[1] for c in (text, above)
                            if "#" in c and (c is text or c.strip().startswith("#"))]
                # a reason in words: what is left once a linter's directive and its codes are taken out
                reasons = [re.sub(r"^\s*noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?", "", c).strip() for c in comments]
                if not any(reasons):
                    late.append(f"minitransformer/{f.relative_to(PKG)}:{node.lineno}: {text.strip()}")
    assert not late, ("imports inside functions without a comment saying why (an optional dependency, a heavy "
                      "module loaded on first use, ...):\n" + "\n".join(late))


@pytest.mark.parametrize("name", ["tokenizers", "viz"])
def test_moved_public_modules_keep_their_import_paths(name):
    import importlib

    import minitransformer as mt

    assert importlib.import_module(f"minitransformer.{name}") is getattr(mt, name)
