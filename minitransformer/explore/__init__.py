"""`minitransformer explore --out DIR`: a page, served by the project itself, that shows what a trained
language model or translation model does inside: its tokens, the next-token distribution (with temperature,
top-k and top-p applied live), the attention of every layer and head, the logit lens, and generation one
token at a time. analysis.py computes it from a model (forward hooks, no HTTP); api.py is the JSON API;
server.py serves it with the page in static/. docs/explore.md shows each view and how to read it.
"""

from .analysis import analyze_lm, analyze_translation, step_lm, step_translation
from .api import Error, Explorer, LanguageModel, Translation, open_checkpoint
from .server import Server, make_server
