"""SCHEDOP_* (`sched.h`): yield, block, shutdown and poll, with their argument layouts."""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

SCHEDOP_yield: Final = 0
SCHEDOP_block: Final = 1
SCHEDOP_shutdown: Final = 2
SCHEDOP_poll: Final = 3
SHUTDOWN_poweroff: Final = 0
SHUTDOWN_reboot: Final = 1
SHUTDOWN_suspend: Final = 2
SHUTDOWN_crash: Final = 3
SHUTDOWN_NAMES: Final = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash"}

SCHED_SHUTDOWN: Final = Layout("sched_shutdown", 4, {"reason": (0, 4)})
SCHED_POLL: Final = Layout(
    "sched_poll", 24, {"ports": (0, 8), "nr_ports": (8, 4), "timeout": (16, 8)}
)
