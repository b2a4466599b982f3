"""The guest kernel's VCPU hotplug (Linux's drivers/xen/core/cpu_hotplug.c): `xm vcpu-set`
writes `cpu/<n>/availability` = `online` or `offline` under the domain's home; the kernel
watches `cpu` and takes VCPU n down (HYPERVISOR_vcpu_op VCPUOP_down) or brings it back up
(VCPUOP_up).

What happens to a VCPU taken down:

- Xen stops it where it is (runstate offline) and keeps its context; VCPUOP_up makes it
  runnable again and it continues from there, so a compute loop on it simply stops and
  resumes. The kernel checks with VCPUOP_is_up that it is down, as Linux's `__cpu_die`
  polls before it lets the CPU go.
- Its per-VCPU work pauses: the kernel takes the VCPU's timer queue aside while it is down
  and gives it back on up with every deadline moved on by the time spent down, so a timer
  workload misses the ticks of that time instead of firing them in a burst. (Linux
  migrates a dead CPU's timers to a live one; the xm-test vcpu-disable group asks for
  the VCPU's own work to stop, so here it waits for its VCPU.)
- Event channels bound to it stay bound (Linux's fixup_irqs moves them to CPU 0): a device
  whose channel is bound to the VCPU waits for it too. Documented, not hidden.
- VCPU 0 cannot go offline: Linux refuses to take down the boot CPU (`__cpu_disable`
  returns -EBUSY for CPU 0). Validation refuses a `vcpu_set` to 0 VCPUs; an `offline` for
  VCPU 0 written by other means is said on the console and ignored.

Only a kernel with more than one VCPU watches `cpu` (a uniprocessor kernel has no VCPU it
could take down), so single-VCPU guests boot exactly as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen.public.vcpu import VCPUOP_down, VCPUOP_is_up, VCPUOP_up
from framework.xen.public.xen import HYPERVISOR_vcpu_op, xen_mark

from .costs import NATIVE_ROUTINE
from .xenbus import XsReply

if TYPE_CHECKING:
    from .kernel import GuestKernel, Timer

__all__ = ["CPU_DIR", "CpuHotplug"]

#: The directory (relative to the domain's home) xend writes the VCPUs' availability in.
CPU_DIR: Final = "cpu"
_TOKEN: Final = "cpu-hotplug"


class CpuHotplug:
    """One kernel's VCPU hotplug: the watch on `cpu` and the VCPUs it has taken down."""

    def __init__(self, k: GuestKernel) -> None:
        self.k = k
        #: VCPU -> (when it went down, its timers held while down).
        self.down: dict[int, tuple[int, list[Timer]]] = {}
        self.refused = 0

    def start(self, core: Core) -> None:
        """Watch `cpu` (the first, initial event names `cpu` itself and changes nothing)."""
        xb = self.k.xenbus
        assert xb is not None, "xenbus is not up"
        xb.watch(core, CPU_DIR, _TOKEN, self._changed)

    def _changed(self, core: Core, path: str, _token: str) -> None:
        parts = path.split("/")
        # Relative watch: events name `cpu/<n>/availability` (absolute ones the whole path).
        if len(parts) < 3 or parts[-1] != "availability" or parts[-3] != CPU_DIR:
            return
        if not parts[-2].isdigit():
            return
        vid = int(parts[-2])
        xb = self.k.xenbus
        assert xb is not None

        def got(c: Core, r: XsReply) -> None:
            if not r.error:
                self.apply(c, vid, r.text)

        xb.read(core, f"{CPU_DIR}/{vid}/availability", got)

    def apply(self, core: Core, vid: int, availability: str) -> None:
        """Make VCPU `vid` `online` or `offline` (anything else is ignored, as Linux does)."""
        core.charge(NATIVE_ROUTINE)
        k = self.k
        if vid >= k.spec.nr_vcpus:
            return
        if availability == "offline":
            if vid == 0:
                self.refused += 1
                k.console(core, "cpu_hotplug: CPU 0 cannot be taken offline")
                return
            if vid not in self.down:
                self._take_down(core, vid)
        elif availability == "online" and vid in self.down:
            self._bring_up(core, vid)

    def _take_down(self, core: Core, vid: int) -> None:
        k = self.k
        rc = k.hypercall(core, xen_mark(HYPERVISOR_vcpu_op), VCPUOP_down, vid)
        if rc < 0:
            k.console(core, f"cpu_hotplug: VCPUOP_down of CPU {vid} failed ({rc})")
            return
        up = k.hypercall(core, xen_mark(HYPERVISOR_vcpu_op), VCPUOP_is_up, vid)
        if up != 0:
            k.console(core, f"cpu_hotplug: CPU {vid} is still up after VCPUOP_down ({up})")
            return
        self.down[vid] = (core.now_ns(), k.timers.pop(vid, []))
        k.emit(core, K.GUEST_MARK, vid, text="cpu.offline")

    def _bring_up(self, core: Core, vid: int) -> None:
        k = self.k
        since, held = self.down.pop(vid)
        shift = core.now_ns() - since
        for t in held:
            t.deadline += shift
        # Back in its queue before it runs: its next timer event (the one Xen raised while
        # it was down, or the deadline it had set) finds them and re-arms.
        k.timers.setdefault(vid, []).extend(held)
        rc = k.hypercall(core, xen_mark(HYPERVISOR_vcpu_op), VCPUOP_up, vid)
        if rc < 0:
            k.console(core, f"cpu_hotplug: VCPUOP_up of CPU {vid} failed ({rc})")
            return
        k.emit(core, K.GUEST_MARK, vid, text="cpu.online")
