"""Type stub of the C extension `_emit.c` (the trace recorder's store and emit)."""

from typing import Any

class Emitter:
    """Stores one record per call in int64 columns and a text column."""

    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def __call__(
        self,
        kind: int,
        t_ns: int,
        cpu: int,
        dom: int,
        vcpu: int,
        f0: int = 0,
        f1: int = 0,
        f2: int = 0,
        f3: int = 0,
        text: str | None = None,
    ) -> None: ...
    def columns(self) -> tuple[bytes, ...]: ...
    def column(self, index: int, /) -> bytes: ...
    def texts(self) -> list[Any]: ...
    def records(self, start: int = 0, /) -> list[tuple[Any, ...]]: ...
    def clear(self) -> None: ...
