"""Scenario schema and loader: every rule, with the exact field path and line in the message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from framework.errors import ScenarioError, Xen970Error
from framework.scenario import (
    ComputeWorkload,
    Scenario,
    TimerWorkload,
    load_scenario,
    parse_scenario,
    reference_markdown,
)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
BAD = sorted(DATA.glob("bad_*.yaml"))
MiB = 1 << 20


def _expected(path: Path) -> str:
    """The error a fixture documents in its first line: '# error: <line>: <path>: <reason>'."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# error: "), f"{path.name} lacks its '# error:' line"
    return first.removeprefix("# error: ")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_scenario_gives_one_line_with_file_line_and_field(path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message == f"{path}:{_expected(path)}"
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
