"""Benchmark suite for chronicle_async (not part of the installed package)."""
