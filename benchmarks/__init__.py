"""Speed benchmarks: each prints a ratio measured within one process (machines are noisy).

Run them all with `python -m benchmarks.run_all` (add `--quick` for small sizes).
"""
