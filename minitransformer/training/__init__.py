"""Training: the loop every job shares, its options, and the multi-process launcher."""
