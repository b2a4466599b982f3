"""The kernel services the network drivers use, as interfaces (Protocols).

Why: netfront, netback and netstream are compiled with mypyc, which checks the class of
an argument typed with a concrete class.  Typing their kernel (and the stream's
frontend) with these Protocols names exactly what a driver needs from its kernel, and
lets the driver tests run them over a small fake world instead of a whole simulation.
`GuestKernel` and `NetFront` satisfy them (mypy checks that where they are passed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from framework.xen.public.layout import Layout

if TYPE_CHECKING:
    from framework.hw970.core import Core
    from framework.trace.recorder import Recorder

    from .dom0_interface import Dom0Hardware
    from .grants import GrantTableClient
    from .kmem import KernelMemory
    from .pages import PagePool
    from .ring import GuestMemory
    from .xenbus import Xenbus

PortHandler = Callable[["Core", int], None]


class KernelHost(Protocol):
    """The OS a kernel runs under (`GuestOS`), as the kernel and its drivers reach it.

    A Protocol because `GuestOS` builds the kernels: the kernel module cannot import it."""

    rec: Recorder
    #: dom0's view of the machine's devices (None on a domU, or a machine without any).
    hardware: Dom0Hardware | None
    #: The translation cache of the native call in progress.
    current_memory_cache: KernelMemory | None

    @property
    def current_memory(self) -> GuestMemory:
        """Guest memory as the native call in progress reaches it."""
        ...


class TraceKernel(Protocol):
    """Trace records and console lines of one domain."""

    @property
    def domid(self) -> int: ...

    def emit(
        self,
        core: Core,
        kind: int,
        f0: int = 0,
        f1: int = 0,
        f2: int = 0,
        f3: int = 0,
        *,
        text: str | None = None,
    ) -> None: ...

    def console(self, core: Core, text: str) -> None: ...


class NetKernel(TraceKernel, Protocol):
    """What a network frontend or backend asks of its kernel."""

    pool: PagePool | None
    grants: GrantTableClient | None
    xenbus: Xenbus | None
    port_handlers: dict[int, PortHandler]
    #: The guest OS (dom0's carries the simulation's `hardware`).
    os: KernelHost

    def memory(self, core: Core) -> GuestMemory:
        """The kernel's view of its memory for the native call `core` is running."""
        ...

    def op(
        self, core: Core, nr: int, cmd: int, layout: Layout, **fields: int
    ) -> tuple[int, dict[str, int]]: ...

    def evtchn_alloc_unbound(self, core: Core, remote_dom: int) -> int: ...

    def evtchn_bind_interdomain(self, core: Core, remote_dom: int, remote_port: int) -> int: ...

    def evtchn_bind_vcpu(self, core: Core, port: int, vcpu: int) -> int: ...

    def evtchn_close(self, core: Core, port: int) -> None: ...

    def send(self, core: Core, port: int) -> int: ...

    def grant_map_many(
        self, core: Core, items: list[tuple[int, int, bool]]
    ) -> list[tuple[int, int] | int]: ...

    def grant_unmap_many(self, core: Core, maps: list[tuple[int, int]]) -> list[int]: ...

    def grant_copy(self, core: Core, ops: list[dict[str, int]]) -> list[int]: ...

    def map_4k(self, core: Core, gpa: int, readonly: bool = False) -> int: ...

    def unmap_4k(self, core: Core, gpa: int) -> None: ...


class StreamFront(Protocol):
    """The frontend a stream sends and receives Ethernet frames through."""

    devid: int
    mac: bytes | None
    mtu: int

    def tx_space(self) -> int: ...

    def send(self, core: Core, frame: bytes) -> bool: ...

    def when_connected(self, callback: Callable[[Core], None]) -> None: ...

    def add_receiver(self, callback: Callable[[Core, bytes], None]) -> None: ...

    def add_tx_space_listener(self, callback: Callable[[Core], None]) -> None: ...
