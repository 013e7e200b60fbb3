"""The hub: the signed HTTP API, the console, the CLI and the benchmarks."""
