"""The line-precise YAML loader: scenario text in, a validated `Scenario` or one line out.

Errors are `ScenarioError`s with one line, `"<file>:<line>: <field.path>: <reason>"`. The
line comes from the YAML node graph (`yaml.compose`), mapped by path; when pydantic finds
several problems, the earliest line in the file is reported. The reason is said in the
scenario's words (the allowed keys, the allowed kinds, the value that was found), not
pydantic's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ValidationError

from framework.errors import ScenarioError
from framework.scenario.devices import DEVICE_MODELS
from framework.scenario.domains import Dom0Spec, DomainSpec
from framework.scenario.fields import (
    MAX_ECHO,
    FieldPath,
    Problem,
    ScenarioModel,
    clip,
    dotted,
    nearest_line,
)
from framework.scenario.machine import DiskSpec, LinkSpec, MachineSpec
from framework.scenario.restore_domains import expand_restores, restore_origin
from framework.scenario.timeline import TIMELINE_MODELS
from framework.scenario.top_level import Scenario
from framework.scenario.workloads import WORKLOAD_MODELS
from framework.scenario.xm_config import XmConfig, config_origin, expand_configs

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "load_scenario", "parse_scenario"]

#: Largest scenario file read: real scenarios are a few KiB; reading stops one byte past
#: this, so `/dev/zero` or a huge file is refused at once instead of filling memory.
MAX_FILE_BYTES: Final = 1 << 20
#: Deepest nesting of mappings and lists: a scenario needs about 5 levels; checked on the
#: event stream, before PyYAML's recursive composer could exhaust the Python stack.
MAX_DEPTH: Final = 64
#: Longest number written as a YAML integer: 2^64 has 20 digits, and a longer literal
#: could only be refused later, after Python had built (or failed to build) a huge int.
MAX_NUMBER_CHARS: Final = 40
_INT_TAG: Final = "tag:yaml.org,2002:int"
_TOO_DEEP: Final = f"(top level): mappings and lists nest deeper than {MAX_DEPTH} levels"


_RESOLVER: Final = yaml.resolver.Resolver()
#: libyaml's parser when PyYAML has it (it nearly always does): the pure-Python one takes
#: tens of seconds over a 1 MiB file of short items, which the size limit lets through.
_LOADER: Final[type[yaml.SafeLoader]] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_shape(text: str, source: str) -> None:
    """Refuse anchors, aliases, nesting deeper than MAX_DEPTH and integers longer than
    MAX_NUMBER_CHARS, from the parser's events.

    Aliases let a few lines expand into billions of nodes (the "billion laughs"), which
    validation and error reporting would walk; no scenario needs them, so none is allowed.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ScenarioError(
                f"{source}:{line}: (top level): YAML anchors and aliases (&name, *name) "
                "are not allowed in a scenario"
            )
        if (
            isinstance(event, yaml.ScalarEvent)
            and event.implicit[0]
            and len(event.value) > MAX_NUMBER_CHARS
            and _RESOLVER.resolve(yaml.ScalarNode, event.value, (True, False)) == _INT_TAG
        ):
            raise ScenarioError(
                f"{source}:{line}: (top level): a number {len(event.value)} characters long; "
                f"numbers in a scenario have at most {MAX_NUMBER_CHARS}"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ScenarioError(f"{source}:{line}: {_TOO_DEEP}")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _lines(node: yaml.Node, source: str) -> dict[FieldPath, int]:
    """Map each path in the YAML node graph to its 1-based line (the key's line)."""
    lines: dict[FieldPath, int] = {(): node.start_mark.line + 1}

    def walk(n: yaml.Node, path: FieldPath) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, value_node in n.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
                if key in seen:
                    raise ScenarioError(
                        f"{source}:{key_node.start_mark.line + 1}: "
                        f"{clip(dotted((*path, key)))}: duplicate key"
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


def _strip_tags(loc: tuple[int | str, ...], data: object) -> FieldPath:
    """Drop the discriminator tags pydantic puts in locs ('workloads', 0, 'timer', 'hz')."""
    out: list[str | int] = []
    cur: object = data
    for el in loc:
        if isinstance(cur, dict) and el not in cur and el in (cur.get("kind"), cur.get("action")):
            continue
        out.append(el)
        if isinstance(cur, dict):
            cur = cur.get(el)
        elif isinstance(cur, list) and isinstance(el, int) and 0 <= el < len(cur):
            cur = cur[el]
        else:
            cur = None
    return tuple(out)


# The lists whose items are discriminated unions: (what an item is, its tag key, the models).
_UNIONS: dict[str, tuple[str, str, dict[str, type[ScenarioModel]]]] = {
    "workloads": ("workload", "kind", WORKLOAD_MODELS),
    "devices": ("device", "kind", DEVICE_MODELS),
    "timeline": ("timeline", "action", TIMELINE_MODELS),
}


def _union_at(path: FieldPath) -> tuple[str, str, dict[str, type[ScenarioModel]]] | None:
    """The union an item at `path` (`..., list name, index`) belongs to, if any."""
    if len(path) >= 2 and isinstance(path[-1], int) and isinstance(path[-2], str):
        return _UNIONS.get(path[-2])
    return None


def _model_at(path: FieldPath, data: object) -> type[BaseModel] | None:
    """The model that validates the mapping at `path` (for listing its allowed keys)."""
    shape = tuple("*" if isinstance(el, int) else el for el in path)
    fixed: dict[tuple[str, ...], type[BaseModel]] = {
        (): Scenario,
        ("machine",): MachineSpec,
        ("machine", "disk"): DiskSpec,
        ("machine", "link"): LinkSpec,
        ("dom0",): Dom0Spec,
        ("domains", "*"): DomainSpec,
    }
    if shape in fixed:
        return fixed[shape]
    union = _union_at(path)
    if union is not None:
        _, tag, models = union
        node: object = data
        for el in path:
            node = node[el] if isinstance(node, (dict, list)) else None  # type: ignore[index]
        value = node.get(tag) if isinstance(node, dict) else None
        return models.get(value) if isinstance(value, str) else None
    return None


def _describe(value: object) -> str:
    return f"{type(value).__name__} {clip(repr(value))}"


def _reason(err: Any, path: FieldPath, data: object) -> tuple[FieldPath, str]:
    """Turn one pydantic error into (path, human reason)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind in ("value_error", "assertion_error"):
        exc = ctx.get("error")
        if isinstance(exc, Problem):
            return (*path, *exc.path), str(exc)
        return path, str(exc) if exc is not None else err["msg"]
    if kind == "missing":
        return path, "required key is missing"
    if kind == "extra_forbidden":
        model = _model_at(path[:-1], data)
        allowed = f"; expected one of {', '.join(model.model_fields)}" if model else ""
        return path, f"unknown key {path[-1]!r}{allowed}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        noun, tag, models = _union_at(path) or _UNIONS["workloads"]
        expected = ", ".join(models)
        if kind == "union_tag_not_found":
            return path, f"{noun} item lacks its {tag!r} key; expected one of {expected}"
        return (*path, tag), f"unknown {noun} {tag} {ctx.get('tag')!r}; expected one of {expected}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return path, f"expected a mapping, got {_describe(value)}"
    if kind in ("tuple_type", "list_type"):
        return path, f"expected a list, got {_describe(value)}"
    if kind == "int_type":
        return path, f"expected an integer, got {_describe(value)}"
    if kind == "string_type":
        return path, f"expected a string, got {_describe(value)}"
    if kind == "bool_type":
        return path, f"expected true or false, got {_describe(value)}"
    if kind == "literal_error":
        return path, f"expected {ctx.get('expected')}, got {clip(repr(value))}"
    return path, f"{err['msg']} (got {clip(repr(value))})"


def _clip_line(reason: str) -> str:
    """A reason whose echoed value a validator did not clip is cut, keeping its start.

    Reasons are short sentences; only a repeated input value makes one long.
    """
    return reason if len(reason) <= 2 * MAX_ECHO else clip(reason)


def _expected_refusal(data: object) -> str | None:
    """The regex of a negative test's `expect: {refused: <regex>}`, if the file has one."""
    if isinstance(data, dict):
        expect = data.get("expect")
        if isinstance(expect, dict) and isinstance(expect.get("refused"), str):
            return str(expect["refused"])
    return None


def parse_scenario(
    text: str, source: str = "<string>", *, base_dir: str | Path | None = None
) -> Scenario:
    """Validate scenario YAML text; raises ScenarioError with one line naming file and line.

    Relative image paths resolve against `base_dir` (default: the current directory).
    Text over MAX_FILE_BYTES, anchors and aliases, and nesting deeper than MAX_DEPTH are
    refused before anything is built from it.
    """
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(
            f"{source}:1: (top level): the scenario is larger than {MAX_FILE_BYTES} bytes"
        )
    try:
        _check_shape(text, source)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()  # type: ignore[no-untyped-call]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        if "nesting depth" in what:  # libyaml's own limit, met while scanning ahead
            raise ScenarioError(f"{source}:{line}: {_TOO_DEEP}") from None
        raise ScenarioError(f"{source}:{line}: YAML syntax error: {clip(what)}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}:1: YAML error: {clip(str(exc))}") from None
    if node is None:
        raise ScenarioError(f"{source}:1: (top level): the scenario is empty")
    lines = _lines(node, source)
    root = Path(base_dir) if base_dir is not None else Path.cwd()
    configs: dict[int, XmConfig] = {}
    restores: dict[int, frozenset[str]] = {}
    try:
        data = expand_configs(data, root, configs)
        data = expand_restores(data, root, restores)
        scenario = Scenario.model_validate(data, context={"base_dir": root})
    except ScenarioError as exc:
        refused = exc
        if isinstance(exc, Problem):
            line = nearest_line(lines, exc.path)
            refused = ScenarioError(f"{source}:{line}: {clip(dotted(exc.path))}: {exc}")
        refused.expected_refusal = _expected_refusal(data)
        raise refused from None
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            path, reason = _reason(err, _strip_tags(err["loc"], data), data)
            found.append((nearest_line(lines, path), path, reason))
        line, path, reason = min(found, key=lambda f: f[0])
        where = f"{source}:{line}: {clip(dotted(path))}"
        saved = restore_origin(restores, path)
        if saved is not None:
            line = nearest_line(lines, saved)
            where = f"{source}:{line}: {dotted(saved)}: the saved {clip(dotted(path[2:]))}"
        origin = config_origin(configs, path)
        if origin is not None:
            where = f"{origin[0]}:{origin[1]}: {clip(origin[2])}"
        refused = ScenarioError(f"{where}: {_clip_line(reason)}")
        refused.expected_refusal = _expected_refusal(data)
        raise refused from None
    scenario.loaded_from(source, hashlib.sha256(text.encode("utf-8")).hexdigest(), lines)
    scenario.read_configs(tuple(configs.values()))
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; its `sha256` is that of the file's bytes."""
    source = clip(str(path))
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read scenario: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(
            f"{source}:1: (top level): the scenario is larger than {MAX_FILE_BYTES} bytes"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{source}:{line}: (top level): the file is not UTF-8") from None
    scenario = parse_scenario(text, source, base_dir=Path(path).parent)
    scenario.loaded_from(source, hashlib.sha256(raw).hexdigest(), scenario.lines)
    return scenario
