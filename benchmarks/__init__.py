"""Benchmarks of remix_data (run as scripts: ``python -m benchmarks.throughput``)."""
