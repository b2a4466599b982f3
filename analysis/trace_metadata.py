"""The trace's own description, as the recorder wrote it: schema version, kinds, value names.

A trace file carries it as JSON under the Parquet metadata key `xen970.trace`; a trace
DataFrame carries the same dict in `df.attrs["xen970.trace"]` (`read_trace` and the
simulator's `Recorder.to_dataframe()` both set it). Analysis reads kinds and the names of
enumerated values (runstates, ...) from there and nowhere else, so it needs nothing of the
simulator; a trace without it is refused with a message naming what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "KNOWN_VERSIONS",
    "METADATA_KEY",
    "TRACE_ATTR",
    "KindLayout",
    "TraceMetadata",
    "TraceMetadataError",
    "trace_metadata",
]

#: Parquet schema metadata key of a trace file.
METADATA_KEY = b"xen970.trace"
#: DataFrame.attrs key of a trace frame.
TRACE_ATTR = "xen970.trace"
#: Trace schema versions this package reads (2 added `value_names`).
KNOWN_VERSIONS = (1, 2)


class TraceMetadataError(ValueError):
    """A trace without its description, or with one this package cannot read."""


@dataclass(frozen=True)
class KindLayout:
    """One record kind as the trace describes it: its argument fields and text meaning."""

    fields: tuple[str, ...]
    text: str | None


@dataclass(frozen=True)
class TraceMetadata:
    """A trace's description: kinds (in id order) and names of enumerated field values."""

    version: int
    kinds: dict[str, KindLayout]
    value_names: dict[str, tuple[str, ...]]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TraceMetadata:
        """Parse the recorder's metadata dict (as stored in the file or in attrs)."""
        version = raw.get("version")
        if version not in KNOWN_VERSIONS:
            known = ", ".join(map(str, KNOWN_VERSIONS))
            raise TraceMetadataError(
                f"trace schema version {version!r} is not one this analysis reads ({known})"
            )
        if "kinds" not in raw or (version >= 2 and "value_names" not in raw):
            missing = "kinds" if "kinds" not in raw else "value_names"
            raise TraceMetadataError(f"trace metadata (version {version}) has no {missing!r}")
        kinds = {
            k["name"]: KindLayout(fields=tuple(k["fields"]), text=k["text"]) for k in raw["kinds"]
        }
        names = {field: tuple(v) for field, v in raw.get("value_names", {}).items()}
        return cls(version=version, kinds=kinds, value_names=names)

    def names_of(self, field: str) -> tuple[str, ...]:
        """Names of `field`'s values by code (e.g. the runstates of `state`)."""
        try:
            return self.value_names[field]
        except KeyError:
            raise TraceMetadataError(
                f"trace metadata names no values of field {field!r} (the recorder was built "
                "without that enumeration)"
            ) from None

    def code_of(self, field: str, name: str) -> int:
        """The code of value `name` of `field` (e.g. 'running' of `state`)."""
        names = self.names_of(field)
        if name not in names:
            raise TraceMetadataError(f"field {field!r} has no value named {name!r}: {names}")
        return names.index(name)


def trace_metadata(df: pd.DataFrame) -> TraceMetadata:
    """The description a trace frame carries in its attrs."""
    raw = df.attrs.get(TRACE_ATTR)
    if not isinstance(raw, Mapping):
        raise TraceMetadataError(
            f"trace frame has no attrs[{TRACE_ATTR!r}] (schema version, kinds, value names): "
            "read it with analysis.load_run or read_trace, or make it with "
            "Recorder.to_dataframe()"
        )
    return TraceMetadata.from_dict(raw)
