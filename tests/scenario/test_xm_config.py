"""xm config files as scenario domains: mapped to the same DomainSpec, read without running
them, refused in one line naming the config file, its line and the field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from framework.errors import ScenarioError
from framework.scenario import load_scenario
from framework.scenario.xm_config import parse_cpus

REPO = Path(__file__).resolve().parents[2]

WEB = """# an xm config file, as xm 3.1 reads it
name = "web"
memory = 128
vcpus = 2
cpus = "0-3,^1"
cpu_weight = 512
disk = ['file:web.img,xvda,w', 'file:/{tmp}/data.img,xvdb,r']
vif = ['bridge=xenbr0, mac=00:16:3E:00:00:01', '']
on_crash = 'preserve'
kernel = "/boot/vmlinux-2.6.18-xen"
extra = "console=hvc0"
"""

SCENARIO = """name: cfg
duration: 10ms
machine: {{cpus: 4}}
domains:
  - config: {cfg}
{extra}"""


def _files(tmp: Path, cfg: str, extra: str = "    workloads: [{kind: timer}]\n") -> Path:
    for name in ("web.img", "data.img"):
        with (tmp / name).open("wb") as f:
            f.truncate(1 << 20)
    (tmp / "guests").mkdir(exist_ok=True)
    (tmp / "guests" / "web.img").write_bytes(b"\0" * (1 << 20))
    (tmp / "guests" / "web.cfg").write_text(cfg.replace("{tmp}", str(tmp)))
    path = tmp / "s.yaml"
    path.write_text(SCENARIO.format(cfg="guests/web.cfg", extra=extra))
    return path


def _refusal(tmp: Path, cfg: str, extra: str = "") -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(_files(tmp, cfg, extra))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_config_file_maps_to_the_same_domain_as_yaml(tmp_path: Path) -> None:
    s = load_scenario(_files(tmp_path, WEB))
    d = s.domains[0]
    assert (d.name, d.memory, d.vcpus, d.weight) == ("web", 128 << 20, 2, 512)
    assert d.affinity == (0, 2, 3)
    assert [v.name for v in d.vbds] == ["xvda", "xvdb"]
    # file: paths are relative to the config file; the image sizes the vbd
    assert s.image_path(d.vbds[0]) == tmp_path / "guests" / "web.img"
    assert (d.vbds[0].mode, d.vbds[1].mode, d.vbds[0].size) == ("w", "r", 1 << 20)
    assert [v.mac for v in d.vifs] == ["00:16:3e:00:00:01", None]
    assert len(d.workloads) == 1  # the scenario's own keys join the file's
    assert d.on_crash == "preserve"  # mapped, not ignored
    warned = " | ".join(s.load_warnings)
    assert "on_crash" not in warned
    for key, line in (("kernel", 10), ("extra", 11)):
        assert f"guests/web.cfg:{line}: {key} is ignored" in warned


def test_on_poweroff_reboot_crash_map_to_the_domains_exit_actions(tmp_path: Path) -> None:
    cfg = "name = 'web'\nmemory = 64\non_poweroff = 'preserve'\non_reboot = 'destroy'\n"
    s = load_scenario(_files(tmp_path, cfg + "on_crash = 'restart'\n"))
    d = s.domains[0]
    assert (d.on_poweroff, d.on_reboot, d.on_crash) == ("preserve", "destroy", "restart")
    assert not s.load_warnings
    # Not given: the same defaults as a YAML domain's.
    d = load_scenario(_files(tmp_path, "name = 'web'\nmemory = 64\n")).domains[0]
    assert (d.on_poweroff, d.on_reboot, d.on_crash) == ("destroy", "restart", "preserve")


def test_config_file_changes_the_scenario_hash(tmp_path: Path) -> None:
    first = load_scenario(_files(tmp_path, WEB)).sha256
    second = load_scenario(_files(tmp_path, WEB.replace("memory = 128", "memory = 256"))).sha256
    assert first != second


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("memory = 100", r"web\.cfg:3: memory: memory beyond the RMA \(36MiB\) is not a multiple"),
        ("memory = 64 * 2", r"web\.cfg:3: memory: an operator is not allowed"),
        ("memory = int('64')", r"web\.cfg:3: memory: a call is not allowed"),
        ("memory = os.environ", r"web\.cfg:3: memory: attribute access is not allowed"),
        ("memory = MEM", r"web\.cfg:3: memory: a name is not allowed"),
        ("import os", r"web\.cfg:3: \(config\): only assignments"),
        ("vcpus = 40", r"web\.cfg:3: vcpus: vcpus must be 1\.\.32, got 40"),
        ("cpus = '0-7'", r"web\.cfg:3: cpus\[4\]: cpu 4 out of range"),
        ("cpus = 'zero'", r"web\.cfg:3: cpus: 'zero' in 'zero' is not a CPU"),
        ("disk = ['phy:sda1,xvda,w']", r"web\.cfg:3: disk\[0\]: 'phy:sda1': phy: .*use file:"),
        ("disk = ['file:none.img,xvda,w']", r"web\.cfg:3: disk\[0\]\.image: image .* not exist"),
        ("disk = ['file:web.img,hda,w']", r"web\.cfg:3: disk\[0\]\.name: vbd name 'hda'"),
        ("disk = ['file:web.img,xvda,w!']", r"web\.cfg:3: disk\[0\]: mode 'w!'"),
        ("vif = ['', 'mac=01:00:00:00:00:00']", r"web\.cfg:3: vif\[1\]\.mac: .* multicast"),
        ("vif = ['bridge=xenbr0, colour=red']", r"web\.cfg:3: vif\[0\]: unknown vif key 'colour'"),
        ("pci = ['01:00.0']", r"web\.cfg:3: pci: PCI pass-through is not modelled"),
        ("acpi = 1", r"web\.cfg:3: acpi: an HVM option"),
        ("frobnicate = 1", r"web\.cfg:3: frobnicate: unknown xm config key"),
        ("on_crash = 'rename-restart'", r"web\.cfg:3: on_crash: rename-restart .* not modelled"),
        ("on_reboot = 'explode'", r"web\.cfg:3: on_reboot: 'explode': expected one of destroy, "),
        ("on_poweroff = 1", r"web\.cfg:3: on_poweroff: 1: expected one of destroy, restart"),
        ("name = 'other'", r"web\.cfg:3: name: assigned twice \(first on line 2\)"),
        ("memory = (", r"web\.cfg:3: \(config\): Python syntax error"),
    ],
)
def test_bad_config_is_one_line_naming_file_line_and_field(
    tmp_path: Path, line: str, expected: str
) -> None:
    cfg = f"# guest\nname = 'web'\n{line}\n" + ("memory = 64\n" if "memory" not in line else "")
    assert re.search(expected, _refusal(tmp_path, cfg))


def test_key_in_both_places_is_refused_at_the_scenario_line(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "name = 'web'\nmemory = 64\n", "    memory: 128MiB\n")
    assert message.endswith(
        "s.yaml:6: domains[0].memory: also set by "
        f"{tmp_path}/guests/web.cfg:2 (memory); set it in one place"
    )


def test_missing_key_names_the_config_file(tmp_path: Path) -> None:
    assert _refusal(tmp_path, "name = 'web'\n").endswith(
        "web.cfg:1: memory: required key is missing"
    )


def test_config_is_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    cfg = f"name = 'web'\nmemory = 64\n__import__('os').mkdir({str(canary)!r})\n"
    assert ": (config): only assignments" in _refusal(tmp_path, cfg)
    assert not canary.exists()


def test_cpus_in_xm_syntax() -> None:
    assert parse_cpus("0-3,^1") == [0, 2, 3]
    assert parse_cpus("2, 0") == [2, 0]
    assert parse_cpus([1, 0]) == [1, 0]
    with pytest.raises(ValueError, match="leaves no CPU"):
        parse_cpus("0,^0")


def test_cli_refuses_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = _files(tmp_path, "name = 'web'\nmemory = 64 << 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "framework", "validate", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "web.cfg:2: memory: an operator is not allowed" in done.stderr
