"""What Xen's own work costs in core cycles: the simulator's cost model.

Xen runs as Python, so its time is charged from this table.  The figures are
assumptions of the right order for a 1.8 GHz 970 (a few hundred cycles for a trap
round trip, a few thousand for a context switch with SLB/TLB refill), documented here so
that results can be re-derived.  Emulated instructions cost one cycle each (CPI = 1).
"""

from __future__ import annotations

from typing import Final

HCALL_ENTRY: Final = 300  # sc 1 -> Xen -> back, register save/restore
HCALL_OP: Final = 200  # the body of a simple hypercall
XENCOMM_PER_PAGE: Final = 150  # walking one descriptor entry with pfn->mfn translation
COPY_PER_KIB: Final = 400  # copying guest memory in real mode
EVTCHN_SEND: Final = 400
TIMER_SET: Final = 150
EXCEPTION_DELIVERY: Final = 120  # Xen fakes an interrupt: SRR0/SRR1/MSR/PC
CONTEXT_SWITCH: Final = 3000  # save/restore GPRs, SPRs, SLB, HID4 reload, TLB invalidation
SCHEDULE: Final = 800  # credit scheduler decision
HDEC_TICK: Final = 500  # Xen's 10 ms tick handler
PAGE_TABLE_OP: Final = 250  # H_ENTER/H_REMOVE/...: PTEG search and tlbie
DOMCTL_OP: Final = 2000
DOMAIN_BUILD_PER_MIB: Final = 20_000  # populating/zeroing memory for a new domain
