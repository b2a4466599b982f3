"""What a hypercall handler is, and the result that asks for the call to be made again.

A leaf module so that the dispatcher (`framework.xen.hcall`) and every handler module can
share these without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core

if TYPE_CHECKING:
    from framework.xen.domain import Vcpu
    from framework.xen.hypervisor import Hypervisor

#: A hypercall body: reads its arguments from the core, returns the value for r3.
Handler = Callable[["Hypervisor", Core, "Vcpu"], int]

#: Sentinel result: re-execute the `sc` with the (updated) arguments, as Xen's
#: hypercall_create_continuation does (no hypercall returns this value).
CONTINUATION: Final = -(1 << 72)

__all__ = ["CONTINUATION", "Handler"]
