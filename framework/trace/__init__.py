"""Trace records: the schema (defined once), the recorder, and the generated documentation.

The hot path's kind ids are `framework.trace.ids.K`, generated from the schema; they are
not re-exported here, so that the generator never needs its own output to import.
"""

from framework.trace.recorder import TRACE_FILE, Emit, Recorder
from framework.trace.schema import FIELD_COLUMNS, KINDS, Kind

__all__ = [
    "FIELD_COLUMNS",
    "KINDS",
    "TRACE_FILE",
    "Emit",
    "Kind",
    "Recorder",
]
