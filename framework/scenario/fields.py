"""The field types and checks every scenario model shares, and the models' common base.

Sizes, durations, frequencies and bandwidths are written with units and parsed into
integers (bytes, ns, Hz, bytes per second), so the rest of the simulator only sees integers.
A check raises `ValueError` for the field it guards, or `Problem` to name a field below the
model being validated; the loader turns either into one line naming file, line and field.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictInt

from framework.errors import ScenarioError
from framework.scenario.limits import MAX_DURATION, MAX_VCPUS, RMA_SIZES
from framework.units import (
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_frequency,
    parse_size,
)

__all__ = [
    "MAX_ECHO",
    "START_BY_TIMELINE",
    "Bandwidth",
    "Cap",
    "CpuList",
    "Duration",
    "FieldPath",
    "Frequency",
    "Problem",
    "RmaSize",
    "ScenarioModel",
    "Size",
    "StartTime",
    "VcpuCount",
    "VcpuIndex",
    "Weight",
    "clip",
    "devtree_text",
    "dotted",
    "in_range",
    "matching",
    "nearest_line",
    "non_empty",
    "positive_duration",
    "reloadable_dump",
]

#: Most characters of an input value an error message repeats (a 16 MiB name is not echoed).
MAX_ECHO: Final = 200


def clip(text: str) -> str:
    """`text` cut to MAX_ECHO characters, saying how long it was: messages stay one line."""
    if len(text) <= MAX_ECHO:
        return text
    return f"{text[:MAX_ECHO]}... ({len(text)} characters)"


#: Where a value sits in the scenario: ('domains', 0, 'rma') is `domains[0].rma`.
FieldPath = tuple[str | int, ...]


def dotted(path: FieldPath) -> str:
    """('domains', 0, 'rma') -> 'domains[0].rma'."""
    out = ""
    for el in path:
        out += f"[{el}]" if isinstance(el, int) else (f".{el}" if out else str(el))
    return out or "(top level)"


def nearest_line(lines: dict[FieldPath, int], path: FieldPath) -> int:
    """The line of `path` in the file, else of its nearest ancestor that has one."""
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return 1


class Problem(ScenarioError, ValueError):
    """A rule broken below the model being validated; `path` is relative to that model."""

    def __init__(self, path: FieldPath, message: str) -> None:
        super().__init__(message)
        self.path = path


def in_range(lo: int, hi: int | None, what: str) -> AfterValidator:
    """An int check whose message says the allowed range and why."""

    def check(value: int) -> int:
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"{what} must be {bound}, got {value}")
        return value

    return AfterValidator(check)


def _rma_size(value: int) -> int:
    if value not in RMA_SIZES:
        allowed = ", ".join(format_size(s) for s in RMA_SIZES)
        raise ValueError(f"invalid RMA size {format_size(value)}; the 970 allows {allowed}")
    return value


def matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    """A string check: the whole value matches `pattern`."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{what} {clip(repr(value))} must match {pattern.pattern}")
        return value

    return AfterValidator(check)


def devtree_text(what: str) -> AfterValidator:
    """A string check: text the toolstack hands a guest in its devtree (or a console ring)
    is ASCII without NUL, as a devtree string property is (NUL ends it)."""

    def check(value: str) -> str:
        bad = next((i for i, ch in enumerate(value) if ch == "\0" or not ch.isascii()), None)
        if bad is not None:
            raise ValueError(
                f"{what} must be ASCII without NUL characters (it travels in the guest's "
                f"devtree or console ring): {value[bad]!r} at character {bad}"
            )
        return value

    return AfterValidator(check)


def positive_duration(what: str) -> AfterValidator:
    """A duration check: longer than zero."""

    def check(value: int) -> int:
        if value <= 0:
            raise ValueError(f"{what} must be longer than 0ns")
        return value

    return AfterValidator(check)


def non_empty(what: str) -> AfterValidator:
    """A string check: not empty."""

    def check(value: str) -> str:
        if not value:
            raise ValueError(f"{what} is empty")
        return value

    return AfterValidator(check)


def _traceable(value: int) -> int:
    """A duration the trace can hold: its timestamps are int64 nanoseconds."""
    if value > MAX_DURATION:
        raise ValueError(
            f"duration {value}ns is longer than the trace's int64 nanoseconds can hold "
            f"({MAX_DURATION}ns, about 292 years)"
        )
    return value


Size = Annotated[StrictInt, BeforeValidator(parse_size)]
Duration = Annotated[StrictInt, BeforeValidator(parse_duration), AfterValidator(_traceable)]

#: `start: timeline`: a guest built by a timeline `create` action, not at a set time.
START_BY_TIMELINE: Final = "timeline"


def _start_time(value: object) -> object:
    """A duration, or `timeline`."""
    if value == START_BY_TIMELINE:
        return value
    try:
        return _traceable(parse_duration(value))  # type: ignore[arg-type]
    except ValueError as err:
        raise ValueError(f"{err} (or `timeline`: built by a timeline `create` action)") from None


#: When a guest is built: a duration, or `timeline` (by a `create` action).
StartTime = Annotated[StrictInt | Literal["timeline"], BeforeValidator(_start_time)]
Frequency = Annotated[StrictInt, BeforeValidator(parse_frequency)]
Bandwidth = Annotated[StrictInt, BeforeValidator(parse_bandwidth)]
RmaSize = Annotated[StrictInt, BeforeValidator(parse_size), AfterValidator(_rma_size)]
VcpuCount = Annotated[StrictInt, in_range(1, MAX_VCPUS, "vcpus")]
VcpuIndex = Annotated[StrictInt, in_range(0, MAX_VCPUS - 1, "vcpu")]
Weight = Annotated[StrictInt, in_range(1, 65535, "weight")]


def _cpu_list(cpus: tuple[int, ...]) -> tuple[int, ...]:
    if not cpus:
        raise ValueError("affinity lists no CPU; leave it out to allow every CPU")
    seen: set[int] = set()  # not `cpus[:k]`: a list of 10^5 CPUs must not take minutes
    for k, cpu in enumerate(cpus):
        if cpu < 0:
            raise Problem((k,), f"cpu {cpu} is negative")
        if cpu in seen:
            raise Problem((k,), f"cpu {cpu} is listed twice")
        seen.add(cpu)
    return cpus


#: Physical CPUs a VCPU may run on (whether the machine has them is a cross-field rule).
CpuList = Annotated[tuple[StrictInt, ...], AfterValidator(_cpu_list)]
Cap = Annotated[StrictInt, in_range(0, None, "cap")]


class ScenarioModel(BaseModel):
    """Every scenario model: unknown keys are errors, and a validated model is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_duration(metadata: list[object]) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in metadata)


def reloadable_dump(model: BaseModel) -> dict[str, object]:
    """`model` as JSON data that validates again: `model_dump(mode="json")` writes a
    duration as bare nanoseconds, which the language refuses (a unit is required), so
    each non-zero duration is written `<n>ns` (a save file's configuration)."""
    out = model.model_dump(mode="json")
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if _is_duration(info.metadata) and isinstance(value, int) and value:
            out[name] = f"{value}ns"
        elif isinstance(value, BaseModel):
            out[name] = reloadable_dump(value)
        elif isinstance(value, tuple | list):
            out[name] = [
                reloadable_dump(v) if isinstance(v, BaseModel) else o
                for v, o in zip(value, out[name], strict=True)
            ]
    return out
