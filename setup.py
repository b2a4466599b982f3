"""Build of the compiled parts.

Two kinds, both optional for reading the code but built by every install:

- C code Unicorn calls without entering Python, or that calls Unicorn without ctypes:
  `framework/hw970/_ucglue.c` (the cores' register, emulation and context calls, their
  hook trampolines and the block hook that counts instructions), `_mmu.c` (the TLB fill)
  and the trace recorder's emit (`framework/trace/_emit.c`).
- The modules every simulated event passes through, compiled from their (unchanged,
  type-annotated) Python source with mypyc: the core's hooks, Xen's hypercall entry,
  scheduler, event channels.  The `.py` files stay the source of truth; after editing one
  of `MYPYC_MODULES`, reinstall (`pip install -e .`) or the old build keeps running -
  `framework.compiled` warns when a compiled module is older than its source.
  `XEN970_PURE_PYTHON=1` at install time skips mypyc (everything runs interpreted).

setup.py rather than pyproject.toml alone: mypycify generates the extension list.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

C_EXTENSIONS = [
    Extension("framework.hw970._mmu", ["framework/hw970/_mmu.c"]),
    Extension("framework.hw970._ucglue", ["framework/hw970/_ucglue.c"]),
    Extension("framework.trace._emit", ["framework/trace/_emit.c"]),
]

#: Kept in step with `framework.compiled.MYPYC_MODULES` (a test checks it).
MYPYC_MODULES = [
    "framework/guest/blkback.py",
    "framework/guest/blkfront.py",
    "framework/guest/blockio.py",
    "framework/guest/grants.py",
    "framework/guest/guest_os.py",
    "framework/guest/kernel.py",
    "framework/guest/kmem.py",
    "framework/guest/netback.py",
    "framework/guest/netfront.py",
    "framework/guest/netstream.py",
    "framework/guest/netswitch.py",
    "framework/guest/ring.py",
    "framework/hw970/arch_state.py",
    "framework/guest/xenbus_driver.py",
    "framework/hw970/core.py",
    "framework/hw970/disk.py",
    "framework/hw970/engines.py",
    "framework/hw970/iommu.py",
    "framework/hw970/irq_moderation.py",
    "framework/hw970/link.py",
    "framework/hw970/memory.py",
    "framework/hw970/mmu.py",
    "framework/hw970/mpic.py",
    "framework/hw970/sensitive.py",
    "framework/hw970/tlb_fill.py",
    "framework/sim_events.py",
    "framework/trace/recorder.py",
    "framework/xen/common_ops.py",
    "framework/xen/continuation.py",
    "framework/xen/domain.py",
    "framework/xen/event_channel.py",
    "framework/xen/evtchn.py",
    "framework/xen/grant_ops.py",
    "framework/xen/grant_state.py",
    "framework/xen/grant_table.py",
    "framework/xen/hcall.py",
    "framework/xen/hypervisor.py",
    "framework/xen/memory_op.py",
    "framework/xen/p2m.py",
    "framework/xen/papr.py",
    "framework/xen/public/arch_powerpc.py",
    "framework/xen/public/domctl.py",
    "framework/xen/public/errno.py",
    "framework/xen/public/event_channel.py",
    "framework/xen/public/grant_table.py",
    "framework/xen/public/io/blkif.py",
    "framework/xen/public/io/console.py",
    "framework/xen/public/io/netif.py",
    "framework/xen/public/io/ring.py",
    "framework/xen/public/io/xenbus.py",
    "framework/xen/public/io/xs_wire.py",
    "framework/xen/public/layout.py",
    "framework/xen/public/memory.py",
    "framework/xen/public/papr.py",
    "framework/xen/public/sched.py",
    "framework/xen/public/vcpu.py",
    "framework/xen/public/version.py",
    "framework/xen/public/xen.py",
    "framework/xen/public/xencomm.py",
    "framework/xen/sched_credit.py",
    "framework/xen/schedule.py",
    "framework/xen/tce.py",
    "framework/xen/tce_table.py",
    "framework/xen/xencomm.py",
]


def compiled_modules() -> list[Extension]:
    if os.environ.get("XEN970_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify

    return mypycify(MYPYC_MODULES, opt_level="3", group_name="framework._hotpath")


setup(ext_modules=C_EXTENSIONS + compiled_modules())
