"""Benchmarks beside the kernel: ``python -m benchmarks.suite`` runs every scenario (see suite.py)."""
