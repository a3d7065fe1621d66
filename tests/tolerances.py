"""The tolerance table, stated once (docs/testing.md repeats it). A check passes when
|actual - expected| <= atol + rtol * |expected| elementwise."""

# float64 forward against an independent float64 formula: only rounding differs
FORWARD_F64 = {"rtol": 1e-7, "atol": 1e-10}
# float64 analytic gradient against central differences with step H (truncation ~H^2, rounding ~eps/H)
GRAD_F64 = {"rtol": 1e-5, "atol": 1e-6}
H = 1e-6
# float32 forward against the float64 formula (ops that reduce over n elements: atol grows with n)
FORWARD_F32 = {"rtol": 1e-5, "atol": 1e-6}


def kernel_tol(dtype, n: int, magnitude: float = 1.0) -> dict:
    """Fast kernel vs the NumPy reference on the same inputs: float32 allows a few ulps of each of the
    n terms of the longest reduction (atol grows with n), float64 only rounding. Inputs of magnitude M
    carry an absolute rounding error of eps*M, which exp() turns into a relative one: rtol grows with M."""
    import numpy as np

    eps = float(np.finfo(dtype).eps)
    if np.dtype(dtype) == np.float32:
        return {"rtol": max(1e-5, 4 * eps * magnitude), "atol": 1e-6 * max(n, 1)}
    return {"rtol": max(1e-10, 4 * eps * magnitude), "atol": 1e-12 * max(n, 1)}
