"""`vcpu.h`: VCPUOP_* commands and runstates (`RUNSTATE_*`, struct vcpu_runstate_info),
and the 970 port's `vcpu_guest_context` (`arch-powerpc.h`) that setvcpucontext takes."""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout


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

VCPUOP_initialise: Final = 0
VCPUOP_up: Final = 1
VCPUOP_down: Final = 2
VCPUOP_is_up: Final = 3

# vcpu_guest_context (arch-powerpc.h): cpu_user_regs, whose last four u32 are dsisr, cr,
# __pad and entry_vector, then sdr1 at 352 (360 bytes).
VCPU_GUEST_CONTEXT: Final = Layout(
    "vcpu_guest_context",
    360,
    {
        **{f"gpr{i}": (8 * i, 8) for i in range(32)},
        "lr": (256, 8),
        "ctr": (264, 8),
        "srr0": (272, 8),
        "srr1": (280, 8),
        "pc": (288, 8),
        "msr": (296, 8),
        "fpscr": (304, 8),
        "xer": (312, 8),
        "hid4": (320, 8),
        "dar": (328, 8),
        "dsisr": (336, 4),
        "cr": (340, 4),
        "__pad": (344, 4),
        "entry_vector": (348, 4),
        "sdr1": (352, 8),
    },
)

#: xen970's per-VCPU model state beside vcpu_guest_context (XEN_DOMCTL_xen970_get/
#: setvcpustate): the SPRs a 970 context switch saves that the context lacks, the
#: decrementer as its value (it counts down from there at the restore), the set_timer_op
#: deadline (0 = none), the FPRs, and the SLB as slbmte operands (`slb_count` pairs).
#: VMX registers are not modelled (the core model has none).
XEN970_SLB_MAX: Final = 64
XEN970_VCPU_STATE: Final = Layout(
    "xen970_vcpu_state",
    360 + 16 * XEN970_SLB_MAX,
    {
        "srr0": (0, 8),
        "srr1": (8, 8),
        "dar": (16, 8),
        "dsisr": (24, 8),
        **{f"sprg{i}": (32 + 8 * i, 8) for i in range(4)},
        "dec": (64, 8),
        "dabr": (72, 8),
        "timer_deadline": (80, 8),
        "fpscr": (88, 8),
        **{f"fpr{i}": (96 + 8 * i, 8) for i in range(32)},
        "slb_count": (352, 8),
        **{
            f"slb{i}_{word}": (360 + 16 * i + 8 * w, 8)
            for i in range(XEN970_SLB_MAX)
            for w, word in enumerate(("rs", "rb"))
        },
    },
)

__all__ = ["RUNSTATE_NAMES", "XEN970_VCPU_STATE", "Runstate"]
