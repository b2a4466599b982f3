"""Xen's console: what a domain writes (console_io, H_PUT_TERM_CHAR) and Xen's own ring
of messages (`conring`, read back by sysctl readconsole: `xm dmesg`).

Xen 3.0.4's `drivers/char/console.c`: a guest's writes go to the serial line (here: the
domain's console text and the trace), Xen's printk goes to a 16 KiB ring the reader
drains with free-running indices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.trace.ids import K
from framework.xen.public.version import XEN_EXTRAVERSION, XEN_VERSION

if TYPE_CHECKING:
    from framework.trace.recorder import Recorder
    from framework.xen.domain import Vcpu
    from framework.xen.hypervisor import Hypervisor

#: console.c's CONRING_SIZE.
CONRING_SIZE: Final = 16384


class ConsoleRing:
    """Xen's printk ring: producer and consumer count bytes; the oldest are overwritten."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.data = bytearray(CONRING_SIZE)
        self.prod = 0
        self.cons = 0

    def printk(self, text: str, now_ns: int, cpu: int) -> None:
        """Append one Xen message (a `(XEN) ` line as the serial console shows it)."""
        self.rec.emit(K.XEN_PRINTK, now_ns, cpu, -1, -1, text=text)
        for ch in f"(XEN) {text}\n".encode("ascii", "replace"):
            self.data[self.prod % CONRING_SIZE] = ch
            self.prod += 1
        if self.prod - self.cons > CONRING_SIZE:
            self.cons = self.prod - CONRING_SIZE

    def boot_banner(self, ncpus: int, now_ns: int) -> None:
        """What Xen 3.x prints while booting (kernel.c, schedule.c, smpboot) that `xm dmesg`
        shows: its version, its scheduler, the CPUs it brought up."""
        major, minor = XEN_VERSION
        extra = XEN_EXTRAVERSION.rstrip(b"\0").decode()
        for line in (
            f"Xen version {major}.{minor}{extra} (xen970@xen970) (a discrete-event simulator)",
            "Using scheduler: SMP Credit Scheduler (credit)",
            f"Brought up {ncpus} CPUs",
        ):
            self.printk(line, now_ns, 0)

    def read(self, count: int, clear: bool) -> bytes:
        """Up to `count` of the unread bytes, oldest first; `clear` consumes them."""
        n = min(count, self.prod - self.cons)
        out = bytes(self.data[(self.cons + i) % CONRING_SIZE] for i in range(n))
        if clear:
            self.cons += n
        return out


def guest_console_write(xen: Hypervisor, now_ns: int, cpu: int, v: Vcpu, data: bytes) -> None:
    """A domain's console output, line by line (CR dropped), to its text and the trace."""
    dom = v.domain
    for ch in data:
        if ch == 10:
            line = dom.console_line.decode("utf-8", "replace")
            dom.console_line.clear()
            dom.console_text.append(line)
            xen.rec.emit(K.CONSOLE_OUT, now_ns, cpu, dom.domid, v.vcpu_id, text=line)
            xen.console_sink(dom, line)
        elif ch != 13:
            dom.console_line.append(ch)


__all__ = ["CONRING_SIZE", "ConsoleRing", "guest_console_write"]
