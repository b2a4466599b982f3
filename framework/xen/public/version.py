"""XENVER_* (`version.h`): what xen_version answers."""

from __future__ import annotations

from typing import Final

XENVER_version: Final = 0
XENVER_extraversion: Final = 1
XENVER_compile_info: Final = 2
XENVER_capabilities: Final = 3
XENVER_changeset: Final = 4
XENVER_platform_parameters: Final = 5
XENVER_pagesize: Final = 7
#: What XENVER_pagesize answers.
XEN_PAGESIZE: Final = 4096
XEN_VERSION: Final = (3, 0)
XEN_EXTRAVERSION: Final = b".4-xen970\0"
XEN_CAPABILITIES: Final = b"xen-3.0-powerpc64\0"
#: xen_compile_info_t: compiler[64], compile_by[16], compile_domain[32], compile_date[32].
XEN_COMPILE_INFO: Final = (
    b"gcc version 4.1.1".ljust(64, b"\0")
    + b"xen970".ljust(16, b"\0")
    + b"xen970".ljust(32, b"\0")
    + b"Tue May  8 10:38:06 BST 2007".ljust(32, b"\0")
)
#: xen_changeset_info_t (char[64]): Xen says this when built outside a repository.
XEN_CHANGESET: Final = b"unavailable".ljust(64, b"\0")
#: xen_platform_parameters_t: virt_start, an unsigned long (0: the port has no fixed
#: hypervisor hole in the guest's address space).
XEN_PLATFORM_PARAMETERS: Final = (0).to_bytes(8, "big")
