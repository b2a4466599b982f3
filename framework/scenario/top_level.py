"""The whole scenario: a machine, dom0, guest domains and a timeline, as one frozen model.

Where the hash lives: the loader (`load_scenario`/`parse_scenario`) records where a scenario
came from with `Scenario.loaded_from`; read it through `Scenario.sha256` (hex SHA-256 of the
raw file bytes) and `Scenario.source` (the path or name it was read from). A `Scenario`
built directly with `Scenario.model_validate` hashes its canonical JSON instead. Relative
image paths resolve against `Scenario.base_dir` (pass `context={"base_dir": dir}` to
`Scenario.model_validate`, else the current directory), see `Scenario.image_path`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import Field, PrivateAttr, StrictInt, StrictStr, ValidationInfo, model_validator

from framework.scenario.devices import VbdSpec, context_base_dir, resolve_image
from framework.scenario.domains import Dom0Spec, DomainSpec
from framework.scenario.expect import Check, Expectation, Refusal
from framework.scenario.fields import (
    Duration,
    FieldPath,
    Problem,
    ScenarioModel,
    clip,
    dotted,
    in_range,
    matching,
    nearest_line,
    non_empty,
)
from framework.scenario.grants import GrantSpec, check_grant_actions, check_grants
from framework.scenario.hotplug_rules import check_attached_images, check_hotplug
from framework.scenario.machine import MachineSpec
from framework.scenario.rules import (
    check_affinity,
    check_expectations,
    check_fit,
    check_link_mtu,
    check_macs,
    check_names,
    check_netstream,
    check_pingpong,
    check_rma,
    check_shared_images,
    check_starts,
    check_timeline,
    check_timeline_targets,
)
from framework.scenario.save_rules import check_save_files, check_save_grants
from framework.scenario.timeline import TimelineAction
from framework.scenario.xm_config import XmConfig

__all__ = ["Scenario"]

_SCENARIO_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Scenario(ScenarioModel):
    """A whole scenario file, with every size, duration, frequency and bandwidth as an integer."""

    name: Annotated[StrictStr, matching(_SCENARIO_NAME, "scenario name")] = Field(
        description="scenario name; also the default run directory `runs/<name>`"
    )
    seed: Annotated[StrictInt, in_range(0, None, "seed")] = Field(
        0, description="seed of the simulation's only random generator"
    )
    duration: Duration = Field(description="simulated time to run")
    machine: MachineSpec = Field(default_factory=MachineSpec, description="see `machine`")
    dom0: Dom0Spec = Field(default_factory=Dom0Spec, description="see `dom0`")
    domains: tuple[DomainSpec, ...] = Field((), description="guest domains, see `domains[]`")
    grants: tuple[GrantSpec, ...] = Field(
        (), description="pages a guest grants to another domain, see `grants[]`"
    )
    timeline: tuple[TimelineAction, ...] = Field(
        (), description="actions at simulated times, kept sorted by `at` (stable), see `timeline[]`"
    )
    expect: tuple[Expectation, ...] = Field(
        (),
        description="checks of the run, see `expect[]`; or `{refused: <regex>}`: a negative "
        "test, which passes when validation refuses the file with a matching message",
    )
    refused: Refusal | None = Field(
        None, description="written as `expect: {refused: <regex>}` (a negative test)"
    )
    xfail: Annotated[StrictStr, non_empty("xfail")] | None = Field(
        None, description="the reason this scenario is expected to fail its checks (XFAIL)"
    )
    skip: Annotated[StrictStr, non_empty("skip")] | None = Field(
        None, description="the reason `xen970 test` skips this scenario"
    )

    _sha256: str | None = PrivateAttr(default=None)
    _source: str = PrivateAttr(default="<model>")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _lines: dict[FieldPath, int] = PrivateAttr(default_factory=dict)
    _configs: tuple[XmConfig, ...] = PrivateAttr(default=())

    def loaded_from(
        self, source: str, sha256: str, lines: dict[FieldPath, int] | None = None
    ) -> None:
        """Record the file (or name) this scenario was read from, the hash of its bytes and
        the line of each key (so later checks can name it, see `where`)."""
        self._source = source
        self._sha256 = sha256
        self._lines = dict(lines or {})

    def read_configs(self, configs: tuple[XmConfig, ...]) -> None:
        """Record the xm config files the domains came from (their hashes join `sha256`)."""
        self._configs = configs

    @property
    def load_warnings(self) -> tuple[str, ...]:
        """What loading said without refusing: xm config keys xen970 ignores."""
        return tuple(w for cfg in self._configs for w in cfg.warnings)

    @property
    def lines(self) -> dict[FieldPath, int]:
        """The line of each key in the file it was read from (empty if built in code)."""
        return self._lines

    def where(self, path: FieldPath) -> str:
        """`<file>:<line>: <field>` for a field, as scenario errors begin."""
        return f"{self._source}:{nearest_line(self._lines, path)}: {clip(dotted(path))}"

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file bytes it was loaded from (with those of the xm config
        files its domains name), else of its canonical JSON."""
        if self._sha256 is None:
            return hashlib.sha256(self.model_dump_json().encode()).hexdigest()
        if self._configs:  # the xm config files decide the run too
            joined = " ".join([self._sha256, *(cfg.sha256 for cfg in self._configs)])
            return hashlib.sha256(joined.encode()).hexdigest()
        return self._sha256

    @property
    def source(self) -> str:
        """The path (or name) the scenario was read from."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The directory relative image paths resolve against (the scenario file's)."""
        return self._base_dir

    def image_path(self, vbd: VbdSpec) -> Path | None:
        """Where a vbd's image lives (None without an image); the file may not exist yet."""
        return None if vbd.image is None else resolve_image(vbd.image, self._base_dir)

    @property
    def checks(self) -> tuple[Check, ...]:
        """The `expect` checks in the normal form run.json records (none for a negative
        test, which is judged at validation)."""
        return tuple(e.check for e in self.expect)

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
    def _negative_test(cls, data: Any) -> Any:
        """`expect: {refused: <regex>}` is a negative test, kept apart from the checks."""
        if isinstance(data, dict) and isinstance(data.get("expect"), dict):
            if "refused" in data:
                raise Problem(("refused",), "write a negative test as expect: {refused: ...}")
            data = {**data, "refused": data["expect"], "expect": ()}
        return data

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
    def _rules(self, info: ValidationInfo) -> Scenario:
        check_names(self.domains)
        check_rma(self.machine, self.dom0, self.domains)
        check_fit(self.machine, self.dom0, self.domains)
        check_affinity(self.machine, self.domains)
        check_link_mtu(self.machine)
        check_pingpong(self.dom0, self.domains)
        check_netstream(self.domains)
        check_macs(self.domains)
        check_starts(self.domains, self.duration)
        check_timeline(self.timeline, self.domains, self.duration)
        check_timeline_targets(self.timeline, self.machine, self.domains)
        check_grants(self.grants, self.dom0, self.domains)
        check_grant_actions(self.timeline, self.grants, self.domains, self.duration)
        check_hotplug(self.timeline, self.domains)
        check_expectations(self.expect, self.dom0, self.domains, self.duration)
        self._base_dir = context_base_dir(info)
        check_shared_images(self.domains, self._base_dir)
        check_attached_images(self.timeline, self.domains, self._base_dir)
        check_save_files(self.timeline, self._base_dir)
        check_save_grants(self.timeline, self.grants)
        ordered = tuple(sorted(self.timeline, key=lambda action: action.at))
        return self.model_copy(update={"timeline": ordered})
