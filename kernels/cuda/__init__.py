"""CUDA C kernels (`*.cu`) launched through CuPy (the `cupy` backend). Optional: needs CuPy and a GPU."""
