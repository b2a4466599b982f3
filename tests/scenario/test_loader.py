"""The loader: one line naming file, line and field for every broken rule, and the file's hash."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from framework.errors import ScenarioError, Xen970Error
from framework.scenario import load_scenario, parse_scenario

DATA = Path(__file__).resolve().parents[1] / "data"
BAD = sorted(DATA.glob("bad_*.yaml"))


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
        "bad_link_mtu_jumbo",
        "bad_compute_twice",
        "bad_dom0_devices",
        "bad_device_kind",
        "bad_vbd_name",
        "bad_vbd_duplicate",
        "bad_vbd_size_missing",
        "bad_vbd_image_missing",
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


def test_sha256_is_of_the_raw_file_bytes(tmp_path: Path) -> None:
    raw = b"name: h\n# a comment changes the hash\nduration: 1ms\n"
    path = tmp_path / "h.yaml"
    path.write_bytes(raw)
    s = load_scenario(path)
    assert s.sha256 == hashlib.sha256(raw).hexdigest()
    assert s.source == str(path)
    assert parse_scenario("name: h\nduration: 1ms\n").sha256 != s.sha256


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


# -- bounded parsing (issue 14): hostile input is refused in one line, quickly -------------
_OK = "name: x\nduration: 1s\n"


def _refused(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("s.yaml:")
    return message


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    message = _refused(_OK + "\n".join(lines) + "\n")
    assert message.startswith("s.yaml:3: ") and "anchors and aliases" in message


def test_nesting_deeper_than_64_is_refused_without_a_recursion_error() -> None:
    message = _refused(_OK + "machine: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert message == "s.yaml:3: (top level): mappings and lists nest deeper than 64 levels"


def test_a_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(_OK + "#" * (1 << 20) + "\n")
    with pytest.raises(ScenarioError, match=r"big.yaml:1: .*larger than 1048576 bytes"):
        load_scenario(big)


def test_dev_zero_is_refused_quickly() -> None:
    with pytest.raises(ScenarioError, match=r"^/dev/zero:1: .*larger than 1048576 bytes$"):
        load_scenario("/dev/zero")


def test_a_huge_name_is_not_echoed() -> None:
    # A 16 MiB name is refused by the size limit; one just under it reaches validation.
    assert "larger than" in _refused("name: " + "n" * (16 << 20) + "\nduration: 1s\n")
    message = _refused("name: " + "n" * 1_000_000 + "\nduration: 1s\n")
    assert message.startswith("s.yaml:1: name: scenario name 'nnn")
    assert len(message) < 400 and "(1000002 characters)" in message


def test_a_huge_value_of_the_wrong_type_is_not_echoed() -> None:
    message = _refused("name: x\nduration: 1s\nmachine: " + "z" * 1_000_000 + "\n")
    assert message.startswith("s.yaml:3: machine: expected a mapping") and len(message) < 400


def test_a_duration_beyond_int64_nanoseconds_is_refused() -> None:
    message = _refused("name: x\nduration: 9223372037s\n")  # (2**63 - 1) ns is 9223372036.85 s
    assert message.startswith("s.yaml:2: duration: duration 9223372037000000000ns is longer")
    assert str((1 << 63) - 1) in message
    start = _refused(_OK + "domains:\n  - {name: g, memory: 64MiB, start: 1000000000000s}\n")
    assert start.startswith("s.yaml:4: domains[0].start: duration ")


def test_machine_memory_the_host_cannot_map_is_refused() -> None:
    for memory, reason in (
        (str(1 << 80), "is more than 4094GiB"),  # 2^80 bytes: beyond the 42-bit space
        ("1TiB", "is more than the 512GiB the simulator backs"),
    ):
        message = _refused(f"{_OK}machine: {{memory: {memory}}}\n")
        assert message.startswith("s.yaml:3: machine.memory: ") and reason in message
    assert parse_scenario(f"{_OK}machine: {{memory: 512GiB}}\n").machine.memory == 512 << 30
