"""VCPU runstates: `RUNSTATE_*` of Xen's public `vcpu.h` (struct vcpu_runstate_info)."""

from __future__ import annotations

from typing import Final


class Runstate:
    """VCPU runstates, numbered as Xen's public header numbers them.

    Plain literal ints, not an enum: the scheduler compares and records them on every
    switch, and mypyc compiles a literal `Final` to a constant (an IntEnum member is an
    object whose every comparison and `int()` is a call).
    """

    RUNNING: Final = 0  # RUNSTATE_running: currently scheduled on a physical CPU
    RUNNABLE: Final = 1  # RUNSTATE_runnable: runnable, but not scheduled
    BLOCKED: Final = 2  # RUNSTATE_blocked: blocked (waiting for an event), not runnable
    OFFLINE: Final = 3  # RUNSTATE_offline: not runnable nor blocked (down, or paused)


#: Lower-case names by code, as traces and analysis show them.
RUNSTATE_NAMES: Final = ("running", "runnable", "blocked", "offline")

__all__ = ["RUNSTATE_NAMES", "Runstate"]
