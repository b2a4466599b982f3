"""Type stub of the C extension `_ucglue.c` (the Unicorn glue of the emulated cores)."""

from collections.abc import Callable

HOOK_INTR: int
HOOK_CODE: int
HOOK_TRAP: int
HOOK_BLOCK: int

def bind(
    uc_open: int,
    uc_close: int,
    uc_reg_read: int,
    uc_reg_write: int,
    uc_emu_start: int,
    uc_emu_stop: int,
    uc_ctl: int,
    uc_mem_map_ptr: int,
    uc_hook_add: int,
    uc_hook_del: int,
    ctl_tlb_flush: int,
    ctl_tb_flush: int,
    ctl_tlb_type: int,
    ctl_tcg_buffer_size: int,
    /,
) -> None: ...

class EnginePool:
    ahead: int
    on_demand: int
    spare: int
    @property
    def ready(self) -> int: ...
    def __init__(
        self,
        arch: int,
        mode: int,
        tcg_bytes: int,
        tlb_type: int,
        perms: int,
        mem_ptr: int,
        mem_size: int,
        spare: int,
    ) -> None: ...
    def take(self) -> int: ...
    def close(self) -> None: ...
    def after_fork(self) -> None: ...

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
        on_intr: Callable[[int], None],
        on_site: Callable[[int], None],
        on_trap: Callable[[int, int], None],
    ) -> None: ...
    def reg_read(self, regid: int) -> int: ...
    def reg_write(self, regid: int, value: int) -> None: ...
    def emu_start(self, begin: int, until: int, count: int = 0, /) -> int: ...
    def emu_stop(self) -> None: ...
    def tlb_flush(self) -> None: ...
    def tb_flush(self) -> None: ...
    def hook_add(
        self, htype: int, callback: int, user_data: int, begin: int, end: int, /
    ) -> int: ...
    def hook_del(self, handle: int, /) -> None: ...
    def set_handlers(
        self,
        on_intr: Callable[[int], None],
        on_site: Callable[[int], None],
        on_trap: Callable[[int, int], None],
    ) -> None: ...
    def set_trap_check(self, trap_word: int, mmu_state: int, /) -> None: ...
