"""Suspend and resume of a domU kernel, as Linux's xen-sparse `machine_reboot.c` does it.

Suspend (the toolstack wrote `suspend` to `control/shutdown`): the handler, running in the
event upcall on VCPU 0, makes the upcall return to the runtime's `suspend_stub` (real
mode, interrupts off) instead of the interrupted context, which it keeps in the VCPU's
kernel area. There `native_suspend` writes the kernel's state into guest memory (the
record below, at `RECORD_GPA`) and `sc 1` makes `SCHEDOP_shutdown(SHUTDOWN_suspend)` with
the start-info (devtree) frame in r6; Xen stops the VCPU after the `sc`. Nothing of the
kernel is kept in Python for the resume: the saved domain is its memory and contexts.

Resume (`native_resume` after the `sc`): r3 = 1 (cancelled: `xm save -c`) - the same
kernel goes on, devices untouched (Linux's `xenbus_resume_cancel`); r3 = 0 - a new domain,
perhaps another process: a new kernel is built from the (rewritten) devtree and the record:
the linear map and grant table set up again (gnttab_resume), VIRQ_TIMER bound again, the
workload timers' deadlines moved by (now - suspend time) so ticks go on instead of
bursting, xenbus reconnected over the new store page and event channel, the console
reconnected, and each vbd's frontend connects afresh and re-issues the requests in its
shadow before anything new (Linux's `blkif_recover`).

Departures and limits: only single-VCPU domains suspend (Linux brings the others down
first; the scenario language refuses a save of a multi-VCPU domain); a netstream workload
is refused too (its vif is not reconnected). A pingpong side re-establishes its channel
(`framework.guest.pingpong`).

The record body (`framework.guest.suspend_record` encodes it) is a list:

0. suspend time (ns); 1. devtree gpa; 2. console `[pending output, typed input]`;
3. page pool `[start, end, next, [freed pages]]`; 4. timers `[[vcpu, deadline, tag]]`
(tag `timer.<i>` / `console.<i>`); 5. progress `[[tag, count]]`; 6. vbds, each
`[devid, ring gpa, next request id, submitted, completed, requests, blockio]`, a request
`[id, op, sector, nbytes, submit ns, blockio slot, [[page gpa, first, last]]]`, blockio as
`BlockIo.capture` documents it (`[]` when the vbd has none); 7. (version 2) the pingpong
side `[role, peer domid, rounds, vcpu, completed, awaiting]` (`[]` when none; see
`framework.guest.pingpong`); 8. (version 3) the grants it made, each
`[name, [peer, pages, readonly, every, rounds, vcpu], [page gpas], [refs],
[round, awaiting, revoked, answered]]` (see `framework.guest.sharedmem`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.errors import KernelError
from framework.hw970.core import Core
from framework.hw970.regs import MSR_ME, MSR_RI, MSR_SF
from framework.trace.ids import K

from .blkfront import BlkFront, BlkRequest
from .blockio import BlockIo
from .kmem import KernelMemory
from .pages import PagePool
from .runtime import AREA_BASE, AREA_SIZE, AREA_SUSP_SRR0, AREA_SUSP_SRR1, Runtime
from .suspend_record import (
    HEADER_SIZE,
    RECORD_GPA,
    Value,
    as_bytes,
    as_int,
    as_ints,
    as_list,
    decode_record,
    encode_record,
    record_length,
)

if TYPE_CHECKING:
    from .kernel import GuestKernel
    from .sharedmem import SharedMem

__all__ = [
    "ResumeRecord",
    "begin_suspend",
    "capture_kernel",
    "read_record",
    "restore_pool",
    "restore_vbd",
    "return_to_interrupted",
]

#: MSR of the suspend stub: 64-bit, real mode, external interrupts off.
_STUB_MSR: Final = MSR_SF | MSR_ME | MSR_RI


def _area(core: Core) -> int:
    assert core.state is not None
    return AREA_BASE + AREA_SIZE * core.state.pir


def begin_suspend(k: GuestKernel, core: Core, runtime: Runtime) -> None:
    """In the upcall: keep the interrupted context in the kernel area and make the
    upcall's rfid enter `suspend_stub`."""
    st = core.state
    assert st is not None
    if st.pir != 0 or k.spec.nr_vcpus != 1:
        k.console(core, "suspend: only a single-VCPU domain suspends; request ignored")
        if k.control is not None:
            k.control.resumed()
        return
    mem = KernelMemory(core)
    area = _area(core)
    mem.write(area + AREA_SUSP_SRR0, st.srr0.to_bytes(8, "big"))
    mem.write(area + AREA_SUSP_SRR1, st.srr1.to_bytes(8, "big"))
    st.srr0 = runtime.symbols["suspend_stub"]
    st.srr1 = _STUB_MSR
    k.emit(core, K.GUEST_MARK, text="suspend")


def return_to_interrupted(core: Core) -> None:
    """Make the stub's rfid go back to the context the suspend interrupted."""
    st = core.state
    assert st is not None
    mem = KernelMemory(core)
    area = _area(core)
    st.srr0 = int.from_bytes(mem.read(area + AREA_SUSP_SRR0, 8), "big")
    st.srr1 = int.from_bytes(mem.read(area + AREA_SUSP_SRR1, 8), "big")


# -- the record ----------------------------------------------------------------------------
def capture_kernel(
    k: GuestKernel, core: Core, progress: dict[str, int], sharedmem: SharedMem | None
) -> bytes:
    """The kernel's state as a suspend record (see the module docstring)."""
    pool = k.pool
    assert pool is not None
    timers: list[Value] = []
    for vid in sorted(k.timers):
        for t in sorted(k.timers[vid], key=lambda t: t.deadline):
            if t.tag:
                timers.append([vid, t.deadline, t.tag.encode()])
    vbds: list[Value] = []
    fb = k.frontends
    if fb is not None:
        for devid, front in sorted(fb.vbds.items()):
            io = fb.blockio.get(devid)
            reqs: list[Value] = []
            for r in front.shadow():
                slot = io.slot_of(r) if io is not None else -1
                segs: list[Value] = [[g, a, b] for g, a, b in r.segments]
                reqs.append([r.id, r.op, r.sector, r.nbytes, r.submit_ns, slot, segs])
            vbds.append(
                [
                    devid,
                    front.ring_gpa,
                    front.next_id,
                    front.submitted,
                    front.completed,
                    reqs,
                    io.capture() if io is not None else [],
                ]
            )
    body: list[Value] = [
        core.now_ns(),
        k.devtree_gpa,
        [bytes(k.console_pending), bytes(k.console_typed)],
        [pool.start, pool.end, pool.next_free, sorted(pool.freed)],
        timers,
        [[tag.encode(), n] for tag, n in sorted(progress.items())],
        vbds,
        k.pingpong.capture() if k.pingpong is not None else [],
        sharedmem.capture() if sharedmem is not None else [],
    ]
    return encode_record(body)


class ResumeRecord:
    """A decoded suspend record, in the parts the resume path takes one by one."""

    def __init__(self, body: Value) -> None:
        parts = as_list(body)
        if len(parts) < 7:
            raise KernelError(f"suspend record: {len(parts)} parts, expected at least 7")
        self.suspend_ns = as_int(parts[0])
        self.devtree_gpa = as_int(parts[1])
        console = as_list(parts[2])
        self.console_pending = as_bytes(console[0])
        self.console_typed = as_bytes(console[1])
        self.pool = as_list(parts[3])
        self.timers = [
            (as_int(t[0]), as_int(t[1]), as_bytes(t[2]).decode())
            for t in (as_list(x) for x in as_list(parts[4]))
        ]
        self.progress = {
            as_bytes(p[0]).decode(): as_int(p[1]) for p in (as_list(x) for x in as_list(parts[5]))
        }
        self.vbds = {as_int(as_list(v)[0]): as_list(v) for v in as_list(parts[6])}
        #: Version 2: the pingpong side (`Pingpong.capture`), [] when none.
        self.pingpong: Value = parts[7] if len(parts) > 7 else []
        #: Version 3: the grants it made (`SharedMem.capture`), [] when none.
        self.sharedmem: Value = parts[8] if len(parts) > 8 else []


def read_record(core: Core) -> ResumeRecord:
    """The record the suspended kernel left at RECORD_GPA."""
    mem = KernelMemory(core)
    header = mem.read(RECORD_GPA, HEADER_SIZE)
    length = record_length(header)
    return ResumeRecord(decode_record(header + mem.read(RECORD_GPA + HEADER_SIZE, length)))


def restore_pool(rec: ResumeRecord) -> PagePool:
    """The page pool as it was, less the vbd rings (new ones are allocated on connect)."""
    start, end, nxt = (as_int(x) for x in rec.pool[:3])
    pool = PagePool(start, end)
    pool.restore(nxt, as_ints(rec.pool[3]))
    for vbd in rec.vbds.values():
        ring = as_int(vbd[1])
        if ring >= 0:
            pool.free(ring)
    return pool


def restore_vbd(front: BlkFront, io: BlockIo | None, vbd: list[Value], delta_ns: int) -> None:
    """A vbd's frontend ids and its blockio state; the requests in flight wait for the
    frontend to connect (`BlockIo` re-issues them)."""
    front.restore_ids(as_int(vbd[2]), as_int(vbd[3]), as_int(vbd[4]))
    requests: list[tuple[BlkRequest, int]] = []
    for raw in as_list(vbd[5]):
        r = as_list(raw)
        segs = [(g, a, b) for g, a, b in (as_ints(s) for s in as_list(r[6]))]
        req = BlkRequest(
            as_int(r[0]),
            as_int(r[1]),
            as_int(r[2]),
            segs,
            as_int(r[3]),
            _orphan,
            submit_ns=as_int(r[4]) + delta_ns,
        )
        requests.append((req, as_int(r[5])))
    blockio = as_list(vbd[6])
    if io is not None and blockio:
        io.restore(blockio, [(req, slot) for req, slot in requests if slot >= 0])


def _orphan(_core: Core, _status: int, _req: BlkRequest) -> None:
    """A re-issued request nobody waits for any more (replaced by its workload's)."""
