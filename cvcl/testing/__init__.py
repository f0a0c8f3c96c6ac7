"""Helpers shared by the tests and the benchmarks; no pipeline stage depends on this package."""
