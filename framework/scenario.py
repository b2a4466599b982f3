"""The scenario file: its schema (pydantic models) and a loader with line-precise errors.

A scenario names a machine, dom0 and guest domains with their workloads. Sizes, durations
and frequencies are written with units and parsed into integers (bytes, ns, Hz), so the
rest of the simulator only sees integers. Every rule a 970 or Xen imposes (RMA sizes, 16 MiB
extents, 32 VCPUs, memory that fits the machine) is checked here, before anything runs.

Errors are `ScenarioError`s with one line, `"<file>:<line>: <field.path>: <reason>"`; the
line comes from the YAML node graph (`yaml.compose`), mapped by path.

Where the hash lives: `load_scenario`/`parse_scenario` return a plain `Scenario` and set two
private attributes on it; read them through `Scenario.sha256` (hex SHA-256 of the raw file
bytes) and `Scenario.source` (the path or name it was read from). A `Scenario` built
directly with `Scenario.model_validate` hashes its canonical JSON instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo

from framework.errors import ScenarioError
from framework.hw970.mmu import RMA_SIZES
from framework.units import (
    format_duration,
    format_frequency,
    format_size,
    parse_duration,
    parse_frequency,
    parse_size,
)

__all__ = [
    "DOM0_NAMES",
    "EXTENT_SIZE",
    "MAX_CPUS",
    "MAX_VCPUS",
    "RMA_SIZES",
    "XEN_RESERVED",
    "ComputeWorkload",
    "Dom0Spec",
    "DomainSpec",
    "MachineSpec",
    "PingpongWorkload",
    "Scenario",
    "TimerWorkload",
    "Workload",
    "is_dom0_name",
    "load_scenario",
    "parse_scenario",
    "reference_markdown",
]

MiB = 1 << 20
GiB = 1 << 30

# Memory beyond the RMA comes in 16 MiB extents: the guest maps it with 16 MiB pages.
EXTENT_SIZE = 16 * MiB
# Xen keeps the bottom 64 MiB of machine memory for itself.
XEN_RESERVED = 64 * MiB
# MAX_VIRT_CPUS in the public Xen headers.
MAX_VCPUS = 32
# The largest 970 boxes Xen/PPC ran on (JS21, Maple) had four CPUs.
MAX_CPUS = 4
# dom0 must stay below the 2-4 GiB I/O hole.
IO_HOLE_START = 2 * GiB
DOM0_NAMES = ("dom0", "Domain-0")

_SCENARIO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DOMAIN_NAME = re.compile(r"[a-z0-9_-]+")


def is_dom0_name(name: str) -> bool:
    """True for the names a scenario may use for dom0 ('dom0' or 'Domain-0')."""
    return name in DOM0_NAMES


class _Problem(ValueError):
    """A rule broken below the model being validated; `path` is relative to that model."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _in_range(lo: int, hi: int | None, what: str) -> AfterValidator:
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


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{what} {value!r} must match {pattern.pattern}")
        return value

    return AfterValidator(check)


Size = Annotated[StrictInt, BeforeValidator(parse_size)]
Duration = Annotated[StrictInt, BeforeValidator(parse_duration)]
Frequency = Annotated[StrictInt, BeforeValidator(parse_frequency)]
RmaSize = Annotated[StrictInt, BeforeValidator(parse_size), AfterValidator(_rma_size)]
VcpuCount = Annotated[StrictInt, _in_range(1, MAX_VCPUS, "vcpus")]
VcpuIndex = Annotated[StrictInt, _in_range(0, MAX_VCPUS - 1, "vcpu")]
Weight = Annotated[StrictInt, _in_range(1, 65535, "weight")]
Cap = Annotated[StrictInt, _in_range(0, None, "cap")]

_FORMATTERS: dict[Callable[..., int], Callable[[int], str]] = {
    parse_size: format_size,
    parse_duration: format_duration,
    parse_frequency: format_frequency,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComputeWorkload(_Model):
    """A real PPC64 loop running on one VCPU: it burns its whole share of the CPU."""

    kind: Literal["compute"] = Field("compute", description="`compute`")
    vcpu: VcpuIndex = Field(0, description="VCPU that runs the loop")


class TimerWorkload(_Model):
    """Periodic ticks: set_timer_op, then block until VIRQ_TIMER arrives, repeatedly."""

    kind: Literal["timer"] = Field("timer", description="`timer`")
    hz: Annotated[StrictInt, _in_range(1, None, "hz")] = Field(
        100, description="tick rate (the Linux/PPC guest tick is 100 Hz)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that takes the ticks")


class PingpongWorkload(_Model):
    """Events bounced over an interdomain channel; one side pings, the other answers."""

    kind: Literal["pingpong"] = Field("pingpong", description="`pingpong`")
    peer: StrictStr = Field(description="the other guest domain's name")
    role: Literal["ping", "pong"] = Field(
        description="`ping` starts each round trip; `pong` only answers"
    )
    rounds: Annotated[StrictInt, _in_range(0, None, "rounds")] = Field(
        0, description="ping side: stop after this many round trips (0 = forever)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU bound to the channel")


Workload = Annotated[
    ComputeWorkload | TimerWorkload | PingpongWorkload, Field(discriminator="kind")
]
WORKLOAD_MODELS: dict[str, type[_Model]] = {
    "compute": ComputeWorkload,
    "timer": TimerWorkload,
    "pingpong": PingpongWorkload,
}


def _check_domain(
    memory: int, rma: int, vcpus: int, cap: int, workloads: tuple[Workload, ...]
) -> None:
    """Rules shared by dom0 and guests; raises _Problem naming the field."""
    if memory < rma:
        raise _Problem(
            ("memory",),
            f"memory {format_size(memory)} is smaller than the RMA ({format_size(rma)}): "
            "a domain smaller than its RMA is refused",
        )
    if (memory - rma) % EXTENT_SIZE:
        raise _Problem(
            ("memory",),
            f"memory beyond the RMA ({format_size(memory - rma)}) is not a multiple of "
            f"{format_size(EXTENT_SIZE)} (it is allocated in 16MiB extents)",
        )
    if cap > 100 * vcpus:
        raise _Problem(("cap",), f"cap {cap}% exceeds 100% x {vcpus} VCPUs = {100 * vcpus}%")
    for j, w in enumerate(workloads):
        if w.vcpu >= vcpus:
            raise _Problem(
                ("workloads", j, "vcpu"),
                f"vcpu {w.vcpu} out of range; the domain has {vcpus} VCPUs (0..{vcpus - 1})",
            )


class MachineSpec(_Model):
    """The physical 970 box (defaults: a JS20/JS21-like 2-way 970FX at 1.8 GHz)."""

    cpus: Annotated[StrictInt, _in_range(1, MAX_CPUS, "cpus")] = Field(
        2, description="physical CPUs (970 boxes had up to 4)"
    )
    memory: Size = Field(
        2 * GiB, description="machine memory; a multiple of 16MiB, at least 256MiB"
    )
    clock: Frequency = Field(1_800_000_000, description="core clock")
    timebase: Frequency = Field(
        33_333_333, description="timebase frequency (assumed 33.333333MHz, as on JS20/JS21)"
    )

    @model_validator(mode="after")
    def _memory_shape(self) -> MachineSpec:
        if self.memory < 256 * MiB:
            raise _Problem(
                ("memory",), f"machine memory {format_size(self.memory)} is below 256MiB"
            )
        if self.memory % EXTENT_SIZE:
            raise _Problem(
                ("memory",),
                f"machine memory {format_size(self.memory)} is not a multiple of 16MiB",
            )
        if self.timebase > self.clock:
            raise _Problem(
                ("timebase",),
                f"timebase {format_frequency(self.timebase)} is faster than the core clock "
                f"{format_frequency(self.clock)}",
            )
        return self


class Dom0Spec(_Model):
    """The privileged domain Xen starts first."""

    memory: Size = Field(256 * MiB, description="dom0 memory, RMA included")
    vcpus: VcpuCount = Field(
        1,
        description="dom0 VCPUs",
        json_schema_extra={"shown_default": "`machine.cpus`"},
    )
    rma: RmaSize = Field(64 * MiB, description="Real Mode Area size")
    weight: Weight = Field(256, description="credit scheduler weight")
    cap: Cap = Field(0, description="credit cap in percent of one CPU (0 = none)")
    workloads: tuple[Workload, ...] = Field((), description="dom0's own workloads")

    @model_validator(mode="after")
    def _rules(self) -> Dom0Spec:
        _check_domain(self.memory, self.rma, self.vcpus, self.cap, self.workloads)
        return self


def _affinity(cpus: tuple[int, ...]) -> tuple[int, ...]:
    if not cpus:
        raise ValueError("affinity lists no CPU; leave it out to allow every CPU")
    for k, cpu in enumerate(cpus):
        if cpu < 0:
            raise _Problem((k,), f"cpu {cpu} is negative")
        if cpu in cpus[:k]:
            raise _Problem((k,), f"cpu {cpu} is listed twice")
    return cpus


class DomainSpec(_Model):
    """A guest domain (domU)."""

    name: Annotated[StrictStr, _matching(_DOMAIN_NAME, "domain name")] = Field(
        description="unique name, `[a-z0-9_-]+`, not `dom0`"
    )
    memory: Size = Field(description="memory, RMA included")
    vcpus: VcpuCount = Field(1, description="VCPUs, 1..32")
    rma: RmaSize = Field(
        64 * MiB, description="Real Mode Area: 64MiB, 128MiB, 256MiB, 1GiB, 16GiB or 256GiB"
    )
    weight: Weight = Field(256, description="credit scheduler weight, 1..65535")
    cap: Cap = Field(0, description="credit cap, 0..100 x vcpus percent (0 = none)")
    affinity: Annotated[tuple[StrictInt, ...], AfterValidator(_affinity)] | None = Field(
        None, description="physical CPUs every VCPU may run on (default: all)"
    )
    start: Duration = Field(0, description="simulated time at which the domain is created")
    workloads: tuple[Workload, ...] = Field((), description="what the guest runs (idle if empty)")

    @model_validator(mode="after")
    def _rules(self) -> DomainSpec:
        if is_dom0_name(self.name):
            raise _Problem(("name",), f"the name {self.name!r} is reserved for dom0")
        _check_domain(self.memory, self.rma, self.vcpus, self.cap, self.workloads)
        return self


class Scenario(_Model):
    """A whole scenario file, with every size, duration and frequency as an integer."""

    name: Annotated[StrictStr, _matching(_SCENARIO_NAME, "scenario name")] = Field(
        description="scenario name; also the default run directory `runs/<name>`"
    )
    seed: Annotated[StrictInt, _in_range(0, None, "seed")] = Field(
        0, description="seed of the simulation's only random generator"
    )
    duration: Duration = Field(description="simulated time to run")
    machine: MachineSpec = Field(default_factory=MachineSpec, description="see `machine`")
    dom0: Dom0Spec = Field(default_factory=Dom0Spec, description="see `dom0`")
    domains: tuple[DomainSpec, ...] = Field((), description="guest domains, see `domains[]`")

    _sha256: str | None = PrivateAttr(default=None)
    _source: str = PrivateAttr(default="<model>")

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file bytes it was loaded from (else of its canonical JSON)."""
        if self._sha256 is None:
            return hashlib.sha256(self.model_dump_json().encode()).hexdigest()
        return self._sha256

    @property
    def source(self) -> str:
        """The path (or name) the scenario was read from."""
        return self._source

    @property
    def domain_count(self) -> int:
        """Domains including dom0."""
        return 1 + len(self.domains)

    @property
    def vcpu_count(self) -> int:
        """VCPUs of all domains including dom0."""
        return self.dom0.vcpus + sum(d.vcpus for d in self.domains)

    @model_validator(mode="before")
    @classmethod
    def _dom0_vcpus_default(cls, data: Any) -> Any:
        """dom0 gets one VCPU per physical CPU unless the file says otherwise."""
        if not isinstance(data, dict):
            return data
        machine = data.get("machine", {})
        cpus = MachineSpec.model_fields["cpus"].default
        if isinstance(machine, dict):
            cpus = machine.get("cpus", cpus)
        dom0 = data.get("dom0", {})
        if isinstance(cpus, int) and isinstance(dom0, dict) and "vcpus" not in dom0:
            data = {**data, "dom0": {**dom0, "vcpus": cpus}}
        return data

    @model_validator(mode="after")
    def _rules(self) -> Scenario:
        self._check_names()
        self._check_fit()
        self._check_affinity()
        self._check_pingpong()
        return self

    def _check_names(self) -> None:
        seen: dict[str, int] = {}
        for i, d in enumerate(self.domains):
            if d.name in seen:
                raise _Problem(
                    ("domains", i, "name"),
                    f"duplicate domain name {d.name!r} (also domains[{seen[d.name]}])",
                )
            seen[d.name] = i

    def _check_fit(self) -> None:
        dom0_top = XEN_RESERVED + self.dom0.memory
        if dom0_top > IO_HOLE_START:
            raise _Problem(
                ("dom0", "memory"),
                f"dom0 memory {format_size(self.dom0.memory)} + 64MiB for Xen crosses the "
                "2GiB I/O hole; dom0 must stay below 2GiB",
            )
        used = 0
        parts: list[tuple[tuple[str | int, ...], int]] = [
            (("dom0", "memory"), XEN_RESERVED + self.dom0.memory)
        ]
        parts += [(("domains", i, "memory"), d.memory) for i, d in enumerate(self.domains)]
        for path, size in parts:
            used += size
            if used > self.machine.memory:
                raise _Problem(
                    path,
                    f"does not fit: 64MiB (Xen) + dom0 + domains so far = {format_size(used)}, "
                    f"more than machine memory {format_size(self.machine.memory)}",
                )

    def _check_affinity(self) -> None:
        cpus = self.machine.cpus
        for i, d in enumerate(self.domains):
            for k, cpu in enumerate(d.affinity or ()):
                if cpu >= cpus:
                    raise _Problem(
                        ("domains", i, "affinity", k),
                        f"cpu {cpu} out of range; the machine has {cpus} CPUs (0..{cpus - 1})",
                    )

    def _participants(self) -> Iterator[tuple[tuple[str | int, ...], str, tuple[Workload, ...]]]:
        yield ("dom0",), DOM0_NAMES[0], self.dom0.workloads
        for i, d in enumerate(self.domains):
            yield ("domains", i), d.name, d.workloads

    def _check_pingpong(self) -> None:
        """Every pingpong pair is exactly one ping and one pong naming each other."""
        names = {name: loads for _, name, loads in self._participants()}

        def canon(name: str) -> str:
            return DOM0_NAMES[0] if is_dom0_name(name) else name

        def pairs(loads: tuple[Workload, ...], peer: str) -> list[PingpongWorkload]:
            return [w for w in loads if isinstance(w, PingpongWorkload) and canon(w.peer) == peer]

        for prefix, me, loads in self._participants():
            for j, w in enumerate(loads):
                if not isinstance(w, PingpongWorkload):
                    continue
                at = (*prefix, "workloads", j)
                peer = canon(w.peer)
                if is_dom0_name(w.peer) or is_dom0_name(me):
                    raise _Problem(
                        (*at, "peer"),
                        "pingpong with dom0 is not modelled yet; pair two guest domains",
                    )
                if sum(isinstance(x, PingpongWorkload) for x in loads) > 1:
                    raise _Problem(
                        (*at, "kind"), "one pingpong workload per domain (its kernel binds one)"
                    )
                if peer not in names:
                    raise _Problem(
                        (*at, "peer"),
                        f"unknown peer {w.peer!r}; expected another domain's name or dom0",
                    )
                if peer == me:
                    raise _Problem((*at, "peer"), "a domain cannot be its own pingpong peer")
                if pairs(loads, peer)[0] is not w:
                    raise _Problem(
                        (*at, "peer"),
                        f"second pingpong workload with peer {w.peer!r}; "
                        "exactly one ping and one pong per pair",
                    )
                theirs = pairs(names[peer], me)
                if len(theirs) != 1:
                    raise _Problem(
                        (*at, "peer"),
                        f"peer {w.peer!r} has {len(theirs)} pingpong workloads with peer "
                        f"{me!r}; exactly one ping and one pong per pair",
                    )
                if theirs[0].role == w.role:
                    raise _Problem(
                        (*at, "role"),
                        f"both {me!r} and {w.peer!r} are {w.role!r}; "
                        "exactly one ping and one pong per pair",
                    )


# ---------------------------------------------------------------------------- loading

_Path = tuple[str | int, ...]


def _lines(node: yaml.Node, source: str) -> dict[_Path, int]:
    """Map each path in the YAML node graph to its 1-based line (the key's line)."""
    lines: dict[_Path, int] = {(): node.start_mark.line + 1}

    def walk(n: yaml.Node, path: _Path) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, value_node in n.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
                if key in seen:
                    raise ScenarioError(
                        f"{source}:{key_node.start_mark.line + 1}: {_dotted((*path, key))}: "
                        "duplicate key"
                    )
                seen.add(key)
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    walk(node, ())
    return lines


def _dotted(path: _Path) -> str:
    """('domains', 0, 'rma') -> 'domains[0].rma'."""
    out = ""
    for el in path:
        out += f"[{el}]" if isinstance(el, int) else (f".{el}" if out else str(el))
    return out or "(top level)"


def _strip_tags(loc: tuple[int | str, ...], data: object) -> _Path:
    """Drop the discriminator tags pydantic puts in locs ('workloads', 0, 'timer', 'hz')."""
    out: list[str | int] = []
    cur: object = data
    for el in loc:
        if isinstance(cur, dict) and el not in cur and cur.get("kind") == el:
            continue
        out.append(el)
        if isinstance(cur, dict):
            cur = cur.get(el)
        elif isinstance(cur, list) and isinstance(el, int) and 0 <= el < len(cur):
            cur = cur[el]
        else:
            cur = None
    return tuple(out)


def _model_at(path: _Path, data: object) -> type[BaseModel] | None:
    """The model that validates the mapping at `path` (for listing its allowed keys)."""
    shape = tuple("*" if isinstance(el, int) else el for el in path)
    fixed: dict[tuple[str, ...], type[BaseModel]] = {
        (): Scenario,
        ("machine",): MachineSpec,
        ("dom0",): Dom0Spec,
        ("domains", "*"): DomainSpec,
    }
    if shape in fixed:
        return fixed[shape]
    if shape in (("domains", "*", "workloads", "*"), ("dom0", "workloads", "*")):
        node: object = data
        for el in path:
            node = node[el] if isinstance(node, (dict, list)) else None  # type: ignore[index]
        kind = node.get("kind") if isinstance(node, dict) else None
        return WORKLOAD_MODELS.get(kind) if isinstance(kind, str) else None
    return None


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _reason(err: Any, path: _Path, data: object) -> tuple[_Path, str]:
    """Turn one pydantic error into (path, human reason)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind in ("value_error", "assertion_error"):
        exc = ctx.get("error")
        if isinstance(exc, _Problem):
            return (*path, *exc.path), str(exc)
        return path, str(exc) if exc is not None else err["msg"]
    if kind == "missing":
        return path, "required key is missing"
    if kind == "extra_forbidden":
        model = _model_at(path[:-1], data)
        allowed = f"; expected one of {', '.join(model.model_fields)}" if model else ""
        return path, f"unknown key {path[-1]!r}{allowed}"
    if kind == "union_tag_invalid":
        return (*path, "kind"), (
            f"unknown workload kind {ctx.get('tag')!r}; expected one of {', '.join(WORKLOAD_MODELS)}"
        )
    if kind == "union_tag_not_found":
        return path, f"workload needs a 'kind': one of {', '.join(WORKLOAD_MODELS)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return path, f"expected a mapping, got {_describe(value)}"
    if kind in ("tuple_type", "list_type"):
        return path, f"expected a list, got {_describe(value)}"
    if kind == "int_type":
        return path, f"expected an integer, got {_describe(value)}"
    if kind == "string_type":
        return path, f"expected a string, got {_describe(value)}"
    if kind == "literal_error":
        return path, f"expected {ctx.get('expected')}, got {value!r}"
    return path, f"{err['msg']} (got {value!r})"


def _nearest_line(lines: dict[_Path, int], path: _Path) -> int:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return 1


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Validate scenario YAML text; raises ScenarioError with one line naming file and line."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()  # type: ignore[no-untyped-call]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError(f"{source}:{line}: YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}:1: YAML error: {exc}") from None
    if node is None:
        raise ScenarioError(f"{source}:1: (top level): the scenario is empty")
    lines = _lines(node, source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            path, reason = _reason(err, _strip_tags(err["loc"], data), data)
            found.append((_nearest_line(lines, path), path, reason))
        line, path, reason = min(found, key=lambda f: f[0])
        raise ScenarioError(f"{source}:{line}: {_dotted(path)}: {reason}") from None
    scenario._sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    scenario._source = source
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; its `sha256` is that of the file's bytes."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read scenario: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{source}:{line}: (top level): the file is not UTF-8") from None
    scenario = parse_scenario(text, source)
    scenario._sha256 = hashlib.sha256(raw).hexdigest()
    return scenario


# ---------------------------------------------------------------------------- reference


def _shown_default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return "(section defaults)"
    value = field.default
    for meta in field.metadata:
        fmt = _FORMATTERS.get(getattr(meta, "func", None))  # type: ignore[arg-type]
        if fmt is not None and isinstance(value, int):
            return f"`{fmt(value)}`"
    if value == ():
        return "`[]`"
    if value is None:
        return "(none)"
    return f"`{value}`"


def reference_markdown() -> str:
    """The scenario key reference as Markdown tables, generated from the models above."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("top level", Scenario),
        ("`machine`", MachineSpec),
        ("`dom0`", Dom0Spec),
        ("`domains[]`", DomainSpec),
        *((f"workload `kind: {k}`", m) for k, m in WORKLOAD_MODELS.items()),
    ]
    out: list[str] = []
    for title, model in sections:
        out += [f"**{title}** — {(model.__doc__ or '').strip()}", ""]
        out += ["| key | default | meaning |", "|---|---|---|"]
        for key, field in model.model_fields.items():
            out.append(f"| `{key}` | {_shown_default(field)} | {field.description or ''} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_markdown(), end="")
