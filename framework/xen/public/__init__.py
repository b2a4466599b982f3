"""The guest ABI: what a paravirtualised kernel, its drivers and dom0's tools may know of Xen.

Hypercall numbers, errno values, the layouts of structures shared through memory
(shared_info, vcpu_info, vcpu_guest_context, grant entries, rings, console and xenstore
pages), the xencomm descriptor format and the 970 port's conventions.  It is the only part of
`framework.xen` that `framework.guest` and `framework.dom0` may import (an import-linter
contract in pyproject.toml enforces it), the way a Linux guest includes `xen/interface/`
and nothing else of the hypervisor.
"""
