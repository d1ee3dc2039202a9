"""Benchmark scripts (`python -m benchmarks.<name>`); results tables go to `benchmarks/results/`."""
