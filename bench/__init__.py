"""Benchmarks: one command each, run from the project root as ``python -m bench.NAME``; each prints
a table and writes JSON under ``bench/results/``. Real scenes come from ``../shared/data``."""
