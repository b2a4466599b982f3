"""sched_op, set_timer_op and vcpu_op check their arguments as Xen 3.1's common code does."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.xen.public.errno import EINVAL, ENOENT
from framework.xen.public.sched import SCHED_SHUTDOWN, SCHEDOP_shutdown, SHUTDOWN_crash
from framework.xen.public.vcpu import VCPUOP_is_up
from framework.xen.public.xen import (
    HYPERVISOR_sched_op,
    HYPERVISOR_set_timer_op,
    HYPERVISOR_vcpu_op,
    xen_mark,
)
from framework.xen.public.xencomm import build_descriptor
from tests.xen.xenharness import ARG, DESC, Caller, domain_named, quickstart

SET_TIMER = xen_mark(HYPERVISOR_set_timer_op)


@pytest.mark.parametrize("ahead", [1 << 63, (1 << 64) - 1, (1 << 50) + 10**6, 1 << 60])
def test_a_huge_timer_deadline_fires_100_ms_from_now_as_xen_does(
    caller: Callable[[str], Caller], ahead: int
) -> None:
    """Negative as s_time_t, or 2**50 ns or more ahead: Xen's 'huge timeout' rule arms the
    timer 100 ms from now (common/schedule.c), rather than never."""
    c = caller("guest3")
    v = c.dom.vcpus[0]
    now = c.core.now_ns()
    deadline = ahead if ahead >> 63 else now + ahead
    assert c.call(SET_TIMER, deadline) == 0
    assert v.timer_deadline is not None
    assert 0 <= v.timer_deadline - now - 100_000_000 < 10_000  # 100 ms from the call


def test_a_timer_deadline_below_2_to_the_50_ns_ahead_is_kept(
    caller: Callable[[str], Caller],
) -> None:
    c = caller("guest3")
    v = c.dom.vcpus[0]
    deadline = c.core.now_ns() + (1 << 50) - 1
    assert c.call(SET_TIMER, deadline) == 0
    assert v.timer_deadline == deadline
    assert c.call(SET_TIMER, 0) == 0 and v.timer_deadline is None  # 0 cancels


def test_a_shutdown_reason_is_its_low_byte() -> None:
    sim = quickstart("5ms")
    sim.run()
    c = Caller(sim, domain_named(sim, "guest2"))
    c.write(ARG, SCHED_SHUTDOWN.pack(reason=0x100 | SHUTDOWN_crash))
    c.write(DESC, build_descriptor([ARG]))
    assert c.call(xen_mark(HYPERVISOR_sched_op), SCHEDOP_shutdown, DESC) == 0
    assert c.dom.shutdown_reason == SHUTDOWN_crash  # (u8)reason, as domain_shutdown takes it
    df = sim.rec.to_dataframe().xen.wide()
    shutdown = df[(df["kind"] == "dom.shutdown") & (df["dom"] == c.dom.domid)]
    assert list(shutdown["text"]) == ["crash"]


def test_a_vcpu_id_beyond_max_virt_cpus_is_einval_one_not_there_enoent(
    caller: Callable[[str], Caller],
) -> None:
    c = caller("guest3")
    vcpu_op = xen_mark(HYPERVISOR_vcpu_op)
    assert c.call(vcpu_op, VCPUOP_is_up, 1) == -ENOENT
    assert c.call(vcpu_op, VCPUOP_is_up, 32) == -EINVAL
    assert c.call(vcpu_op, VCPUOP_is_up, (1 << 64) - 1) == -EINVAL
