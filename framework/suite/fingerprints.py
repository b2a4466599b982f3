"""Fingerprints (as INET's fingerprint tests have them): a hash of chosen trace records,
written in the scenario, rewritten on request, and explained when it no longer matches.

`--update-fingerprints` replaces the `equals:` value of each fingerprint check in the
scenario file in place (only that scalar's characters: comments and layout stay) and
keeps the records it covers beside the file, in `fingerprints/<scenario>.<n>.parquet`, so
a later mismatch can name the first record where the two runs differ.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from analysis.expectations import fingerprint_rows
from analysis.run import RUN_FILE, TRACE_FILE, Run, read_trace

__all__ = ["REFERENCE_DIR", "first_difference", "reference_path", "update_scenario"]

#: Where reference records live, beside the scenario file.
REFERENCE_DIR: Final = "fingerprints"


def reference_path(scenario: Path, index: int) -> Path:
    """The reference records of the scenario's `expect[index]` fingerprint check."""
    return scenario.parent / REFERENCE_DIR / f"{scenario.stem}.{index}.parquet"


def _equals_span(text: str, index: int) -> tuple[int, int]:
    """Character span of the `equals` scalar of `expect[index]` in the scenario text."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)
    for key, value in root.value:
        if key.value == "expect" and isinstance(value, yaml.SequenceNode):
            check = value.value[index]
            assert isinstance(check, yaml.MappingNode)
            for k, v in check.value:
                if k.value == "equals":
                    return v.start_mark.index, v.end_mark.index
    raise ValueError(f"expect[{index}] has no equals")


def update_scenario(
    scenario: Path, checks: list[Mapping[str, Any]], files: Mapping[str, bytes]
) -> list[str]:
    """Write each fingerprint check's measured hash into the scenario file, and its records
    as the reference; returns the names of the checks that changed."""
    text = scenario.read_text(encoding="utf-8")
    trace = read_trace(io.BytesIO(files[TRACE_FILE]))
    meta = json.loads(files[RUN_FILE].decode("utf-8"))
    run = Run(trace=trace, meta=meta)
    changed = []
    # Later checks first, so earlier spans stay where they are.
    for index, check in reversed(list(enumerate(meta.get("expect", [])))):
        if check["metric"] != "fingerprint":
            continue
        measured = str(checks[index]["measured"])
        start, end = _equals_span(text, index)
        if text[start:end].strip("'\"") != measured:
            text = f"{text[:start]}'{measured}'{text[end:]}"
            changed.append(check["name"])
        target = reference_path(scenario, index)
        target.parent.mkdir(parents=True, exist_ok=True)
        fingerprint_rows(run, check["selectors"]).to_parquet(target, index=False)
    scenario.write_text(text, encoding="utf-8")
    return sorted(changed)


def first_difference(reference: Path, run: Run, selectors: Mapping[str, Any]) -> str:
    """Where a run's fingerprinted records first differ from the reference records."""
    old = pd.read_parquet(reference)
    new = fingerprint_rows(run, selectors)
    for i in range(min(len(old), len(new))):
        a = {k: _cell(v) for k, v in old.iloc[i].items()}
        b = {k: _cell(v) for k, v in new.iloc[i].items()}
        if a != b:
            fields = ", ".join(f"{k}: {a.get(k)} -> {b[k]}" for k in b if a.get(k) != b[k])
            return f"record {i} (t_ns {a.get('t_ns')}, {a.get('kind')}) differs: {fields}"
    if len(old) != len(new):
        return f"the reference has {len(old)} records, this run {len(new)}"
    return "the records are equal (the hash function changed?)"


def _cell(value: object) -> str | None:
    """A record's cell as text, every kind of missing value as None."""
    return None if pd.isna(value) else str(value)  # type: ignore[arg-type]
