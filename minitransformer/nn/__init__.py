"""Neural-network modules with PyTorch's names (`mt.nn.Linear`, `mt.nn.Transformer`, ...), nanoGPT's
GPT, the stateless ops in `functional` (imported as F), initialisers in `init`, and `utils`."""

from . import functional, init, utils
from .attention import MultiheadAttention
from .gpt import GPT, MLP, Block, CausalSelfAttention, GPTConfig
from .layers import (
    GELU,
    Dropout,
    Embedding,
    Identity,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    ReLU,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)
from .module import IncompatibleKeys, Module, ModuleDict, ModuleList, Parameter, Sequential
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "GELU", "GPT", "MLP", "Block", "CausalSelfAttention", "Dropout", "Embedding", "GPTConfig", "Identity",
    "IncompatibleKeys", "LayerNorm", "LearnedPositionalEmbedding", "Linear", "Module", "ModuleDict",
    "ModuleList", "MultiheadAttention", "Parameter", "ReLU", "Sequential", "SinusoidalPositionalEncoding",
    "Transformer", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
    "TransformerEncoderLayer", "functional", "init", "sinusoidal_table", "utils",
]
