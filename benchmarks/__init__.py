"""plait's benchmarks: micro benchmarks and the data-path harness (``python -m benchmarks.run``)."""
