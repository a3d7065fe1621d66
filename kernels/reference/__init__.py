"""The NumPy reference tier: the readable math every faster kernel is tested against.

Each function takes and returns arrays of any array module (NumPy or CuPy: `xp` is read off the input),
works on the last axis where an axis is involved, and computes in the input's dtype unless a comment
says why it does not.
"""
