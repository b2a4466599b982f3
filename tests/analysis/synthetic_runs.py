"""Two tiny run directories written by hand, with every interval known, for the windowed
metrics, latencies, comparisons and plots. They go through the recorder's own writer and
`analysis.load_run`, so they test the public path whatever the trace's storage layout.

Run A (sim_ns 1000; domains Domain-0 = 0, alpha = 1 with 2 VCPUs, beta = 2):

    cpu0  alpha.v0 [0,300)  beta.v0 [300,450)  alpha.v0 [450,800)  beta.v0 [800,1000)
    cpu1  idle [0,520)      alpha.v1 [520,700) idle [700,1000)

    alpha.v0  running [0,300) blocked [300,400) runnable [400,450) running [450,800)
              blocked [800,1000)                       woken at 400 -> ran at 450
    alpha.v1  blocked [0,500) runnable [500,520) running [520,700) blocked [700,1000)
                                                       woken at 500 -> ran at 520
    beta.v0   runnable [0,300) running [300,450) runnable [450,800) running [800,1000)
    Domain-0  blocked throughout; woken at 900, never ran

    channel alpha:5 <-> beta:7   alpha sends 100, 110 (same round), 600; beta sends 160, 650
                                 alpha handles 5 at 190, 700; beta handles 7 at 130, 630
      round trips: alpha 100 -> 190 (90), alpha 600 -> 700 (100), beta 160 -> 630 (470)
    timer ticks of alpha.v0: due 200 at 210 (10 late), due 400 at 455 (55 late)
    alpha blk dev 51712: 4096 bytes 100 -> 350, 8192 bytes 360 -> 560; beta net rx 1000 at 900

Run B (sim_ns 1000; the same names with other ids: beta = 1, alpha = 2 with 1 VCPU, and
gamma = 3, which run A lacks):
    alpha.v0 running [0,500) blocked [500,1000); beta.v0 running [0,1000); gamma blocked
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from analysis import Run, load_run
from framework.trace import Recorder
from framework.trace.ids import K
from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

RUN, WAIT, BLOCK = Runstate.RUNNING, Runstate.RUNNABLE, Runstate.BLOCKED
SIM_NS: Final = 1000
ALPHA, BETA = 1, 2
BLK_DEV: Final = 51712


def _write(directory: Path, rec: Recorder, domains: dict[int, str]) -> Run:
    rec.write(directory)
    meta = {
        "domains": {str(k): v for k, v in domains.items()},
        "sim_ns": SIM_NS,
        "scenario": directory.name,
        "seed": 0,
    }
    (directory / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    return load_run(directory)


def run_a(directory: Path) -> Run:
    """Run A of the module docstring, written into `directory` and loaded back."""
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    e = rec.emit
    e(K.SCHED_RUNSTATE, 0, 0, 0, 0, BLOCK, WAIT)
    e(K.SCHED_RUNSTATE, 0, 0, ALPHA, 0, RUN, WAIT)
    e(K.SCHED_SWITCH, 0, 0, ALPHA, 0, -1, -1)
    e(K.SCHED_RUNSTATE, 0, 1, ALPHA, 1, BLOCK, WAIT)
    e(K.SCHED_SWITCH, 0, 1, -1, -1, -1, -1)
    e(K.SCHED_RUNSTATE, 0, 0, BETA, 0, WAIT, BLOCK)
    e(K.EVTCHN_SEND, 100, 0, ALPHA, 0, 5, BETA, 7)
    e(K.BLK_SUBMIT, 100, 0, ALPHA, 0, BLK_DEV, 1, 0, 4096, text="read")
    e(K.EVTCHN_SEND, 110, 0, ALPHA, 0, 5, BETA, 7)
    e(K.EVTCHN_HANDLED, 130, 0, BETA, 0, 7)
    e(K.EVTCHN_SEND, 160, 0, BETA, 0, 7, ALPHA, 5)
    e(K.EVTCHN_HANDLED, 190, 0, ALPHA, 0, 5)
    e(K.GUEST_MARK, 210, 0, ALPHA, 0, 200, text="timer.tick")
    e(K.SCHED_RUNSTATE, 300, 0, ALPHA, 0, BLOCK, RUN)
    e(K.SCHED_RUNSTATE, 300, 0, BETA, 0, RUN, WAIT)
    e(K.SCHED_SWITCH, 300, 0, BETA, 0, ALPHA, 0)
    e(K.BLK_COMPLETE, 350, 0, ALPHA, 0, BLK_DEV, 1, 0, 250, text="read")
    e(K.BLK_SUBMIT, 360, 0, ALPHA, 0, BLK_DEV, 1, 0, 8192, text="write")
    e(K.SCHED_WAKE, 400, 0, ALPHA, 0, 0)
    e(K.SCHED_RUNSTATE, 400, 0, ALPHA, 0, WAIT, BLOCK)
    e(K.SCHED_RUNSTATE, 450, 0, BETA, 0, WAIT, RUN)
    e(K.SCHED_RUNSTATE, 450, 0, ALPHA, 0, RUN, WAIT)
    e(K.SCHED_SWITCH, 450, 0, ALPHA, 0, BETA, 0)
    e(K.GUEST_MARK, 455, 0, ALPHA, 0, 400, text="timer.tick")
    e(K.SCHED_WAKE, 500, 1, ALPHA, 1, 0)
    e(K.SCHED_RUNSTATE, 500, 1, ALPHA, 1, WAIT, BLOCK)
    e(K.SCHED_RUNSTATE, 520, 1, ALPHA, 1, RUN, WAIT)
    e(K.SCHED_SWITCH, 520, 1, ALPHA, 1, -1, -1)
    e(K.BLK_COMPLETE, 560, 0, ALPHA, 0, BLK_DEV, 1, 0, 200, text="write")
    e(K.EVTCHN_SEND, 600, 0, ALPHA, 0, 5, BETA, 7)
    e(K.EVTCHN_HANDLED, 630, 0, BETA, 0, 7)
    e(K.EVTCHN_SEND, 650, 0, BETA, 0, 7, ALPHA, 5)
    e(K.SCHED_RUNSTATE, 700, 1, ALPHA, 1, BLOCK, RUN)
    e(K.SCHED_SWITCH, 700, 1, -1, -1, ALPHA, 1)
    e(K.EVTCHN_HANDLED, 700, 0, ALPHA, 0, 5)
    e(K.SCHED_RUNSTATE, 800, 0, ALPHA, 0, BLOCK, RUN)
    e(K.SCHED_RUNSTATE, 800, 0, BETA, 0, RUN, WAIT)
    e(K.SCHED_SWITCH, 800, 0, BETA, 0, ALPHA, 0)
    e(K.SCHED_WAKE, 900, 0, 0, 0, 0)
    e(K.NET_RX, 900, 0, BETA, 0, 0, (BETA << 48) | 1, 1000, 40)
    return _write(directory, rec, {0: "Domain-0", ALPHA: "alpha", BETA: "beta"})


def run_b(directory: Path) -> Run:
    """Run B of the module docstring: alpha and beta under swapped ids."""
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    e = rec.emit
    e(K.SCHED_RUNSTATE, 0, 0, 2, 0, RUN, WAIT)
    e(K.SCHED_SWITCH, 0, 0, 2, 0, -1, -1)
    e(K.SCHED_RUNSTATE, 0, 1, 1, 0, RUN, WAIT)
    e(K.SCHED_SWITCH, 0, 1, 1, 0, -1, -1)
    e(K.SCHED_RUNSTATE, 0, 1, 3, 0, BLOCK, WAIT)
    e(K.SCHED_RUNSTATE, 500, 0, 2, 0, BLOCK, RUN)
    e(K.SCHED_SWITCH, 500, 0, -1, -1, 2, 0)
    return _write(directory, rec, {0: "Domain-0", 1: "beta", 2: "alpha", 3: "gamma"})
