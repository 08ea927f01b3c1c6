"""maestro-runtime benchmarks: ``python3 -m benchmarks [--quick]`` (see benchmarks/README.md)."""
