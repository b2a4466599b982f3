"""Scenario schema and loader: every rule, with the exact field path and line in the message."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from framework.errors import ScenarioError, Xen970Error
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
    VbdSpec,
    VifSpec,
    load_scenario,
    parse_scenario,
    reference_markdown,
)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
BAD = sorted(DATA.glob("bad_*.yaml"))
KiB = 1 << 10
MiB = 1 << 20


def _expected(path: Path) -> str:
    """The error a fixture documents in its first line: '# error: <line>: <path>: <reason>'."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# error: "), f"{path.name} lacks its '# error:' line"
    return first.removeprefix("# error: ")


def _with_images(path: Path, tmp_path: Path) -> Path:
    """Fixtures about disk images say '# image: NAME BYTES' on line 2; make that file.

    The fixture is copied next to a sparse image of that size, so no image is committed.
    """
    second = (path.read_text(encoding="utf-8").splitlines() + [""])[1]
    if not second.startswith("# image: "):
        return path
    name, size = second.removeprefix("# image: ").split()
    with (tmp_path / name).open("wb") as image:
        image.truncate(int(size))
    return Path(shutil.copy(path, tmp_path / path.name))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_scenario_gives_one_line_with_file_line_and_field(path: Path, tmp_path: Path) -> None:
    where = _with_images(path, tmp_path)
    with pytest.raises(ScenarioError) as info:
        load_scenario(where)
    message = str(info.value)
    assert message == f"{where}:{_expected(path)}"
    assert "\n" not in message


def test_fixtures_cover_every_rule() -> None:
    stems = {p.stem for p in BAD}
    for rule in (
        "bad_unknown_key",
        "bad_unknown_workload_key",
        "bad_unit",
        "bad_smaller_than_rma",
        "bad_extent",
        "bad_rma_size",
        "bad_vcpus",
        "bad_zero_vcpus",
        "bad_total_memory",
        "bad_duplicate_name",
        "bad_peer_unknown",
        "bad_peer_roles",
        "bad_peer_unanswered",
        "bad_workload_vcpu",
        "bad_affinity",
        "bad_workload_kind",
        "bad_yaml_syntax",
        "bad_bandwidth_unit",
        "bad_bandwidth_zero",
        "bad_disk_queue_depth",
        "bad_link_mtu",
        "bad_dom0_devices",
        "bad_device_kind",
        "bad_vbd_name",
        "bad_vbd_duplicate",
        "bad_vbd_size_missing",
        "bad_vbd_size_missing_image",
        "bad_vbd_size_align",
        "bad_vbd_size_small",
        "bad_vbd_image_mismatch",
        "bad_vbd_image_align",
        "bad_vbd_image_small",
        "bad_vbd_mode",
        "bad_vif_bridge",
        "bad_vif_mac_format",
        "bad_vif_mac_multicast",
        "bad_vif_mac_duplicate",
        "bad_blockio_device_unknown",
        "bad_blockio_read_only",
        "bad_blockio_block_size_align",
        "bad_blockio_block_size_large",
        "bad_blockio_queue_depth",
        "bad_blockio_region_fit",
        "bad_blockio_dom0",
        "bad_netstream_peer_unknown",
        "bad_netstream_peer_self",
        "bad_netstream_no_bridge",
        "bad_netstream_no_vif",
        "bad_netstream_twice",
        "bad_netstream_message_size",
        "bad_console_every",
        "bad_timeline_action",
        "bad_timeline_domain_unknown",
        "bad_timeline_at_end",
    ):
        assert rule in stems


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


def test_sha256_is_of_the_raw_file_bytes(tmp_path: Path) -> None:
    raw = b"name: h\n# a comment changes the hash\nduration: 1ms\n"
    path = tmp_path / "h.yaml"
    path.write_bytes(raw)
    s = load_scenario(path)
    assert s.sha256 == hashlib.sha256(raw).hexdigest()
    assert s.source == str(path)
    assert parse_scenario("name: h\nduration: 1ms\n").sha256 != s.sha256


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


def test_pingpong_with_dom0_is_refused_with_a_clear_line() -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(DATA / "dom0_pingpong.yaml")
    assert "dom0.workloads[0].peer: pingpong with dom0 is not modelled yet" in str(err.value)


def test_memory_exactly_filling_the_machine_is_accepted() -> None:
    text = (
        "name: full\nduration: 1s\nmachine: {memory: 512MiB}\n"
        "dom0: {memory: 256MiB}\ndomains:\n  - {name: g, memory: 192MiB}\n"
    )
    assert parse_scenario(text).domains[0].memory == 192 * MiB


def test_every_allowed_rma_size_is_accepted() -> None:
    for rma in ("64MiB", "128MiB", "256MiB", "1GiB", "16GiB", "256GiB"):
        text = (
            f"name: r\nduration: 1s\nmachine: {{memory: 512GiB}}\n"
            f"domains:\n  - {{name: g, memory: {rma}, rma: {rma}}}\n"
        )
        assert parse_scenario(text).domains[0].rma == parse_scenario(text).domains[0].memory


def test_source_name_is_used_in_messages() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("name: x\n", source="inline.yaml")
    assert str(info.value) == "inline.yaml:1: duration: required key is missing"
    assert isinstance(info.value, Xen970Error)


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(missing)
    assert str(info.value) == f"{missing}: cannot read scenario: No such file or directory"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: x\n\xff\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(binary)
    assert str(info.value) == f"{binary}:2: (top level): the file is not UTF-8"


def test_the_earliest_problem_in_the_file_is_reported() -> None:
    text = "name: two\nduration: 1s\nseed: x\nmachine: {cpus: 9}\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "t.yaml")
    assert str(info.value) == "t.yaml:3: seed: expected an integer, got str 'x'"


def test_reference_lists_every_key_with_its_default() -> None:
    ref = reference_markdown()
    for row in (
        "| `rma` | `64MiB` | Real Mode Area: 64MiB, 128MiB, 256MiB, 1GiB, 16GiB or 256GiB |",
        "| `vcpus` | `machine.cpus` | dom0 VCPUs |",
        "| `duration` | **required** | simulated time to run |",
        "| `timebase` | `33.333333MHz` |",
    ):
        assert row in ref
    assert "workload `kind: pingpong`" in ref


# ---------------------------------------------------------------------------- virtual I/O


def test_io_example_uses_every_new_field_as_integers() -> None:
    s = load_scenario(DATA / "io_example.yaml")
    assert s.machine.disk == DiskSpec(latency="250us", bandwidth="1.5GB/s", queue_depth=64)
    assert s.machine.disk.latency == 250_000 and s.machine.disk.bandwidth == 1_500_000_000
    assert s.machine.link == LinkSpec(bandwidth="100Mbit/s", latency="50us", mtu=9000)
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


def test_image_paths_resolve_against_the_scenario_directory() -> None:
    s = load_scenario(DATA / "io_example.yaml")
    xvda, xvdb = s.domains[0].vbds
    assert s.base_dir == DATA
    assert s.image_path(xvdb) == DATA / "xvdb.img"
    assert s.image_path(xvda) is None
    assert not (DATA / "xvdb.img").exists(), "loading must never create an image"
    text = (DATA / "io_example.yaml").read_text(encoding="utf-8")
    elsewhere = parse_scenario(text.replace("image: xvdb.img", "image: /abs/x.img"), base_dir=REPO)
    assert elsewhere.image_path(elsewhere.domains[0].vbds[1]) == Path("/abs/x.img")
    assert parse_scenario(text, base_dir=REPO).image_path(xvdb) == REPO / "xvdb.img"


def _vbd_scenario(vbd: str) -> str:
    return (
        "name: img\nduration: 1s\ndomains:\n  - name: g\n    memory: 64MiB\n"
        f"    devices:\n      - {{kind: vbd, name: xvda, {vbd}}}\n"
    )


def test_an_existing_image_gives_the_vbd_its_size_and_is_left_untouched(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"\x5a" * (3 * MiB))
    before = (image.stat().st_mtime_ns, image.read_bytes())
    (tmp_path / "s.yaml").write_text(_vbd_scenario("image: disk.img, mode: r"), encoding="utf-8")
    vbd = load_scenario(tmp_path / "s.yaml").domains[0].vbds[0]
    assert vbd == VbdSpec(name="xvda", size=3 * MiB, image="disk.img", mode="r")
    # A size that agrees with the file is accepted too.
    (tmp_path / "t.yaml").write_text(_vbd_scenario("image: disk.img, size: 3MiB"), encoding="utf-8")
    assert load_scenario(tmp_path / "t.yaml").domains[0].vbds[0].size == 3 * MiB
    assert (image.stat().st_mtime_ns, image.read_bytes()) == before
    # An absolute image path does not depend on where the scenario is.
    absolute = parse_scenario(_vbd_scenario(f"image: '{image}'"), base_dir=REPO)
    assert absolute.domains[0].vbds[0].size == 3 * MiB


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


def test_two_guests_may_stream_to_each_other_on_a_shared_second_bridge() -> None:
    text = """
name: both
duration: 1s
domains:
  - name: a
    memory: 64MiB
    devices: [{kind: vif, bridge: xenbr0}, {kind: vif, bridge: storage}]
    workloads: [{kind: netstream, peer: b}]
  - name: b
    memory: 64MiB
    devices: [{kind: vif, bridge: storage}]
    workloads: [{kind: netstream, peer: a, message_size: 1}]
"""
    s = parse_scenario(text)
    assert [v.bridge for v in s.domains[0].vifs] == ["xenbr0", "storage"]
    assert s.domains[1].workloads[0] == NetstreamWorkload(peer="a", message_size=1)


def test_block_size_bounds_are_inclusive() -> None:
    for size, expected in (("512", 512), ("44KiB", 44 * KiB)):
        text = _vbd_scenario("size: 1MiB") + (
            f"    workloads:\n      - {{kind: blockio, device: xvda, block_size: {size}, "
            "region: 1MiB, read_percent: 0}\n"
        )
        w = parse_scenario(text).domains[0].workloads[0]
        assert isinstance(w, BlockioWorkload) and w.block_size == expected


def test_timeline_action_exactly_at_domain_start_is_accepted() -> None:
    text = (
        "name: t\nduration: 1s\ndomains:\n  - {name: g, memory: 64MiB, start: 5ms}\n"
        "timeline:\n  - {action: console_input, at: 5ms, domain: g, text: x}\n"
        "  - {action: console_input, at: 999999999ns, domain: g, text: y}\n"
    )
    assert [a.at for a in parse_scenario(text).timeline] == [5_000_000, 999_999_999]


def test_reference_documents_the_io_sections() -> None:
    ref = reference_markdown()
    for row in (
        "| `bandwidth` | `1Gbit/s` | transfer rate of each link |",
        "| `bandwidth` | `100MB/s` | transfer rate of each disk |",
        "| `latency` | `100us` |",
        "| `verify` | `true` |",
        "| `text` | `hello from <domain>` |",
        "| `bridge` | `xenbr0` |",
    ):
        assert row in ref
    for title in (
        "**`machine.disk`**",
        "**`machine.link`**",
        "**device `kind: vbd`**",
        "**device `kind: vif`**",
        "**workload `kind: blockio`**",
        "**workload `kind: netstream`**",
        "**workload `kind: console`**",
        "**`timeline[]` `action: console_input`**",
    ):
        assert title in ref
    assert "needs no workload" in ref
