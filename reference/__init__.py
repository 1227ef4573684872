"""PyTorch re-implementations of the authors' networks, used by tests and benchmarks to check
parity; not installed."""
