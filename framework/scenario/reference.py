"""The scenario reference: Markdown tables of every key, generated from the models.

README.md carries the output between its `scenario-reference:begin/end` markers;
`python -m framework.scenario` prints it, and a test checks the README agrees.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from framework.scenario.devices import DEVICE_MODELS
from framework.scenario.domains import Dom0Spec, DomainSpec
from framework.scenario.expect import Expectation
from framework.scenario.grants import GrantSpec
from framework.scenario.machine import DiskSpec, JitterSpec, LinkSpec, MachineSpec
from framework.scenario.metrics import METRICS, SELECTORS
from framework.scenario.timeline import TIMELINE_MODELS
from framework.scenario.top_level import Scenario
from framework.scenario.workloads import WORKLOAD_MODELS
from framework.units import (
    format_bandwidth,
    format_duration,
    format_frequency,
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_frequency,
    parse_size,
)

__all__ = ["reference_markdown"]

# How a default is shown: in the unit its field is written in.
_FORMATTERS: dict[Callable[..., int], Callable[[int], str]] = {
    parse_size: format_size,
    parse_duration: format_duration,
    parse_frequency: format_frequency,
    parse_bandwidth: format_bandwidth,
}


def _shown_default(field: FieldInfo) -> str:
    """A field's default as the reference shows it, in the units the file would use."""
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
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def reference_markdown() -> str:
    """The scenario key reference as Markdown tables, generated from the models."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("top level", Scenario),
        ("`machine`", MachineSpec),
        ("`machine.disk`", DiskSpec),
        ("`machine.link`", LinkSpec),
        ("`machine.jitter`", JitterSpec),
        ("`dom0`", Dom0Spec),
        ("`domains[]`", DomainSpec),
        *((f"device `kind: {k}`", m) for k, m in DEVICE_MODELS.items()),
        *((f"workload `kind: {k}`", m) for k, m in WORKLOAD_MODELS.items()),
        ("`grants[]`", GrantSpec),
        *((f"`timeline[]` `action: {k}`", m) for k, m in TIMELINE_MODELS.items()),
        ("`expect[]`", Expectation),
    ]
    out: list[str] = []
    for title, model in sections:
        doc = " ".join((model.__doc__ or "").split())
        out += [f"**{title}** — {doc}", ""]
        out += ["| key | default | meaning |", "|---|---|---|"]
        for key, field in model.model_fields.items():
            out.append(f"| `{key}` | {_shown_default(field)} | {field.description or ''} |")
        out.append("")
    out += [
        (
            "**`expect[]` metrics** — what `metric:` may name; `selectors` are the keys it takes "
            "(**bold**: required)."
        ),
        "",
        "| metric | value | selectors | meaning |",
        "|---|---|---|---|",
    ]
    for m in METRICS.values():
        keys = ", ".join(
            f"**{k}**" if k in m.required else k for k in SELECTORS if k in m.selectors
        )
        out.append(f"| `{m.name}` | {m.quantity} | {keys or '—'} | {m.doc} |")
    out.append("")
    return "\n".join(out)
