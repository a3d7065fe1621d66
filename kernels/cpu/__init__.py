"""Numba CPU kernels (the `numba` backend). Each module mirrors a file in `reference/` with the same
function names and signatures. This tier is optional: without Numba the library runs on `reference/`."""
