"""Streaming analytics: numba kernels over batch columns, and the detectors that wrap them."""
