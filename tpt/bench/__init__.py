"""Benchmarks run by hand (`tpt bench …`), never as timed tests."""
