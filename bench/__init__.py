"""Benchmarks, each runnable as ``python -m bench.NAME`` and printing a table."""
