"""The errno values Xen returns negated in r3 (Xen's `errno.h`, the Linux numbering)."""

from __future__ import annotations

from typing import Final

EPERM: Final = 1
ENOENT: Final = 2
ESRCH: Final = 3
EINTR: Final = 4
ENOMEM: Final = 12
EFAULT: Final = 14
EBUSY: Final = 16
EEXIST: Final = 17
EINVAL: Final = 22
ENOSPC: Final = 28
ENOSYS: Final = 38
EAGAIN: Final = 11
EACCES: Final = 13
