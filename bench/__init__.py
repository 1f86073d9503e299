"""Benchmarks: each script measures one thing and prints `name: value` lines last."""
