"""XENVER_* (`version.h`): what xen_version answers."""

from __future__ import annotations

from typing import Final

XENVER_version: Final = 0
XENVER_extraversion: Final = 1
XENVER_capabilities: Final = 3
XENVER_pagesize: Final = 7
XEN_VERSION: Final = (3, 0)
XEN_EXTRAVERSION: Final = b".4-xen970\0"
XEN_CAPABILITIES: Final = b"xen-3.0-powerpc64\0"
