"""`minitransformer explore --out DIR`: a page, served by the project itself, that shows what a trained
language model or translation model does inside: its tokens, the next-token distribution (with temperature,
top-k and top-p applied live), the attention of every layer and head, the logit lens, and generation one
token at a time. analysis.py computes it from a model (forward hooks, no HTTP); api.py is the JSON API;
server.py serves it with the page in static/. docs/explore.md shows each view and how to read it.
graph.py draws the autograd graph that produced a tensor (`mt.viz.graph`, docs/autograd.md).

`import minitransformer` loads graph.py only; the explorer's modules load on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"analyze_lm": "analysis", "analyze_translation": "analysis", "step_lm": "analysis",
         "step_translation": "analysis", "Error": "api", "Explorer": "api", "LanguageModel": "api",
         "Translation": "api", "open_checkpoint": "api", "Server": "server", "make_server": "server"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
