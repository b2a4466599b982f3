"""xm config files: a guest domain written as `xm create` reads it, turned into a domain
item of the scenario (the same `DomainSpec`, so every YAML rule applies to it).

An xm config file is Python assignments (`name = "web"`, `memory = 128`, `disk =
['file:/img,xvda,w']`); xm 3.1 runs it with `execfile`. xen970 never runs it: the text is
parsed with `ast` and only assignments of literal values to plain names are accepted
(strings, numbers, lists, tuples, True/False/None, a leading minus); names, calls,
attribute access, operators and every other statement are refused. Errors are one line,
`<file>:<line>: <field>: <reason>`, like the YAML loader's.

How the keys map (xm 3.1's `create.py` names them):

- `name`, `vcpus`: as in YAML; `memory` (MiB) -> `memory`; `cpu_weight` -> `weight`,
  `cpu_cap` -> `cap`.
- `cpus`: xm's CPU list, "0-3,^1" (ranges, single CPUs, `^n` to leave one out) or a list
  of integers -> `affinity`.
- `disk`: `'file:<image>,xvdX,<mode>'` -> a vbd on that image (a relative path is relative
  to the config file), mode `w` or `r`. `phy:` (a block device of dom0) and `tap:` are
  refused: xen970's disks are files; `w!` (a writable disk shared) is refused as Xen's
  block script refuses a file in use.
- `vif`: each `'bridge=xenbr0, mac=00:16:3e:..'` (an empty string for the defaults) -> a
  vif; `ip`, `script`, `vifname`, `rate`, `model`, `accel` are ignored with a warning.
- `builder` must be `linux` (the 970 has no HVM).
- `on_poweroff`, `on_reboot`, `on_crash`: what xend does once the guest shut down, as
  xm 3.1 spells it: `destroy`, `restart` or `preserve` -> the same YAML field.
  `rename-restart` (xend renames the old domain, keeps it, and builds a new one under the
  name) is refused: xend's renaming is not modelled.
- Ignored with a warning (they do not change what xen970 models): `kernel` and `ramdisk`
  (every guest boots xen970's own PPC64 kernel), `extra`, `root`, `bootloader`,
  `bootargs`, `bootentry`, `uuid`, `maxmem`, `restart`, `features`, `localtime`, `rtc_timeoffset`, `ip`, `gateway`, `netmask`,
  `hostname`, `interface`, `dhcp`, `nfs_server`, `nfs_root`, `serial`, `keymap`,
  `shadow_memory`, `access_control`, `on_xend_start`, `on_xend_stop`.
- Every other key xm knows is refused with the reason (HVM and x86 options, PCI and I/O
  port pass-through, vTPM, `cpu`, `vcpu_avail`, driver domains); a key xm does not know
  is refused as unknown.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from framework.errors import ScenarioError, XmConfigProblem
from framework.scenario.fields import FieldPath, Problem, clip

__all__ = [
    "MAX_CONFIG_BYTES",
    "XmConfig",
    "config_origin",
    "expand_configs",
    "parse_cpus",
    "read_xm_config",
]

#: Largest xm config file read (real ones are a few hundred bytes).
MAX_CONFIG_BYTES: Final = 64 << 10

#: Keys xm 3.1 knows that xen970 accepts and ignores, each with a warning.
IGNORED: Final = frozenset(
    {
        "kernel", "ramdisk", "extra", "root", "bootloader", "bootargs", "bootentry", "uuid",
        "maxmem", "restart", "features", "localtime", "rtc_timeoffset", "ip", "gateway",
        "netmask", "hostname", "interface", "dhcp", "nfs_server", "nfs_root", "serial",
        "keymap", "shadow_memory", "access_control", "on_xend_start", "on_xend_stop",
    }
)  # fmt: skip
#: Keys xm 3.1 knows that xen970 refuses, with the reason.
_HVM: Final = "an HVM option; the 970 has no HVM, only paravirtual guests"
REFUSED: Final[dict[str, str]] = {
    **{
        k: _HVM
        for k in (
            "device_model",
            "pae",
            "acpi",
            "apic",
            "boot",
            "fda",
            "fdb",
            "isa",
            "stdvga",
            "usb",
            "usbdevice",
            "soundhw",
            "vnc",
            "vncdisplay",
            "vnclisten",
            "vncunused",
            "vncconsole",
            "vncpasswd",
            "vncviewer",
            "sdl",
            "display",
            "xauthority",
            "nographic",
            "monitor",
            "vfb",
        )
    },
    "cpu": "pinning VCPU 0 alone is not modelled; use cpus for every VCPU",
    "vcpu_avail": "VCPUs offline at boot are not modelled; every VCPU starts online",
    "pci": "PCI pass-through is not modelled",
    "ioports": "I/O port pass-through is not modelled (and x86 only)",
    "irq": "interrupt pass-through is not modelled",
    "usbport": "USB pass-through is not modelled",
    "vtpm": "virtual TPMs are not modelled",
    "tpmif": "driver domains are not modelled; dom0 serves every device",
    "blkif": "driver domains are not modelled; dom0 serves every device",
    "netif": "driver domains are not modelled; dom0 serves every device",
    "nics": "deprecated in xm; list the interfaces in vif",
}
_EXITS: Final = ("on_poweroff", "on_reboot", "on_crash")
_MAPPED: Final = frozenset(
    {"name", "memory", "vcpus", "cpus", "cpu_weight", "cpu_cap", "disk", "vif", "builder"}
    | set(_EXITS)
)
#: xm 3.1's restart modes (XendConstants.restart_modes), and what xen970 does with them.
_EXIT_MODES: Final = ("destroy", "restart", "preserve")
_EXIT_REFUSED: Final = {
    "rename-restart": "rename-restart (xend renames the shut-down domain, keeps it and "
    "builds a new one under its name) is not modelled; use restart or preserve",
}
_VIF_IGNORED: Final = frozenset({"ip", "script", "vifname", "rate", "model", "accel"})

Literal = str | int | float | bool | None | list["Literal"]


@dataclass
class XmConfig:
    """A config file as a domain item: the `DomainSpec` mapping, where each of its keys came
    from (`(label, line)` in the file, by path inside the domain), and the warnings."""

    path: str
    domain: dict[str, object] = field(default_factory=dict)
    origin: dict[FieldPath, tuple[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: The keys the scenario's own domain item sets beside `config`.
    own_keys: frozenset[str] = frozenset()
    sha256: str = ""

    def locate(self, rel: FieldPath) -> tuple[str, int]:
        """`(label, line)` in the file for a path inside the domain (longest known prefix)."""
        for n in range(len(rel), 0, -1):
            found = self.origin.get(rel[:n])
            if found is not None:
                label, line = found
                rest = "".join(f"[{el}]" if isinstance(el, int) else f".{el}" for el in rel[n:])
                return label + rest, line
        return ".".join(str(el) for el in rel) or "(config)", 1


def _literal(node: ast.expr, key: str) -> Literal:
    """The value of a literal expression; anything that would run code is refused."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, int, float, bool)) or node.value is None:
            return node.value
        raise XmConfigProblem(
            node.lineno, key, f"{type(node.value).__name__} values are not allowed"
        )
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(el, key) for el in node.elts]
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        return -node.operand.value  # type: ignore[no-any-return]
    what = {
        ast.Name: "a name",
        ast.Call: "a call",
        ast.Attribute: "attribute access",
        ast.BinOp: "an operator",
        ast.Dict: "a dict",
    }.get(type(node), f"a {type(node).__name__} expression")
    raise XmConfigProblem(
        node.lineno,
        key,
        f"{what} is not allowed: xen970 reads xm config files without running them; "
        "write a literal value (string, number, list, True/False/None)",
    )


def _assignments(text: str) -> dict[str, tuple[int, Literal]]:
    """Each assigned name with its line and literal value, in file order."""
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError as exc:
        raise XmConfigProblem(
            exc.lineno or 1, "(config)", f"Python syntax error: {exc.msg}"
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise XmConfigProblem(
            1, "(config)", f"cannot parse the file: {type(exc).__name__}"
        ) from None
    found: dict[str, tuple[int, Literal]] = {}
    for stmt in tree.body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            raise XmConfigProblem(
                stmt.lineno,
                "(config)",
                f"only assignments `name = value` are allowed, got {type(stmt).__name__}",
            )
        key = stmt.targets[0].id
        if key in found:
            raise XmConfigProblem(
                stmt.lineno, key, f"assigned twice (first on line {found[key][0]})"
            )
        found[key] = (stmt.lineno, _literal(stmt.value, key))
    return found


def parse_cpus(value: Literal) -> list[int]:
    """xm's `cpus`: "0-3,^1" (ranges, CPUs, `^n` leaves one out) or a list of integers."""
    if isinstance(value, list):
        if not all(type(c) is int for c in value):
            raise Problem((), f"a list of CPUs holds integers, got {clip(repr(value))}")
        return [int(c) for c in value]  # type: ignore[arg-type]
    if not isinstance(value, str):
        raise Problem((), f"expected a string like '0-3,^1' or a list, got {clip(repr(value))}")
    chosen: list[int] = []
    left_out: set[int] = set()
    for part in value.replace(" ", "").split(","):
        try:
            if part.startswith("^"):
                left_out.add(int(part[1:]))
            elif "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo or hi - lo > 4096:
                    raise ValueError
                chosen.extend(range(lo, hi + 1))
            else:
                chosen.append(int(part))
        except ValueError:
            raise Problem(
                (), f"{part!r} in {clip(repr(value))} is not a CPU, a range 'a-b' or '^n'"
            ) from None
    out = [c for c in dict.fromkeys(chosen) if c not in left_out]
    if not out:
        raise Problem((), f"{clip(repr(value))} leaves no CPU")
    return out


def _disk(entry: Literal, base: Path) -> dict[str, object]:
    """One `disk` entry: 'file:<image>,xvdX,<mode>' -> a vbd mapping."""
    if not isinstance(entry, str):
        raise Problem((), f"expected a string 'file:<image>,xvda,w', got {clip(repr(entry))}")
    parts = [p.strip() for p in entry.split(",")]
    if len(parts) != 3:
        extra = "; a backend domain (driver domain) is not modelled" if len(parts) == 4 else ""
        raise Problem(
            (), f"expected 'file:<image>,<device>,<mode>', got {clip(repr(entry))}{extra}"
        )
    uname, dev, mode = parts
    kind, _, target = uname.partition(":")
    if kind == "phy":
        raise Problem(
            (),
            f"{uname!r}: phy: (a block device of dom0) is not modelled; xen970's disks are "
            "files: use file:<image>",
        )
    if kind != "file" or not target:
        raise Problem((), f"{uname!r}: expected file:<image> (phy: and tap: are not modelled)")
    if dev.startswith("ioemu:") or ":" in dev:
        raise Problem((), f"device {dev!r}: ioemu and :cdrom devices are HVM only")
    if mode == "w!":
        raise Problem(
            (),
            "mode 'w!' (a writable disk shared with another domain) is refused, as Xen's "
            "block script refuses a file in use; use 'w' or 'r'",
        )
    if mode not in ("w", "r"):
        raise Problem((), f"mode {mode!r}: expected 'w' or 'r'")
    image = Path(target)
    return {
        "kind": "vbd",
        "name": dev,
        "image": str(image if image.is_absolute() else base / image),
        "mode": mode,
    }


def _vif(entry: Literal, label: str, warnings: list[str]) -> dict[str, object]:
    """One `vif` entry: 'bridge=xenbr0, mac=..' -> a vif mapping."""
    if not isinstance(entry, str):
        raise Problem(
            (), f"expected a string like 'bridge=xenbr0, mac=...', got {clip(repr(entry))}"
        )
    vif: dict[str, object] = {"kind": "vif"}
    for item in (p.strip() for p in entry.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            raise Problem((), f"{item!r}: expected key=value")
        if key in ("bridge", "mac"):
            vif[key] = value
        elif key == "type" and value in ("netfront", ""):
            continue
        elif key == "type":
            raise Problem((), f"type={value}: only netfront interfaces exist on the 970 (no ioemu)")
        elif key == "backend":
            raise Problem((), "backend: driver domains are not modelled; dom0 serves every vif")
        elif key in _VIF_IGNORED:
            warnings.append(f"{label}: {key}= is ignored (not modelled)")
        else:
            raise Problem(
                (),
                f"unknown vif key {key!r}; xm knows bridge, mac, type, backend, "
                f"{', '.join(sorted(_VIF_IGNORED))}",
            )
    return vif


def _exit_mode(value: Literal) -> str:
    """`on_poweroff` / `on_reboot` / `on_crash`: one of xm's restart modes xen970 models."""
    if isinstance(value, str) and value in _EXIT_MODES:
        return value
    if isinstance(value, str) and value in _EXIT_REFUSED:
        raise Problem((), _EXIT_REFUSED[value])
    raise Problem(
        (),
        f"{clip(repr(value))}: expected one of {', '.join(_EXIT_MODES)} (or xm's "
        "rename-restart, which is not modelled)",
    )


def _convert(cfg: XmConfig, found: dict[str, tuple[int, Literal]], base: Path) -> None:
    """Fill `cfg.domain` and `cfg.origin` from the file's assignments."""
    dom, origin = cfg.domain, cfg.origin
    devices: list[dict[str, object]] = []
    for key, (line, value) in found.items():
        if key in IGNORED:
            cfg.warnings.append(f"{cfg.path}:{line}: {key} is ignored by xen970")
            continue
        if key in REFUSED:
            raise XmConfigProblem(line, key, REFUSED[key])
        if key not in _MAPPED:
            raise XmConfigProblem(line, key, "unknown xm config key")
        try:
            if key == "builder":
                if value != "linux":
                    raise Problem(
                        (), f"builder {clip(repr(value))}: only 'linux' (the 970 has no HVM)"
                    )
            elif key == "memory":
                if type(value) is not int:
                    raise Problem((), f"memory is whole MiB, got {clip(repr(value))}")
                dom["memory"] = f"{value}MiB"
                origin[("memory",)] = (key, line)
            elif key == "cpus":
                dom["affinity"] = parse_cpus(value)
                origin[("affinity",)] = (key, line)
            elif key in _EXITS:
                dom[key] = _exit_mode(value)
                origin[(key,)] = (key, line)
            elif key in ("disk", "vif"):
                entries = value if isinstance(value, list) else [value]
                for k, entry in enumerate(entries):
                    label = f"{key}[{k}]"
                    try:
                        if key == "disk":
                            dev = _disk(entry, base)
                        else:
                            dev = _vif(entry, f"{cfg.path}:{line}: {label}", cfg.warnings)
                    except ValueError as entry_err:
                        raise XmConfigProblem(line, label, str(entry_err)) from None
                    origin[("devices", len(devices))] = (label, line)
                    devices.append(dev)
            else:
                target = {"cpu_weight": "weight", "cpu_cap": "cap"}.get(key, key)
                dom[target] = value
                origin[(target,)] = (key, line)
        except ValueError as exc:
            raise XmConfigProblem(line, key, str(exc)) from None
    if devices:
        dom["devices"] = devices
        origin[("devices",)] = ("disk/vif", min(found[k][0] for k in ("disk", "vif") if k in found))


def read_xm_config(path: Path, shown: str) -> XmConfig:
    """Read and convert one xm config file; `shown` is how messages name it."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{shown}: cannot read xm config file: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ScenarioError(f"{shown}:1: (config): larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{shown}:{line}: (config): the file is not UTF-8") from None
    cfg = XmConfig(shown)
    try:
        _convert(cfg, _assignments(text), path.parent)
    except XmConfigProblem as bad:
        raise ScenarioError(f"{shown}:{bad.line}: {bad.where}: {clip(bad.reason)}") from None
    cfg.sha256 = hashlib.sha256(raw).hexdigest()
    return cfg


def expand_configs(data: object, base_dir: Path, found: dict[int, XmConfig]) -> object:
    """Scenario data with each `domains[i]` that names a `config` file filled from it.

    The file's keys come first; the item's own keys (`start`, `workloads`, ...) join them,
    and a key set in both is refused. `found` gets each file read, by domain index, so the
    loader can name the file and line of a later error about its keys."""
    if not isinstance(data, dict) or not isinstance(data.get("domains"), list):
        return data
    domains: list[object] = []
    for i, item in enumerate(data["domains"]):
        if not isinstance(item, dict) or "config" not in item:
            domains.append(item)
            continue
        name = item["config"]
        if not isinstance(name, str) or not name:
            raise Problem(
                ("domains", i, "config"),
                f"expected the path of an xm config file, got {clip(repr(name))}",
            )
        given = Path(name)
        path = given if given.is_absolute() else base_dir / given
        cfg = read_xm_config(path, clip(str(path)))
        own = {k: v for k, v in item.items() if k != "config"}
        both = sorted(set(own) & set(cfg.domain))
        if both:
            label, line = cfg.locate((both[0],))
            raise Problem(
                ("domains", i, both[0]),
                f"also set by {cfg.path}:{line} ({label}); set it in one place",
            )
        cfg.own_keys = frozenset(own)
        found[i] = cfg
        domains.append({**cfg.domain, **item})
    return {**data, "domains": domains}


def config_origin(found: dict[int, XmConfig], path: FieldPath) -> tuple[str, int, str] | None:
    """`(file, line, field)` for an error at `path` when an xm config file set that key."""
    if len(path) < 3 or path[0] != "domains" or not isinstance(path[1], int):
        return None
    cfg = found.get(path[1])
    if cfg is None or path[2] in cfg.own_keys or path[2] == "config":
        return None
    label, line = cfg.locate(path[2:])
    return cfg.path, line, label
