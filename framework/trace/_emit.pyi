"""Type stub of the C extension `_emit.c` (the trace recorder's emit)."""

from typing import Any

class Emitter:
    """Appends one flat 10-tuple record to `records` per call."""

    def __init__(self, records: list[Any]) -> None: ...
    @property
    def records(self) -> list[Any]: ...
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
