"""Type stub of the C extension `_ucglue.c` (the Unicorn glue of the emulated cores)."""

from collections.abc import Callable

HOOK_INTR: int
HOOK_CODE: int
HOOK_BLOCK: int

class Glue:
    executed: int
    budget: int
    last_block: int
    last_size: int
    stopped: int
    @property
    def address(self) -> int: ...
    def __init__(
        self,
        uc: int,
        reg_read: int,
        reg_write: int,
        emu_start: int,
        emu_stop: int,
        ctl: int,
        on_intr: Callable[[int], None],
        on_site: Callable[[int], None],
    ) -> None: ...
    def reg_read(self, regid: int) -> int: ...
    def reg_write(self, regid: int, value: int) -> None: ...
    def emu_start(self, begin: int, until: int) -> int: ...
    def emu_stop(self) -> None: ...
    def tlb_flush(self) -> None: ...
    def set_handlers(
        self, on_intr: Callable[[int], None], on_site: Callable[[int], None]
    ) -> None: ...
