"""dealflow benchmarks: `python -m bench [--quick] [--only NAME] [--output-dir bench]`."""
