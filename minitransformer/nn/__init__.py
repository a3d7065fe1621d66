"""Neural-network modules with PyTorch's names (`mt.nn.Linear`, `mt.nn.Transformer`, ...), nanoGPT's
GPT, the stateless ops in `functional` (imported as F), initialisers in `init`, and `utils`."""

from . import functional, init, parallel, utils
from .attention import MultiheadAttention
from .bert import BertConfig, BertForSequenceClassification, BertModel
from .gpt import GPT, MLP, Block, CausalSelfAttention, GPTConfig
from .layers import (
    GELU,
    CrossEntropyLoss,
    CTCLoss,
    Dropout,
    Embedding,
    Identity,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    LogSoftmax,
    MSELoss,
    NLLLoss,
    ReLU,
    Sigmoid,
    SinusoidalPositionalEncoding,
    Softmax,
    Tanh,
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
    "parallel",
    "BertConfig", "BertForSequenceClassification", "BertModel",
    "GELU", "GPT", "MLP", "Block", "CausalSelfAttention", "CrossEntropyLoss", "CTCLoss", "Dropout", "Embedding",
    "GPTConfig",
    "Identity", "IncompatibleKeys", "LayerNorm", "LearnedPositionalEmbedding", "Linear", "LogSoftmax", "MSELoss",
    "Module", "ModuleDict", "ModuleList", "MultiheadAttention", "NLLLoss", "Parameter", "ReLU", "Sequential",
    "Sigmoid", "SinusoidalPositionalEncoding", "Softmax", "Tanh", "Transformer", "TransformerDecoder",
    "TransformerDecoderLayer", "TransformerEncoder", "TransformerEncoderLayer", "functional", "init",
    "sinusoidal_table", "utils",
]


from ..porting import unsupported_attribute as _unsupported  # noqa: E402

__getattr__ = _unsupported(__name__)  # a missing torch name: one error that says so
