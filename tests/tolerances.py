"""The tolerance table, stated once (docs/testing.md repeats it). A check passes when
|actual - expected| <= atol + rtol * |expected| elementwise."""

# float64 forward against an independent float64 formula: only rounding differs
FORWARD_F64 = {"rtol": 1e-7, "atol": 1e-10}
# float64 analytic gradient against central differences with step H (truncation ~H^2, rounding ~eps/H)
GRAD_F64 = {"rtol": 1e-5, "atol": 1e-6}
H = 1e-6
# float32 forward against the float64 formula (ops that reduce over n elements: atol grows with n)
FORWARD_F32 = {"rtol": 1e-5, "atol": 1e-6}
