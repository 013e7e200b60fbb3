"""Benchmarks run by ``onecert bench ...``: they print figures and ratios; they never assert timings."""
