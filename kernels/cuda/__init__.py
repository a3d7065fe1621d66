"""CUDA C kernels (`*.cu` in this folder) launched through CuPy: the `cuda` tier of the backend table.

Each `<op>.py` here offers the reference's kernel names and signatures for CuPy float32 arrays (other
dtypes go to the reference, which runs on CuPy as it is) and keeps every version of its `.cu` file callable
by name for the tests and benchmarks/gpu.py. `_loader.module(name)` compiles a `.cu` file once per process
with CuPy's RawModule (NVRTC) and CuPy caches the binary on disk.

Nothing here is imported unless CuPy and a GPU are present; tests/test_cuda_compile.py compiles every
`.cu` file with nvcc for sm_80 and sm_90 on any machine that has nvcc.
"""
