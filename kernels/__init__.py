"""minitransformer's kernels: plain-array functions with no knowledge of Tensor, graphs or modules.

Three tiers with the same names and signatures (`<op>_forward`, `<op>_backward`):
  reference/  readable NumPy math, written for any array module (NumPy or CuPy); always available.
  cpu/        Numba JIT kernels (optional: needs the `numba` extra).
  cuda/       CUDA C sources launched through CuPy (optional: needs the `cuda` extra and a GPU).

Only `minitransformer.backend` imports these; a student can also import one file and call it directly.
Installed, this folder is the package `minitransformer.kernels`.
"""
