"""A sweep's results read back: every run's trace as one DataFrame with the parameters as
columns, and the one-row-per-run summary (`xen970 sweep` writes both)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pandas as pd

from analysis.run import read_trace

__all__ = ["DATASET_DIR", "RUNS_DIR", "SUMMARY_FILE", "load_sweep", "load_sweep_summary"]

RUNS_DIR: Final = "runs"
DATASET_DIR: Final = "dataset"
SUMMARY_FILE: Final = "summary.parquet"


def load_sweep(directory: str | Path, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """Every run's trace records (only `kinds`, if given), one frame, with the sweep's
    parameters, `seed` and `run` as columns; runs in the order of the summary."""
    d = Path(directory)
    summary = load_sweep_summary(d)
    frames = []
    for run in summary["run"]:
        part = d / DATASET_DIR / f"{run}.parquet"
        if not part.is_file():
            continue  # a run that failed before writing a trace
        frames.append(read_trace(part, kinds=kinds))
    if not frames:
        raise FileNotFoundError(f"{d}: the sweep has no traces in {DATASET_DIR}/")
    return pd.concat(frames, ignore_index=True)


def load_sweep_summary(directory: str | Path) -> pd.DataFrame:
    """One row per run: parameters, seed, verdict, outcome, CPU shares and checks."""
    path = Path(directory) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a sweep directory (no {SUMMARY_FILE})")
    return pd.read_parquet(path)
