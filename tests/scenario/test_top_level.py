"""The whole scenario: defaults filled in, integers everywhere, hashes, frozen models, images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from framework.errors import ScenarioError
from framework.scenario import (
    BlockioWorkload,
    ComputeWorkload,
    ConsoleInputAction,
    ConsoleWorkload,
    DiskSpec,
    LinkSpec,
    NetstreamWorkload,
    Scenario,
    TimerWorkload,
    VifSpec,
    load_scenario,
    parse_scenario,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
KiB = 1 << 10
MiB = 1 << 20


def test_quickstart_loads_with_integers_and_defaults() -> None:
    s = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    assert s.name == "quickstart"
    assert s.duration == 2_000_000_000
    assert s.machine.memory == 2 << 30
    assert s.machine.clock == 1_800_000_000
    assert s.machine.timebase == 33_333_333
    assert s.dom0.vcpus == s.machine.cpus == 2
    assert s.dom0.rma == 64 * MiB and s.dom0.weight == 256 and s.dom0.cap == 0
    guest1 = s.domains[0]
    assert guest1.memory == 128 * MiB and guest1.rma == 64 * MiB and guest1.vcpus == 1
    assert guest1.affinity is None and guest1.start == 0
    assert guest1.workloads == (ComputeWorkload(vcpu=0), TimerWorkload(hz=100, vcpu=0))
    assert s.domain_count == 4 and s.vcpu_count == 5


def test_model_built_in_code_still_has_a_stable_hash() -> None:
    a = Scenario.model_validate({"name": "x", "duration": "1s"})
    b = Scenario.model_validate({"name": "x", "duration": "1000ms"})
    assert a.sha256 == b.sha256 and len(a.sha256) == 64


def test_models_are_frozen() -> None:
    s = parse_scenario("name: f\nduration: 1s\n")
    with pytest.raises(ValueError, match="frozen"):
        s.seed = 5  # type: ignore[misc]


def test_dom0_vcpus_follow_machine_cpus_unless_given() -> None:
    assert parse_scenario("name: a\nduration: 1s\nmachine: {cpus: 4}\n").dom0.vcpus == 4
    given = parse_scenario("name: a\nduration: 1s\nmachine: {cpus: 4}\ndom0: {vcpus: 1}\n")
    assert given.dom0.vcpus == 1


def _io_example(where: Path) -> Path:
    """io_example.yaml copied into `where`, beside the 8 MiB xvdb.img it names."""
    with (where / "xvdb.img").open("wb") as image:
        image.truncate(8 * MiB)
    return Path(shutil.copy(DATA / "io_example.yaml", where))


def test_io_example_uses_every_new_field_as_integers(tmp_path: Path) -> None:
    s = load_scenario(_io_example(tmp_path))
    assert s.machine.disk == DiskSpec(latency="250us", bandwidth="1.5GB/s", queue_depth=64)
    assert s.machine.disk.latency == 250_000 and s.machine.disk.bandwidth == 1_500_000_000
    assert s.machine.link == LinkSpec(bandwidth="100Mbit/s", latency="50us", mtu=4000)
    assert s.machine.link.bandwidth == 12_500_000 and s.machine.link.latency == 50_000
    disk, stream = s.domains
    xvda, xvdb = disk.vbds
    assert (xvda.name, xvda.size, xvda.image, xvda.mode) == ("xvda", 64 * MiB, None, "w")
    assert (xvdb.name, xvdb.size, xvdb.image, xvdb.mode) == ("xvdb", 8 * MiB, "xvdb.img", "r")
    assert disk.vifs == (VifSpec(bridge="xenbr0", mac="00:16:3e:00:00:01"),)
    assert stream.vifs == (VifSpec(),) and stream.vifs[0].mac is None
    rand, seq, console = disk.workloads
    assert isinstance(rand, BlockioWorkload) and isinstance(seq, BlockioWorkload)
    assert (rand.device, rand.pattern, rand.read_percent, rand.block_size) == (
        "xvda",
        "rand",
        50,
        4096,
    )
    assert (rand.queue_depth, rand.requests, rand.verify, rand.region) == (8, 0, True, None)
    assert (seq.pattern, seq.read_percent, seq.block_size, seq.queue_depth) == (
        "seq",
        100,
        45056,
        32,
    )
    assert (seq.requests, seq.verify, seq.vcpu, seq.region) == (1000, False, 1, 2 * MiB)
    assert console == ConsoleWorkload(text="disk guest alive", every="20ms", count=0, vcpu=1)
    assert stream.workloads[0] == NetstreamWorkload(peer="disk", message_size=MiB, messages=100)
    # A console workload without text greets in its domain's name, dom0 included.
    assert stream.workloads[1] == ConsoleWorkload(text="hello from stream", every="100ms", count=10)
    assert s.dom0.workloads == (ConsoleWorkload(text="hello from dom0", every="50ms", count=2),)
    # The timeline is sorted by `at`, and equal times keep their file order.
    assert [(a.at, a.domain, a.text) for a in s.timeline] == [
        (10_000_000, "stream", "root\n"),
        (200_000_000, "disk", "ls\n"),
        (200_000_000, "stream", "uptime\n"),
    ]
    assert all(isinstance(a, ConsoleInputAction) for a in s.timeline)


def test_image_paths_resolve_against_the_scenario_directory(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    path = _io_example(tmp_path / "here")
    s = load_scenario(path)
    xvda, xvdb = s.domains[0].vbds
    assert s.base_dir == tmp_path / "here"
    assert s.image_path(xvdb) == tmp_path / "here" / "xvdb.img"
    assert s.image_path(xvda) is None
    text = path.read_text(encoding="utf-8")
    (tmp_path / "x.img").write_bytes(bytes(8 * MiB))
    absolute = text.replace("image: xvdb.img", f"image: {tmp_path / 'x.img'}")
    elsewhere = parse_scenario(absolute, base_dir=REPO)
    assert elsewhere.image_path(elsewhere.domains[0].vbds[1]) == tmp_path / "x.img"
    assert parse_scenario(text, base_dir=path.parent).image_path(xvdb) == path.parent / "xvdb.img"
    # A relative image is looked for beside the scenario, never in the current directory.
    with pytest.raises(ScenarioError, match=r"image 'xvdb.img' does not exist \(looked for "):
        parse_scenario(text, base_dir=REPO)
    assert not (REPO / "xvdb.img").exists(), "loading must never create an image"


def test_model_validate_takes_the_image_directory_from_its_context(tmp_path: Path) -> None:
    (tmp_path / "d.img").write_bytes(bytes(2 * MiB))
    data = {
        "name": "ctx",
        "duration": "1s",
        "domains": [
            {
                "name": "g",
                "memory": "64MiB",
                "devices": [{"kind": "vbd", "name": "xvda", "image": "d.img"}],
            }
        ],
    }
    s = Scenario.model_validate(data, context={"base_dir": tmp_path})
    assert s.domains[0].vbds[0].size == 2 * MiB and s.base_dir == tmp_path


def test_the_io_scenario_shape_the_lead_will_write_validates() -> None:
    text = """
name: io
duration: 1s
domains:
  - name: disk
    memory: 128MiB
    devices:
      - {kind: vbd, name: xvda, size: 64MiB}
      - {kind: vif}
    workloads:
      - {kind: blockio, device: xvda, pattern: rand, block_size: 4KiB, queue_depth: 8, verify: true}
  - name: stream
    memory: 64MiB
    devices:
      - {kind: vif}
    workloads:
      - {kind: netstream, peer: disk}
"""
    s = parse_scenario(text, "io.yaml")
    blockio = s.domains[0].workloads[0]
    assert isinstance(blockio, BlockioWorkload)
    assert (blockio.read_percent, blockio.queue_depth, blockio.block_size) == (50, 8, 4 * KiB)
    assert s.domains[1].workloads == (NetstreamWorkload(peer="disk", message_size="64KiB"),)
    # Defaults of the disk and link models.
    assert s.machine.disk == DiskSpec(latency="100us", bandwidth="100MB/s", queue_depth=32)
    assert s.machine.disk.latency == 100_000 and s.machine.disk.bandwidth == 100_000_000
    assert (s.machine.link.bandwidth, s.machine.link.latency, s.machine.link.mtu) == (
        125_000_000,
        20_000,
        1500,
    )
    assert s.timeline == ()
