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
