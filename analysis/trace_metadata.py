"""The trace's own description, as the recorder wrote it: schema version, kinds, value names.

A trace file carries it as JSON under the Parquet metadata key `xen970.trace`; a trace
DataFrame carries the same dict in `df.attrs["xen970.trace"]` (`read_trace` and the
simulator's `Recorder.to_dataframe()` both set it). Analysis reads kinds and the names of
enumerated values (runstates, ...) from there and nowhere else, so it needs nothing of the
simulator; a trace without it is refused with a message naming what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "DEFAULT_ARGS",
    "KNOWN_VERSIONS",
    "METADATA_KEY",
    "TRACE_ATTR",
    "WIDE_VERSIONS",
    "KindLayout",
    "TraceMetadata",
    "TraceMetadataError",
    "trace_metadata",
]

#: Parquet schema metadata key of a trace file.
METADATA_KEY = b"xen970.trace"
#: DataFrame.attrs key of a trace frame.
TRACE_ATTR = "xen970.trace"
#: Trace schema versions this package reads (2 added `value_names`, 3 the narrow layout:
#: fields in the argument columns `args`, one kind per row group).
KNOWN_VERSIONS = (1, 2, 3)
#: Versions whose files have one column per field name (read into the narrow layout).
WIDE_VERSIONS = (1, 2)
#: The argument columns of the narrow layout when the trace does not name them (versions
#: 1 and 2, converted on reading: at most four fields per kind).
DEFAULT_ARGS = ("a0", "a1", "a2", "a3")


class TraceMetadataError(ValueError):
    """A trace without its description, or with one this package cannot read."""


@dataclass(frozen=True)
class KindLayout:
    """One record kind as the trace describes it: its argument fields and text meaning."""

    fields: tuple[str, ...]
    text: str | None


@dataclass(frozen=True)
class TraceMetadata:
    """A trace's description: kinds (in id order), names of enumerated field values, and the
    argument columns holding each kind's fields in order (field i in `args[i]`)."""

    version: int
    kinds: dict[str, KindLayout]
    value_names: dict[str, tuple[str, ...]]
    args: tuple[str, ...] = DEFAULT_ARGS

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
        args = tuple(raw.get("args", DEFAULT_ARGS))
        widest = max((len(k.fields) for k in kinds.values()), default=0)
        if widest > len(args):
            raise TraceMetadataError(
                f"trace metadata has a kind with {widest} fields but {len(args)} argument columns"
            )
        return cls(version=version, kinds=kinds, value_names=names, args=args)

    def arg_of(self, kind: str, field: str) -> str:
        """The argument column holding `field` of `kind` (e.g. 'a0' for sched.runstate's
        state)."""
        fields = self.kinds[kind].fields
        if field not in fields:
            raise KeyError(f"record kind {kind!r} has no field {field!r}; it has {fields}")
        return self.args[fields.index(field)]

    def fields(self, kinds: Iterable[str] | None = None) -> tuple[str, ...]:
        """Distinct field names of `kinds` (default all), in order of first appearance
        over the kinds in id order: the argument columns of the wide layout."""
        chosen = set(self.kinds if kinds is None else kinds)
        seen: dict[str, None] = {}
        for name, layout in self.kinds.items():
            if name in chosen:
                for field in layout.fields:
                    seen.setdefault(field)
        return tuple(seen)

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
