"""H_PUT_TERM_CHAR / H_GET_TERM_CHAR and H_SET_DABR: the PAPR console and debug calls the
970 port implemented (`papr/vterm.c`, `papr/debug.c`).

The console calls carry up to 16 characters in registers: r5 = count, r6..r7 the bytes,
big-endian from the top of r6 (PAPR's vterm convention). The port sent them to Xen's
serial line; here they join the calling domain's console as console_io's writes do.
Nothing is ever typed at a domain, so H_GET_TERM_CHAR answers with no characters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.xen import costs
from framework.xen.console import guest_console_write
from framework.xen.continuation import Handler
from framework.xen.domain import Vcpu
from framework.xen.public.papr import (
    H_GET_TERM_CHAR,
    H_PARAMETER,
    H_PUT_TERM_CHAR,
    H_SET_DABR,
    H_SUCCESS,
)

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

#: vterm.c: two registers of characters at most.
TERM_CHARS_MAX: Final = 16


def h_put_term_char(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    count = core.gpr(5)  # r4 is the vterm number; the port had one console per domain
    if count > TERM_CHARS_MAX:
        return H_PARAMETER
    core.charge(costs.HCALL_OP + count)
    raw = core.gpr(6).to_bytes(8, "big") + core.gpr(7).to_bytes(8, "big")
    guest_console_write(xen, core.now_ns(), core.cpu_id, v, raw[:count])
    return H_SUCCESS


def h_get_term_char(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    core.charge(costs.HCALL_OP)
    core.set_gpr(4, 0)  # characters returned: none waiting
    core.set_gpr(5, 0)
    core.set_gpr(6, 0)
    return H_SUCCESS


def h_set_dabr(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """Set the VCPU's data address breakpoint; the 970 has DABRX, so any value is taken.

    Kept with the VCPU (the port wrote the SPR directly, so it leaked to whatever ran
    next); the emulated core does not raise DABR matches.
    """
    core.charge(costs.HCALL_OP)
    v.dabr = core.gpr(4)
    return H_SUCCESS


#: `framework.xen.hcall` dispatches these with the page-table and TCE calls.
VTERM_CALLS: Final[dict[int, Handler]] = {
    H_PUT_TERM_CHAR: h_put_term_char,
    H_GET_TERM_CHAR: h_get_term_char,
    H_SET_DABR: h_set_dabr,
}

__all__ = ["VTERM_CALLS", "h_get_term_char", "h_put_term_char", "h_set_dabr"]
