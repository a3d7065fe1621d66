"""Running PyTorch code on minitransformer: the import lines are the only change, and this rewrites them.

`rewrite_imports(source)` turns every import of `torch` in a Python source into the same import of
`minitransformer` under the same local name:

    import torch                              ->  import minitransformer as torch
    import torch.nn as nn                     ->  import minitransformer.nn as nn
    from torch.nn import functional as F      ->  from minitransformer.nn import functional as F
    from torch.utils.data import DataLoader   ->  from minitransformer.utils.data import DataLoader

Only import statements change (found with Python's own parser, so strings and comments that mention
torch are left alone); everything else, line numbers included, stays as it was. `minitransformer port`
applies it to files (docs/pytorch.md).
"""

from __future__ import annotations

import ast
import importlib.abc
import sys
from typing import Any

LIBRARY = "minitransformer"


def _module(name: str) -> str:
    return LIBRARY + name[len("torch"):]


def _is_torch(name: str | None) -> bool:
    return name is not None and (name == "torch" or name.startswith("torch."))


def _import_text(node: ast.Import) -> str:
    parts = []
    for alias in node.names:
        if not _is_torch(alias.name):
            parts.append(alias.name + (f" as {alias.asname}" if alias.asname else ""))
        elif alias.asname:
            parts.append(f"{_module(alias.name)} as {alias.asname}")
        elif alias.name == "torch":
            parts.append(f"{LIBRARY} as torch")
        else:
            # `import torch.nn` binds the name `torch`: bind the library there, and import the submodule too
            parts.append(f"{LIBRARY} as torch, {_module(alias.name)}")
    return "import " + ", ".join(parts)


def _from_text(node: ast.ImportFrom) -> str:
    names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
    return f"from {_module(node.module or 'torch')} import {names}"


def rewrite_imports(source: str) -> str:
    """`source` with its torch imports pointing at minitransformer (see the module doc)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_torch(a.name) for a in node.names):
            text = _import_text(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_torch(node.module):
            text = _from_text(node)
        else:
            continue
        edits.append((node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or 0, text))
    # replace from the end so earlier positions stay valid; a multi-line import keeps its line count
    for start, col, end, end_col, text in sorted(edits, reverse=True):
        first, last = lines[start - 1], lines[end - 1]
        lines[start - 1:end] = [first[:col] + text + last[end_col:]] + ["\n"] * (end - start)
    return "".join(lines)


# ---- what a ported script meets that is not here: one clear error instead of a bare AttributeError --------------
DOCS = "docs/pytorch.md lists what is supported"


def unsupported_attribute(module: str) -> Any:
    """A module-level `__getattr__` (PEP 562) for `module` ("minitransformer.nn", ...): an attribute that is
    missing raises an AttributeError naming PyTorch's feature, so `hasattr` still answers False."""
    torch_name = "torch" + module[len(LIBRARY):]

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        raise AttributeError(f"{torch_name}.{name} is not supported by minitransformer (module {module!r} has no "
                             f"attribute {name!r}; {DOCS})")

    return __getattr__


class UnsupportedModuleFinder(importlib.abc.MetaPathFinder):
    """Last on `sys.meta_path`: asked only after every real finder failed, it turns a missing
    `minitransformer.x.y` into a ModuleNotFoundError that names `torch.x.y` as not supported."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.startswith(LIBRARY + ".") and not fullname.startswith(LIBRARY + ".kernels"):
            torch_name = "torch" + fullname[len(LIBRARY):]
            raise ModuleNotFoundError(f"{torch_name} is not supported by minitransformer (no module named "
                                      f"{fullname!r}; {DOCS})", name=fullname)
        return None


def install_finder() -> None:
    if not any(isinstance(f, UnsupportedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(UnsupportedModuleFinder())
