"""Hypothesis strategies and assertions shared by tests, notebooks and benchmarks."""
