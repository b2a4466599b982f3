"""A fuzzing session: a booted machine, its victims quiesced, and the hostile domain
running batches of calls through its own `sc 1`.

The machine: dom0, two victim domUs (one with a disk, so dom0 has a TCE table and
grants of it mapped, both with a network interface) and, from a domU, the fuzzing domain
`fuzzer` (from dom0, dom0 itself fuzzes on its VCPU 1, the kernel's work staying on VCPU
0).  Once everything is connected, each victim offers the fuzzing domain two writable and
two read-only grants of pages filled with a pattern and two unbound event channel ports,
then masks every one of its ports (as a kernel masks its events): nothing wakes it, so
its memory can change only by what Xen does for the fuzzer, which the oracle checks.

The fuzzing kernel's driver is a native routine at the program's tail: it starts an
armed batch, or marks the batch done and lets the domain block.  Its fault handlers step
over a fault the program's random words take (as a kernel kills a faulting process and
goes on); faults anywhere else are the kernel's usual oops.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Final

from unicorn.ppc_const import UC_PPC_REG_0

from framework.errors import fault_reason
from framework.guest.runtime import KERNEL_BASE, build_runtime, native_address
from framework.hw970.core import Core
from framework.hw970.regs import SRR1_PROGRAM_ILLEGAL, SRR1_PROGRAM_PRIV, SRR1_PROGRAM_TRAP
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.trace.ids import K
from framework.xen.domain import Domain, DomainState, Vcpu
from framework.xen.grant_table import entry_maddr
from framework.xen.hcall import hypercall_entry
from framework.xen.public.event_channel import EVTCHN_ALLOC_UNBOUND, EVTCHNOP_alloc_unbound
from framework.xen.public.grant_table import GTF_permit_access, GTF_readonly
from framework.xen.public.vcpu import Runstate
from framework.xen.public.xen import (
    DOMID_SELF,
    EVTCHN_MASK_OFF,
    HYPERVISOR_event_channel_op,
    xen_mark,
)
from framework.xen.public.xencomm import build_descriptor

from .call import Call
from .layout import CODE_END, CODE_GPA, ENTRY_BYTES, TABLE_GPA, TAIL_GPA
from .oracle import Oracle, Snapshot
from .program import TABLE_REG, batch_image, tail_code
from .world import World, world_of

MODES: Final = ("domU", "dom0")
_SCENARIO: Final = """
name: fuzz-{mode}
seed: 1
duration: 1000000s
machine: {{cpus: 2, memory: 384MiB}}
dom0:
  memory: 64MiB
  vcpus: 2
  workloads: [{dom0_workloads}]
domains:
  - name: victim1
    memory: 80MiB
    devices:
      - {{kind: vbd, name: xvda, size: 1MiB}}
      - {{kind: vif}}
  - name: victim2
    memory: 64MiB
    devices:
      - {{kind: vif}}
{fuzzer}"""
_FUZZER_DOMAIN: Final = """  - name: fuzzer
    memory: 80MiB
    workloads:
      - {kind: compute, vcpu: 0}
"""
#: Simulated time the machine boots for before fuzzing (everything is up by ~0.4 ms).
BOOT_NS: Final = 5_000_000
#: Simulated time run between checks of the batch's progress.
STEP_NS: Final = 1_000_000
#: A batch that has not reached its end after this much simulated time ran astray.
BATCH_SIM_LIMIT_NS: Final = 2_000_000_000
#: ...as has one whose VCPU made no hypercall for this many steps in a row (its own
#: vectors overwritten, say, so that it loops taking program checks, as hardware would).
IDLE_STEPS_LIMIT: Final = 5
#: Where each victim keeps the pages it grants to the fuzzer, and the refs it uses.
GRANTED_GPA: Final = 0x600000
GRANT_REFS: Final = {2040: False, 2041: False, 2042: True, 2043: True}  # ref -> read-only
#: Scratch guest-physical addresses in a victim for its own setup hypercalls.
_SETUP_ARG, _SETUP_DESC = 0x30000, 0x31000
_PROGRAM_BITS: Final = SRR1_PROGRAM_ILLEGAL | SRR1_PROGRAM_PRIV | SRR1_PROGRAM_TRAP


class BatchTimeout(BaseException):
    """The wall-time bound of a batch ran out (a hang). A BaseException, so that no
    `except Exception` in the simulator, the hypercall entry's included, mistakes it."""


@dataclass(frozen=True)
class Finding:
    """Something the simulator must never do: `kind` is one of "simulator bug",
    "isolation", "exception", "hang"."""

    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


@dataclass
class BatchResult:
    findings: list[Finding] = field(default_factory=list)
    #: Why the fuzzing domain can go on no more (it crashed or shut itself down), if so.
    lost: str | None = None
    sim_ns: int = 0
    #: Calls of the batch the program made (all, unless it was lost on the way).
    calls: int = 0


@contextmanager
def _wall_limit(seconds: float) -> Iterator[None]:
    """Raise BatchTimeout after `seconds` of wall time (main thread only, else no limit)."""

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise BatchTimeout(f"no end after {seconds:g} s of wall time")

    try:
        previous = signal.signal(signal.SIGALRM, expired)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Session:
    """One booted machine with a hostile domain; `run` one batch of calls at a time."""

    def __init__(self, mode: str, *, batch_wall_s: float = 120.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        self.batch_wall_s = batch_wall_s
        domu = mode == "domU"
        text = _SCENARIO.format(
            mode=mode,
            dom0_workloads="" if domu else "{kind: compute, vcpu: 1}",
            fuzzer=_FUZZER_DOMAIN if domu else "",
        )
        self.sim = Simulation(parse_scenario(text, f"fuzz-{mode}.yaml"))
        self.xen = self.sim.xen
        self.env = self.sim.env
        self.vcpu_id = 0 if domu else 1
        #: The fuzzing domain's id, once it exists.
        self._domid = -1 if domu else 0
        self._armed = False
        self._done = False
        self._reached = False
        self._install_natives()
        self.fuzzer = self._boot(domu)
        self.victims = tuple(d for d in sorted(self.xen.domains) if d != self.fuzzer.domid)
        for domid in self.victims:
            self._offer(self.xen.domains[domid])
        for domid in self.victims:
            self._quiesce(self.xen.domains[domid])
        self.env.run(until=int(self.env.now) + STEP_NS)
        self.oracle = Oracle(self.xen, self.fuzzer.domid, self.victims)
        self._last: Snapshot = self.oracle.snapshot()

    # -- the fuzzing kernel ----------------------------------------------------------------
    def _install_natives(self) -> None:
        machine = self.sim.machine
        machine.bind_native(KERNEL_BASE | TAIL_GPA, self._tail)
        for name in ("program_check", "storage_fault"):
            for address in (native_address(name), KERNEL_BASE | native_address(name)):
                machine.bind_native(address, self._step_over(machine.natives[address], name))

    def _is_fuzzer(self, core: Core) -> bool:
        st = core.state
        v = st.owner if st is not None else None
        return isinstance(v, Vcpu) and v.domain.domid == self._domid and v.vcpu_id == self.vcpu_id

    def _tail(self, core: Core) -> None:
        """The driver: start the armed batch, else mark it done and block (the code after
        the stub)."""
        if not self._is_fuzzer(core):
            return
        self._reached = True
        if self._armed:
            self._armed = False
            core.pc = KERNEL_BASE | CODE_GPA
        else:
            self._done = True
            core.pc = KERNEL_BASE | (TAIL_GPA + 4)

    def _step_over(self, original: Callable[[Core], None], name: str) -> Callable[[Core], None]:
        """The kernel's fault handler `name`, stepping over a fault of the program's own
        words: SRR0 is the faulting word for a program check (SRR1 names its kind) and a
        storage fault, the word after it for `sc 0` (also sent to program_check)."""

        def handler(core: Core) -> None:
            st = core.state
            code = KERNEL_BASE | CODE_GPA, KERNEL_BASE | CODE_END
            if st is None or not self._is_fuzzer(core) or not code[0] <= st.srr0 < code[1]:
                original(core)
                return
            if name == "storage_fault" or st.srr1 & _PROGRAM_BITS:
                st.srr0 += 4

        return handler

    # -- booting ---------------------------------------------------------------------------
    def _boot(self, domu: bool) -> Domain:
        """Run until the fuzzing domain's kernel has its program and reached its tail."""
        xen, env = self.xen, self.env
        patched = False
        while not (patched and self._reached and env.now >= BOOT_NS):
            if domu:
                self._domid = self.sim.domids.get("fuzzer", -1)
            fuzzer = xen.domains.get(self._domid)
            if not patched and fuzzer is not None and fuzzer.state == DomainState.RUNNING:
                self._load_tail(fuzzer)
                patched = True
            env.run(until=int(env.now) + 100_000)
            if env.now > 100 * BOOT_NS:
                raise RuntimeError("the fuzzing domain never reached its program")
        return xen.domains[self._domid]

    def _load_tail(self, dom: Domain) -> None:
        """Write the tail and send the compute loop there (its own memory, as its kernel)."""
        words = tail_code()
        self.write(dom, TAIL_GPA, b"".join(w.to_bytes(4, "big") for w in words))
        at = build_runtime().symbols["compute_next"]
        branch = (18 << 26) | ((TAIL_GPA - at) & 0x03FFFFFC) | 1
        self.write(dom, at, branch.to_bytes(4, "big"))
        self.sim.machine.bus.flush_code()

    def write(self, dom: Domain, gpa: int, data: bytes) -> None:
        """Write into `dom`'s memory at guest-physical `gpa`, page by page."""
        mem = self.xen.memory
        pos = 0
        while pos < len(data):
            n = min(len(data) - pos, 4096 - ((gpa + pos) & 0xFFF))
            mem.write(dom.gpa_to_maddr(gpa + pos), data[pos : pos + n])
            pos += n

    # -- the victims -------------------------------------------------------------------------
    def _offer(self, dom: Domain) -> None:
        """`dom` grants pages to the fuzzer and allocates ports it may bind (dom0 only
        ports: its pages are the backends' business)."""
        mem = self.xen.memory
        fuzzer = self.fuzzer.domid
        if not dom.privileged:
            for k, (ref, readonly) in enumerate(sorted(GRANT_REFS.items())):
                gpa = GRANTED_GPA + k * 4096
                self.write(dom, gpa, bytes((k * 37 + i) & 0xFF for i in range(4096)))
                addr = entry_maddr(dom, ref)
                mem.write_u32(addr + 4, gpa >> 12)
                mem.write_u16(addr + 2, fuzzer)
                mem.write_u16(addr, GTF_permit_access | (GTF_readonly if readonly else 0))
        caller = Core(
            len(self.sim.machine.cores) + 1,
            mem,
            self.sim.machine.config.clock_hz,
            self.sim.machine.config.timebase_hz,
            {},
        )
        caller.on_hypercall = hypercall_entry(self.xen)
        caller.load(dom.vcpus[0].arch)
        arg = EVTCHN_ALLOC_UNBOUND.pack(dom=DOMID_SELF, remote_dom=fuzzer)
        for _ in range(2):
            self.write(dom, _SETUP_ARG, arg)
            self.write(dom, _SETUP_DESC, build_descriptor([_SETUP_ARG]))
            caller.set_gpr(3, xen_mark(HYPERVISOR_event_channel_op))
            caller.set_gpr(4, EVTCHNOP_alloc_unbound)
            caller.set_gpr(5, _SETUP_DESC)
            caller.on_hypercall(caller)
            if caller.gpr(3):
                raise RuntimeError(f"d{dom.domid} could not allocate a port for the fuzzer")
        caller.save()

    def _quiesce(self, dom: Domain) -> None:
        """Mask every port of `dom`, as its kernel masks its events."""
        if dom.phys is not None:
            self.xen.memory.write(dom.shared_info_maddr + EVTCHN_MASK_OFF, b"\xff" * 512)

    # -- batches ---------------------------------------------------------------------------
    def world(self) -> World:
        return world_of(self.xen, self.fuzzer, self.victims, int(self.env.now))

    @property
    def alive(self) -> bool:
        dom = self.xen.domains.get(self.fuzzer.domid)
        return dom is self.fuzzer and dom.state == DomainState.RUNNING

    def _why_lost(self, start: int) -> str:
        """What ended the fuzzing domain (its dom.crash or dom.shutdown record)."""
        records = self.xen.rec.records_since(start)
        for kind in (K.DOM_CRASH, K.DOM_SHUTDOWN):
            for record in reversed(records):
                if record[3] == self.fuzzer.domid and record[0] == kind:
                    return str(record[9])
        return f"state {self.fuzzer.state}"

    def _kick(self) -> None:
        """Wake the fuzzing VCPU if it blocked, bring it up if it took itself down."""
        v = self.fuzzer.vcpus[self.vcpu_id]
        now = int(self.env.now)
        if not v.is_up and v.initialised:
            self.xen.vcpu_up(v)
        elif v.runstate == Runstate.BLOCKED:
            self.xen.vcpu_wake(v, now)

    def _made_calls(self, start: int) -> bool:
        """Whether the fuzzing VCPU entered Xen since record `start`, or is blocked."""
        v = self.fuzzer.vcpus[self.vcpu_id]
        if v.runstate == Runstate.BLOCKED or not v.is_up:
            return True  # waiting, not lost: `_kick` wakes it
        domid, vid = self.fuzzer.domid, self.vcpu_id
        return any(
            r[0] == K.HCALL_ENTER and r[3] == domid and r[4] == vid
            for r in self.xen.rec.records_since(start)
        )

    def _calls_made(self, n: int) -> int:
        """How far the program got: the table register's entry, 0..n."""
        hw = self.fuzzer.vcpus[self.vcpu_id].arch.hw
        if hw is None:
            return 0
        pointer = hw.glue.reg_read(UC_PPC_REG_0 + TABLE_REG) & ~KERNEL_BASE
        return max(0, min(n, (pointer - TABLE_GPA) // ENTRY_BYTES))

    def run(self, calls: Sequence[Call]) -> BatchResult:
        """Run one batch; what the simulator must never do is in the result's findings."""
        xen, env = self.xen, self.env
        code, table = batch_image(calls, self.vcpu_id)
        self.write(self.fuzzer, CODE_GPA, code)
        self.write(self.fuzzer, TABLE_GPA, table)
        for call in calls:
            for gpa, data in call.writes:
                self.write(self.fuzzer, gpa, data)
        self.sim.machine.bus.flush_code()
        result = BatchResult()
        start_records, bugs, t0 = len(xen.rec), len(xen.bugs), int(env.now)
        self._armed, self._done = True, False
        mark, idle = start_records, 0
        try:
            with _wall_limit(self.batch_wall_s):
                while not self._done:
                    self._kick()
                    env.run(until=int(env.now) + STEP_NS)
                    if not self.alive:
                        result.lost = f"the fuzzing domain ended: {self._why_lost(start_records)}"
                        break
                    idle = 0 if self._made_calls(mark) else idle + 1
                    mark = len(xen.rec)
                    if env.now - t0 > BATCH_SIM_LIMIT_NS or idle >= IDLE_STEPS_LIMIT:
                        result.lost = "the program ran astray (its end never reached)"
                        break
        except BatchTimeout as exc:
            result.findings.append(Finding("hang", f"{exc} (simulated time {env.now} ns)"))
            result.lost = "hang"
        except Exception as exc:  # noqa: BLE001 - what escaped the simulator is the finding
            text = f"{fault_reason(exc)}\n{''.join(traceback.format_exception(exc))}"
            result.findings.append(Finding("exception", text))
            result.lost = "an exception escaped the simulator"
        result.sim_ns = int(env.now) - t0
        result.calls = len(calls) if self._done else self._calls_made(len(calls))
        for bug in xen.bugs[bugs:]:
            line = bug.message().removeprefix("simulator bug: ")
            culprits = [
                f"call {i}: {call.describe()}"
                for i, call in enumerate(calls)
                if call.name == bug.name and call.args == bug.args
            ]
            text = "\n".join([line, *culprits[:1], bug.traceback])
            result.findings.append(Finding("simulator bug", text))
        if result.findings and result.lost in ("hang", "an exception escaped the simulator"):
            return result
        if result.sim_ns <= 0:
            result.findings.append(Finding("hang", "simulated time did not advance"))
        after = self.oracle.snapshot()
        for violation in self.oracle.compare(self._last, after, calls):
            result.findings.append(Finding("isolation", str(violation)))
        self._last = after
        return result

    def close(self) -> None:
        self.sim.close()


__all__ = [
    "BATCH_SIM_LIMIT_NS",
    "BOOT_NS",
    "MODES",
    "BatchResult",
    "BatchTimeout",
    "Finding",
    "Session",
]
