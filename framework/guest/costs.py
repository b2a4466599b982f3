"""What the guest kernel's own work costs in core cycles: the guest half of the cost model.

Native routines stand for kernel C code (driver state machines, workload generators), so
their time is charged from this table, as Xen's work is charged from `framework.xen.costs`.
The figures are assumptions of the right order for a 1.8 GHz 970, written here so that
results can be re-derived; the kernel's real PPC64 code costs one cycle per instruction.
"""

from __future__ import annotations

from typing import Final

#: Fixed part of one native routine (a driver callback, an event handler, a timer): the
#: C function's prologue, its loads and stores of kernel data and the return.
NATIVE_ROUTINE: Final = 200
#: Bytes a native moves per cycle when it fills, copies or compares a buffer (a memcpy's pace).
BYTES_PER_CYCLE: Final = 8

__all__ = ["BYTES_PER_CYCLE", "NATIVE_ROUTINE"]
