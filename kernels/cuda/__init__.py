"""CUDA C kernels (`*.cu`) launched through CuPy (the `cupy` backend). Not written yet: the table in
`minitransformer/backend.py` offers `numpy` and `numba` only."""
