"""Benchmarks: ``python -m bench.bench`` (``make bench``) measures speed and memory in one run -> BENCHMARKS.md."""
