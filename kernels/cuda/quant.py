"""Quantized matmul on the GPU: not a CUDA kernel yet; the reference (dequantize, then cuBLAS) runs on CuPy."""

from ..reference.quant import (  # noqa: F401
    dequantize_forward,
    qlinear_backward,
    qlinear_forward,
    quantize_forward,
)
