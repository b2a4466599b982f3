"""Trace records: the schema (defined once), the recorder, and the generated documentation."""

from framework.trace.recorder import TRACE_FILE, Emit, Recorder
from framework.trace.schema import FIELD_COLUMNS, KINDS, K, Kind, Runstate

__all__ = [
    "FIELD_COLUMNS",
    "KINDS",
    "TRACE_FILE",
    "Emit",
    "K",
    "Kind",
    "Recorder",
    "Runstate",
]
