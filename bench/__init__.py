"""Benchmarks: measured against a baseline in the same run, never pass/fail tests."""
