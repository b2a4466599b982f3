"""Which workloads made no progress for a whole run, so a run never fails silently.

A pingpong whose answering side never ran, a timer that never ticked, a blockio that
completed nothing, a netstream whose peer received no whole message: the run still ends
normally, so without this report its figures would look like a quiet, healthy guest.
Progress is read from what the guest kernels and Xen counted while the run lasted (not from
the trace, so `--no-trace` runs are checked too):

| kind | progress |
|---|---|
| `compute` | CPU time of its VCPU (Xen's account) |
| `timer` | ticks taken |
| `console` | lines written |
| `pingpong` | round trips completed (ping) or answers sent (pong) |
| `blockio` | requests completed |
| `netstream` | messages the peer received whole and correct |
| `sharedmem` | rounds the peer answered |

A destroyed domain's Xen account is gone with it, so its compute workloads are not judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from framework.dom0.devctl import vbd_devid
from framework.guest.guest_os import GuestOS
from framework.guest.kernel import GuestKernel
from framework.guest.netstream import stream_id
from framework.scenario import (
    BlockioWorkload,
    ComputeWorkload,
    ConsoleWorkload,
    NetstreamWorkload,
    PingpongWorkload,
    Scenario,
    SharedmemWorkload,
    TimerWorkload,
    Workload,
)
from framework.xen.hypervisor import Hypervisor

__all__ = ["StalledWorkload", "stalled_workloads"]


@dataclass(frozen=True)
class StalledWorkload:
    """One workload that made no progress: where it is in the scenario and why."""

    domain: str
    kind: str
    vcpu: int
    #: Its index in the domain's `workloads` list.
    workload: int
    why: str

    def message(self) -> str:
        """One line for the run's summary."""
        return (
            f"{self.domain}: {self.kind} workload (workloads[{self.workload}]) on VCPU "
            f"{self.vcpu} made no progress: {self.why}"
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def stalled_workloads(
    scenario: Scenario, domids: dict[str, int], guests: GuestOS, xen: Hypervisor
) -> list[StalledWorkload]:
    """Every workload of the scenario (dom0's first) that made no progress at all.

    `domids` names the guests that were built (a guest missing from it never ran)."""
    kernels: dict[int, GuestKernel] = {k.domid: k for k in guests.all_kernels()}
    found: list[StalledWorkload] = []
    domains: list[tuple[str, int | None, tuple[Workload, ...]]] = [
        ("Domain-0", 0, scenario.dom0.workloads)
    ]
    domains += [(d.name, domids.get(d.name), d.workloads) for d in scenario.domains]
    for name, domid, loads in domains:
        counters = _Counters(domid, kernels, guests, xen, domids)
        for j, w in enumerate(loads):
            why = counters.why_stalled(w, _instance(loads, j))
            if why:
                found.append(StalledWorkload(name, w.kind, w.vcpu, j, why))
    return found


def _instance(loads: tuple[Workload, ...], j: int) -> int:
    """Which timer (or console) of its domain workload `j` is: the devtree's instance."""
    kind = loads[j].kind
    return sum(1 for w in loads[:j] if w.kind == kind)


class _Counters:
    """The progress counters of one domain."""

    def __init__(
        self,
        domid: int | None,
        kernels: dict[int, GuestKernel],
        guests: GuestOS,
        xen: Hypervisor,
        domids: dict[str, int],
    ) -> None:
        self.domid = domid
        self.kernel = kernels.get(domid) if domid is not None else None
        self.kernels = kernels
        self.guests = guests
        self.xen = xen
        self.domids = domids

    def why_stalled(self, w: Workload, instance: int) -> str:
        """Why `w` made no progress, or "" when it made some."""
        if self.domid is None:
            return "the domain was not built (see dom0's console)"
        if isinstance(w, ComputeWorkload):
            dom = self.xen.domains.get(self.domid)
            if dom is None:
                return ""  # destroyed: its account went with it
            return "" if dom.vcpus[w.vcpu].cpu_time_ns else "its VCPU never ran"
        k = self.kernel
        if k is None:
            return "the domain's kernel never started"
        if isinstance(w, TimerWorkload):
            return self._counted(f"timer.{instance}", "no tick arrived")
        if isinstance(w, ConsoleWorkload):
            return self._counted(f"console.{instance}", "no line was written")
        if isinstance(w, PingpongWorkload):
            done = "no round trip completed" if w.role == "ping" else "no ping was answered"
            return self._counted("pingpong", done)
        if isinstance(w, BlockioWorkload):
            io = k.frontends.blockio.get(vbd_devid(w.device)) if k.frontends else None
            return "" if io is not None and io.completed else "no request completed"
        if isinstance(w, SharedmemWorkload):
            shm = self.guests.sharedmem.get(self.domid)
            answered = [g.answered for g in shm.granters if g.p.name == w.grant] if shm else []
            return "" if any(answered) else f"the peer of grant {w.grant} answered no round"
        assert isinstance(w, NetstreamWorkload)
        return "" if self._delivered(k, w.peer) else f"{w.peer} received no whole message"

    def _counted(self, key: str, none: str) -> str:
        assert self.domid is not None
        return "" if self.guests.progress.get((self.domid, key), 0) else none

    def _delivered(self, k: GuestKernel, peer: str) -> int:
        """Whole messages of this domain's stream that its peer received."""
        peer_id = self.domids.get(peer)
        theirs = self.kernels.get(peer_id) if peer_id is not None else None
        if k.frontends is None or theirs is None or theirs.frontends is None:
            return 0
        ids = {stream_id(k.domid, devid) for devid in k.frontends.streams}
        return sum(
            st.messages
            for sink in theirs.frontends.sinks.values()
            for sid, st in sink.streams.items()
            if sid in ids
        )
