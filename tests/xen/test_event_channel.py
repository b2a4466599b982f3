"""EVTCHNOP_* check their arguments in Xen 3.1's order and with its errnos."""

from __future__ import annotations

from collections.abc import Callable

from framework.xen import evtchn
from framework.xen.domain import DomainState
from framework.xen.public.errno import EEXIST, EINVAL, ENOENT, EPERM
from framework.xen.public.event_channel import (
    EVTCHN_ALLOC_UNBOUND,
    EVTCHN_BIND_INTERDOMAIN,
    EVTCHN_BIND_IPI,
    EVTCHN_BIND_VCPU,
    EVTCHN_BIND_VIRQ,
    EVTCHN_PORT,
    EVTCHN_STATUS,
    EVTCHNOP_alloc_unbound,
    EVTCHNOP_bind_interdomain,
    EVTCHNOP_bind_ipi,
    EVTCHNOP_bind_vcpu,
    EVTCHNOP_bind_virq,
    EVTCHNOP_send,
    EVTCHNOP_status,
    EVTCHNSTAT_unbound,
)
from framework.xen.public.xen import DOMID_SELF, VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_DOM_EXC
from tests.xen.xenharness import Caller, domain_named, quickstart


def test_only_a_privileged_domain_names_a_domain_other_than_domid_self(
    caller: Callable[[str], Caller],
) -> None:
    """alloc_unbound and status: an unprivileged caller gets -EPERM for any id but
    DOMID_SELF, its own and ids of no domain included; dom0 may name any that exists."""
    guest, dom0 = caller("guest3"), caller("Domain-0")
    own = guest.dom.domid
    for dom in (own, 0, 0x7FEF):
        rc, _ = guest.op(EVTCHNOP_alloc_unbound, EVTCHN_ALLOC_UNBOUND, dom=dom, remote_dom=0)
        assert rc == -EPERM
        assert guest.op(EVTCHNOP_status, EVTCHN_STATUS, dom=dom, port=1)[0] == -EPERM
    rc, out = guest.op(EVTCHNOP_alloc_unbound, EVTCHN_ALLOC_UNBOUND, dom=DOMID_SELF, remote_dom=0)
    assert rc == 0
    rc, st = dom0.op(EVTCHNOP_status, EVTCHN_STATUS, dom=own, port=out["port"])
    assert (rc, st["status"], st["u_dom"]) == (0, EVTCHNSTAT_unbound, 0)


def test_status_of_a_port_beyond_the_table_is_einval(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    assert c.op(EVTCHNOP_status, EVTCHN_STATUS, dom=DOMID_SELF, port=4095)[0] == -EINVAL


def test_a_vcpu_the_domain_lacks_is_enoent(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")  # one VCPU
    rc, _ = c.op(EVTCHNOP_bind_virq, EVTCHN_BIND_VIRQ, virq=VIRQ_DEBUG, vcpu=5)
    assert rc == -ENOENT
    assert c.op(EVTCHNOP_bind_ipi, EVTCHN_BIND_IPI, vcpu=7)[0] == -ENOENT
    assert c.op(EVTCHNOP_bind_vcpu, EVTCHN_BIND_VCPU, port=1, vcpu=3)[0] == -ENOENT


def test_global_virqs_belong_to_vcpu_0_and_per_vcpu_ones_stay_put(
    caller: Callable[[str], Caller],
) -> None:
    dom0 = caller("Domain-0")  # two VCPUs
    assert len(dom0.dom.vcpus) == 2
    rc, _ = dom0.op(EVTCHNOP_bind_virq, EVTCHN_BIND_VIRQ, virq=VIRQ_CONSOLE, vcpu=1)
    assert rc == -EINVAL  # global: VCPU 0 only (virq_is_global)
    rc, _ = dom0.op(EVTCHNOP_bind_virq, EVTCHN_BIND_VIRQ, virq=VIRQ_DOM_EXC, vcpu=0)
    assert rc == -EEXIST  # dom0's xenstored bound it at boot
    rc, out = dom0.op(EVTCHNOP_bind_virq, EVTCHN_BIND_VIRQ, virq=VIRQ_CONSOLE, vcpu=0)
    assert rc == 0
    assert dom0.op(EVTCHNOP_bind_vcpu, EVTCHN_BIND_VCPU, port=out["port"], vcpu=1)[0] == 0
    rc, out = dom0.op(EVTCHNOP_bind_virq, EVTCHN_BIND_VIRQ, virq=VIRQ_DEBUG, vcpu=1)
    assert rc == 0
    rc = dom0.op(EVTCHNOP_bind_vcpu, EVTCHN_BIND_VCPU, port=out["port"], vcpu=0)[0]
    assert rc == -EINVAL  # a per-VCPU VIRQ cannot move


def test_an_event_sent_to_a_paused_domain_waits_pending_for_its_unpause() -> None:
    """Xen's evtchn_set_pending marks the port whatever the receiver's pause state: a guest
    paused (or suspended for a save) finds completions and watch events pending when it
    runs again, instead of losing them for good."""
    sim = quickstart("5ms")
    sim.run()
    a, b = domain_named(sim, "guest1"), domain_named(sim, "guest2")
    ga, gb = Caller(sim, a), Caller(sim, b)
    rc, out = ga.op(
        EVTCHNOP_alloc_unbound, EVTCHN_ALLOC_UNBOUND, dom=DOMID_SELF, remote_dom=b.domid
    )
    assert rc == 0
    a_port = out["port"]
    rc, out = gb.op(
        EVTCHNOP_bind_interdomain,
        EVTCHN_BIND_INTERDOMAIN,
        remote_dom=a.domid,
        remote_port=a_port,
    )
    assert rc == 0
    b_port = out["local_port"]
    evtchn.clear_port(sim.machine.memory, b.shared_info_maddr, b_port)
    sim.xen.pause(b)
    assert b.state == DomainState.PAUSED
    rc, _ = ga.op(EVTCHNOP_send, EVTCHN_PORT, port=a_port)
    assert rc == 0
    assert evtchn.is_pending(sim.machine.memory, b.shared_info_maddr, b_port)
    assert b.state == DomainState.PAUSED
