"""CUDA C kernels (`*.cu` in this folder) launched through CuPy: the `cuda` tier of the backend table.

Each `<op>.py` here offers the reference's kernel names and signatures for CuPy float32 arrays (other
dtypes go to the reference, which runs on CuPy as it is) and keeps every version of its `.cu` file callable
by name for the tests and benchmarks/gpu.py. `_loader.module(name)` compiles a `.cu` file once per process
with CuPy's RawModule (NVRTC) and CuPy caches the binary on disk.

Nothing here is imported unless CuPy and a GPU are present; tests/test_cuda_compile.py compiles every
`.cu` file with nvcc for sm_80 and sm_90 on any machine that has nvcc.
"""

from collections.abc import Callable
from typing import Any

from .adam import adam_update
from .attention import attention_backward, attention_forward
from .crossentropy import cross_entropy_backward, cross_entropy_forward
from .gelu import bias_gelu_backward, bias_gelu_forward, gelu_backward, gelu_forward
from .layernorm import layernorm_backward, layernorm_forward
from .softmax import softmax_backward, softmax_forward

# The backend table of this tier (backend.py reads it; importing it needs no CuPy, launching does): the kernels
# with CUDA C sources here. The rest (log-softmax, decode attention, quantization, CTC) run the reference on
# CuPy arrays, as do dtypes other than float32 (each wrapper hands those to the reference itself).
KERNELS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (
    softmax_forward, softmax_backward,
    gelu_forward, gelu_backward, bias_gelu_forward, bias_gelu_backward,
    layernorm_forward, layernorm_backward,
    cross_entropy_forward, cross_entropy_backward,
    attention_forward, attention_backward,
    adam_update,
)}
