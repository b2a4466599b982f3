"""Which modules run compiled by mypyc (see setup.py), and whether that build is stale.

The compiled extension of a module shadows its `.py`: after an edit, the old build keeps
running until the project is reinstalled.  `stale_modules` finds such modules and the
simulation warns about them once, so an edit that seems to change nothing is explained.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from typing import Final

#: The hot path: every simulated event passes through these (kept equal to setup.py's
#: MYPYC_MODULES by tests/test_compiled.py).
MYPYC_MODULES: Final = (
    "framework.guest.blkback",
    "framework.guest.blkfront",
    "framework.guest.blockio",
    "framework.guest.grants",
    "framework.guest.guest_os",
    "framework.guest.kernel",
    "framework.guest.kmem",
    "framework.guest.netback",
    "framework.guest.netfront",
    "framework.guest.netstream",
    "framework.guest.netswitch",
    "framework.guest.ring",
    "framework.hw970.arch_state",
    "framework.guest.xenbus_driver",
    "framework.hw970.core",
    "framework.hw970.disk",
    "framework.hw970.engines",
    "framework.hw970.iommu",
    "framework.hw970.irq_moderation",
    "framework.hw970.link",
    "framework.hw970.memory",
    "framework.hw970.mmu",
    "framework.hw970.mpic",
    "framework.hw970.sensitive",
    "framework.hw970.tlb_fill",
    "framework.sim_events",
    "framework.trace.recorder",
    "framework.xen.common_ops",
    "framework.xen.continuation",
    "framework.xen.domain",
    "framework.xen.event_channel",
    "framework.xen.evtchn",
    "framework.xen.grant_ops",
    "framework.xen.grant_state",
    "framework.xen.grant_table",
    "framework.xen.hcall",
    "framework.xen.hypervisor",
    "framework.xen.memory_op",
    "framework.xen.p2m",
    "framework.xen.papr",
    "framework.xen.public.arch_powerpc",
    "framework.xen.public.domctl",
    "framework.xen.public.errno",
    "framework.xen.public.event_channel",
    "framework.xen.public.grant_table",
    "framework.xen.public.io.blkif",
    "framework.xen.public.io.console",
    "framework.xen.public.io.netif",
    "framework.xen.public.io.ring",
    "framework.xen.public.io.xenbus",
    "framework.xen.public.io.xs_wire",
    "framework.xen.public.layout",
    "framework.xen.public.memory",
    "framework.xen.public.papr",
    "framework.xen.public.sched",
    "framework.xen.public.vcpu",
    "framework.xen.public.version",
    "framework.xen.public.xen",
    "framework.xen.public.xencomm",
    "framework.xen.sched_credit",
    "framework.xen.schedule",
    "framework.xen.tce",
    "framework.xen.tce_table",
    "framework.xen.xencomm",
)


def module_origin(name: str) -> str:
    """The file `name` is imported from (a `.py`, or the compiled extension)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImportError(f"module {name} not found")
    return spec.origin


def compiled_modules() -> list[str]:
    """The modules of MYPYC_MODULES that import as compiled extensions."""
    return [m for m in MYPYC_MODULES if not module_origin(m).endswith(".py")]


def stale_modules() -> list[str]:
    """Compiled modules whose `.py` source was changed after the build."""
    out = []
    for name in compiled_modules():
        origin = module_origin(name)
        source = os.path.join(os.path.dirname(origin), name.rpartition(".")[2] + ".py")
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(origin):
            out.append(name)
    return out


@functools.cache
def warn_if_stale() -> None:
    """Warn (once per process) when an edited module still runs its old compiled build."""
    stale = stale_modules()
    if stale:
        warnings.warn(
            f"{', '.join(stale)}: the source is newer than the compiled build, which is what "
            "runs; reinstall (pip install -e .) to rebuild",
            stacklevel=2,
        )
