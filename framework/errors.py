"""Every exception xen970 raises on purpose, in one tree, so callers can tell them from bugs.

Plain Python, never compiled by mypyc: compiled modules raise and catch these classes, and
a native (mypyc) class could not derive from them across compilation groups.

```
Xen970Error
├── ScenarioError               bad input: one line naming file, line and field (exit 2)
│   ├── UnitError               a quantity string ("16M", "10ms") could not be read
│   └── UsageError              a command-line argument (--out) cannot be used
├── SimulationError             the simulator's own bug or broken invariant: ends the run
│   ├── TraceError              records that break the trace schema
│   └── RunTimeout              a run outlived the wall-time limit a suite gave it
├── HardwareFault               the 970 machine refused an access
│   ├── MachineCheck            an access outside installed machine memory
│   └── DmaFault                the IOMMU (TCE table) refused a device DMA
├── HypervisorError             Xen-internal: Xen turns these into an errno or GNTST status
│   ├── AllocError              machine memory could not be found
│   ├── NotOwned                a pfn/mfn outside the domain (also a KeyError)
│   ├── XencommError            a xencomm copy failed (carries the errno)
│   └── GrantOpRefused          one grant operation fails (carries the GNTST status)
└── GuestFault                  raised by code running on behalf of a domain
    ├── GuestCrash              the context did something the core cannot deliver
    ├── XenBug                  Xen's own code broke in a hypercall: recorded, caller crashed
    ├── KernelError             the guest kernel could not do what it needs (an oops)
    ├── KernelFault             a native touched guest memory its kernel has not mapped
    ├── OutOfPages              the kernel's page pool is exhausted
    ├── GrantRefsExhausted      every grant reference of the table is in use
    ├── BuildError              dom0's toolstack could not build a domain
    └── DriverError             a split driver or xenbus/xenstore client refused something
        ├── BlkfrontError, NetfrontError
        ├── BlkifRequestError   a blkif request a back end must refuse (also a ValueError)
        ├── RingError > RingFull, RingEmpty, RingProtocolError
        ├── XsWireError         bytes that are not a xenstore message (also a ValueError)
        └── XenstoreError       xenstored refused a request (carries the errno name)
```

Who is blamed (Principle 4, "faults stay where they happen"):

- Anything a guest kernel, driver or dom0 tool raises while running on behalf of a domain
  (a native routine, and so its timers and event handlers) crashes *that domain*: the
  trace records `dom.crash` with `fault_reason(exc)` and the run goes on.  That includes
  an unexpected non-project exception (a `KeyError` from a bug in a native routine): the
  guest's code crashed, as a real kernel would oops on its own bug.
- A `SimulationError` always passes through and ends the run.
- An unexpected exception escaping a hypercall handler is Xen's bug, not the guest's, but
  nothing a guest passes may end the run: the hypercall entry records it as a simulator
  bug (an `hcall.bug` trace record with the call's name, number and arguments, the
  hypervisor's `bugs` list that run.json, error.log and the summary report) and raises
  `XenBug`, which crashes the calling domain (`dom.crash`) while the run goes on.
  Anything else escaping Xen's or the core's code during a slice is turned into a
  `SimulationError` by the CPU loop.
- Unicorn hooks cannot raise through the emulator: the C glue keeps the first exception
  a hook raised, stops emulation and raises it again from `emu_start`, so these rules
  hold across the hook boundary too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framework.hw970.mmu import Fault

__all__ = [
    "AllocError",
    "BlkfrontError",
    "BlkifRequestError",
    "BuildError",
    "DmaFault",
    "DriverError",
    "GrantOpRefused",
    "GrantRefsExhausted",
    "GuestCrash",
    "GuestFault",
    "HardwareFault",
    "HypervisorError",
    "KernelError",
    "KernelFault",
    "MachineCheck",
    "NetfrontError",
    "NotOwned",
    "OutOfPages",
    "RingEmpty",
    "RingError",
    "RingFull",
    "RingProtocolError",
    "RunTimeout",
    "SaveFileError",
    "ScenarioError",
    "SimulationError",
    "TraceError",
    "UnitError",
    "UsageError",
    "Xen970Error",
    "XenBug",
    "XencommError",
    "XenstoreError",
    "XmConfigProblem",
    "XsWireError",
    "fault_reason",
]


class Xen970Error(Exception):
    """Base of every error xen970 raises on purpose (anything else is a bug)."""


def fault_reason(exc: BaseException) -> str:
    """The reason a domain crash records: the exception's type and message."""
    return f"{type(exc).__name__}: {exc}"


# -- bad input ------------------------------------------------------------------------------
class ScenarioError(Xen970Error):
    """A scenario file is unreadable or invalid; the message names file, line and field.

    `expected_refusal` is the regex of a negative test's `expect: {refused: ...}`: the file
    says it should be refused, and `xen970 test` passes it when this message matches."""

    expected_refusal: str | None = None


class XmConfigProblem(ScenarioError):
    """One problem of an xm config file: its `line`, the field (`where`) and the `reason`;
    the reader words it as `<file>:<line>: <field>: <reason>`."""

    def __init__(self, line: int, where: str, reason: str) -> None:
        super().__init__(reason)
        self.line, self.where, self.reason = line, where, reason


class UnitError(ScenarioError, ValueError):
    """A quantity string could not be read; the message says what was wrong.

    A ValueError too: scenario validators raise it, and pydantic reports ValueErrors."""


class UsageError(ScenarioError):
    """A command-line argument (e.g. `--out`) cannot be used; one line naming it.

    Bad input like a scenario error, so it takes the same exit (2)."""


class SaveFileError(ScenarioError, ValueError):
    """A save file (`xm save` image) is missing, truncated, corrupted or not one; the
    message names the file and what is wrong. Bad input: exit 2, nothing is created."""


# -- the simulator's own failures -----------------------------------------------------------
class SimulationError(Xen970Error):
    """The simulation could not go on (a model invariant broke, not a guest fault)."""


class TraceError(SimulationError, ValueError):
    """Records that break the schema (unknown kind, stray field or text, out of range)."""


class RunTimeout(SimulationError):
    """A run outlived the wall-time limit `xen970 test` gave it (a TIMEOUT verdict)."""


# -- hardware -------------------------------------------------------------------------------
class HardwareFault(Xen970Error):
    """The machine refused an access (what real hardware reports as a check or fault)."""


class MachineCheck(HardwareFault):
    """An access outside installed machine memory (a hardware machine check)."""


class DmaFault(HardwareFault):
    """A device DMA the IOMMU refused: which bus, which I/O bus address, and why."""

    def __init__(self, liobn: int, ioba: int, reason: str) -> None:
        super().__init__(f"DMA through liobn {liobn:#x} at ioba {ioba:#x} refused: {reason}")
        self.liobn = liobn
        self.ioba = ioba
        self.reason = reason


# -- Xen-internal ---------------------------------------------------------------------------
class HypervisorError(Xen970Error):
    """Xen-internal conditions its handlers turn into an errno or status for the caller;
    one that escapes a hypercall is Xen's bug (see the module docstring)."""


class AllocError(HypervisorError):
    """Machine memory could not be found; the message says how much was wanted and free."""


class NotOwned(HypervisorError, KeyError):
    """A pfn (or mfn) that is not part of the domain's memory (a KeyError for lookups)."""

    def __str__(self) -> str:
        # KeyError quotes its argument; these messages are sentences, not keys.
        return str(self.args[0]) if self.args else "not owned"


class XencommError(HypervisorError):
    """A xencomm copy failed; `errno` is what the hypercall returns (negated) to the guest."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


class GrantOpRefused(HypervisorError):
    """One grant operation fails with a GNTST_* status; the reason goes to the trace."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# -- guests ---------------------------------------------------------------------------------
class GuestFault(Xen970Error):
    """Raised by code running on behalf of a domain: crashes that domain, not the run."""


class GuestCrash(GuestFault):
    """The context did something the model cannot deliver as an interrupt."""


class XenBug(GuestFault):
    """Xen's own code raised an unexpected exception inside a hypercall: a simulator bug.

    The hypercall entry has recorded it (the call, its arguments, the traceback); raising
    this crashes the calling domain, whose state in Xen may be half-changed, and the run
    goes on.  `traceback` is the handler's traceback as text, for the run's error.log."""

    def __init__(self, message: str, traceback: str) -> None:
        super().__init__(message)
        self.traceback = traceback


class KernelError(GuestFault):
    """The kernel could not do something it needs (an oops in a real kernel)."""


class KernelFault(GuestFault):
    """A native touched guest memory its kernel has not mapped (or not writable)."""

    def __init__(self, gpa: int, write: bool, fault: Fault) -> None:
        kind = "store to" if write else "load from"
        super().__init__(
            f"kernel {kind} gpa {gpa:#x}: vector {fault.vector:#x} DSISR {fault.dsisr:#x}"
        )
        self.gpa = gpa
        self.write = write
        self.fault = fault


class OutOfPages(GuestFault):
    """The kernel's page pool is exhausted."""


class GrantRefsExhausted(GuestFault):
    """Every grant reference of the table is in use."""


class BuildError(GuestFault):
    """A domain could not be built; the message says which step and why."""


class DriverError(GuestFault):
    """A split driver, ring or xenstore client could not do what was asked."""


class BlkfrontError(DriverError):
    """A request the frontend cannot accept (the caller's mistake, said precisely)."""


class NetfrontError(DriverError):
    """A frame the frontend cannot accept (the caller's mistake, said precisely)."""


class BlkifRequestError(DriverError, ValueError):
    """A blkif request a back end must refuse; carries what it needs to answer
    BLKIF_RSP_ERROR (the request's id and operation)."""

    def __init__(self, message: str, request_id: int, operation: int) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.operation = operation


class RingError(DriverError):
    """A ring operation that cannot be done."""


class RingFull(RingError):
    """No free slot for another request (the producer must wait for responses)."""


class RingEmpty(RingError):
    """Nothing to consume."""


class RingProtocolError(RingError):
    """The other side broke the ring protocol (its indices are impossible)."""


class XsWireError(DriverError, ValueError):
    """Bytes that are not a well-formed xenstore message or payload."""


class XenstoreError(DriverError):
    """xenstored refused a request: `errno_name` is what travels in XS_ERROR ("ENOENT");
    `detail` says why, for people (it never goes on the wire)."""

    def __init__(self, errno_name: str, errno: int, detail: str = "") -> None:
        self.errno_name = errno_name
        self.errno = errno
        self.detail = detail
        super().__init__(f"{errno_name}: {detail}" if detail else errno_name)
