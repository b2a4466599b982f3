"""The errno values Xen and xenstored return (Xen's `errno.h`: the Linux numbering, which
a Linux guest's clients map them back to; `asm-generic/errno-base.h`, `errno.h`)."""

from __future__ import annotations

from typing import Final

EPERM: Final = 1
ENOENT: Final = 2
ESRCH: Final = 3
EINTR: Final = 4
EIO: Final = 5
E2BIG: Final = 7
EAGAIN: Final = 11
ENOMEM: Final = 12
EACCES: Final = 13
EFAULT: Final = 14
EBUSY: Final = 16
EEXIST: Final = 17
EISDIR: Final = 21
EINVAL: Final = 22
ENOSPC: Final = 28
EROFS: Final = 30
ENOSYS: Final = 38
ENOTEMPTY: Final = 39
EISCONN: Final = 106
