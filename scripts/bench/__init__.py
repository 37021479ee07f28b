"""The saga benchmark: `python -m scripts.bench --help`."""
