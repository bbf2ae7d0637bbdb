"""Tests of the benchmark tooling under bench/ (its load generators), not of its figures."""
