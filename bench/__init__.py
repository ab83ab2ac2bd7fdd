"""Benchmarks of sharpv-kernels (microbenchmarks of the ops, end-to-end runs)."""
