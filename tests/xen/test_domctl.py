"""XEN_DOMCTL_* read their arguments as Xen 3.1 does (setvcpuaffinity, scheduler_op)."""

from __future__ import annotations

from framework.xen.public.domctl import (
    DOMCTL,
    XEN_DOMCTL_INTERFACE_VERSION,
    XEN_SCHEDULER_CREDIT,
    XEN_DOMCTL_SCHEDOP_getinfo,
    XEN_DOMCTL_SCHEDOP_putinfo,
    XEN_DOMCTL_scheduler_op,
    XEN_DOMCTL_setvcpuaffinity,
)
from framework.xen.public.errno import EINVAL
from framework.xen.public.xen import HYPERVISOR_domctl, xen_mark
from framework.xen.public.xencomm import XENCOMM_INLINE_FLAG, build_descriptor
from tests.xen.xenharness import ARG, DESC, Caller, domain_named, quickstart

BITMAP = 0x32000  # guest-physical, in dom0's RMA like ARG and DESC


def _domctl(c: Caller, cmd: int, domain: int, **fields: int) -> tuple[int, dict[str, int]]:
    c.write(ARG, DOMCTL.pack(cmd=cmd, interface_version=XEN_DOMCTL_INTERFACE_VERSION,
                             domain=domain, **fields))  # fmt: skip
    c.write(DESC, build_descriptor([ARG]))
    rc = c.call(xen_mark(HYPERVISOR_domctl), DESC)
    return rc, DOMCTL.unpack(c.read(ARG, DOMCTL.size))


def test_setvcpuaffinity_reads_at_most_nr_cpus_bits_whatever_nr_cpus_claims() -> None:
    sim = quickstart("5ms")
    sim.run()
    dom0 = Caller(sim, sim.xen.domains[0])
    guest = domain_named(sim, "guest3")
    dom0.write(BITMAP, b"\x02\x00")  # CPU 1 only; the map is two bytes long
    for nr in (2, 64, (1 << 32) - 1):
        rc, _ = _domctl(
            dom0,
            XEN_DOMCTL_setvcpuaffinity,
            guest.domid,
            vcpu=0,
            cpumap_bitmap=XENCOMM_INLINE_FLAG | BITMAP,
            cpumap_nr_cpus=nr,
        )
        assert rc == 0  # not -EFAULT for a map of 512 MiB that is not there
        assert guest.affinity[0] == frozenset({1})


def test_scheduler_op_takes_only_putinfo_and_getinfo_and_keeps_what_is_left_unset() -> None:
    sim = quickstart("5ms")
    sim.run()
    dom0 = Caller(sim, sim.xen.domains[0])
    guest = domain_named(sim, "guest1")
    sched = {"sched_id": XEN_SCHEDULER_CREDIT}
    rc, _ = _domctl(dom0, XEN_DOMCTL_scheduler_op, guest.domid, sched_cmd=2, **sched)
    assert rc == -EINVAL  # sched_adjust: neither putinfo nor getinfo
    put = {"sched_cmd": XEN_DOMCTL_SCHEDOP_putinfo, **sched}
    rc, _ = _domctl(
        dom0, XEN_DOMCTL_scheduler_op, guest.domid, sched_weight=512, sched_cap=50, **put
    )
    assert rc == 0 and (guest.weight, guest.cap) == (512, 50)
    rc, _ = _domctl(
        dom0, XEN_DOMCTL_scheduler_op, guest.domid, sched_weight=0, sched_cap=0xFFFF, **put
    )
    assert rc == 0 and (guest.weight, guest.cap) == (512, 50)  # 0 and ~0: leave them
    assert sim.xen.sched.vcpu(guest.domid, 0).domain.weight == 512
    get = {"sched_cmd": XEN_DOMCTL_SCHEDOP_getinfo, **sched}
    rc, out = _domctl(dom0, XEN_DOMCTL_scheduler_op, guest.domid, **get)
    assert (rc, out["sched_weight"], out["sched_cap"]) == (0, 512, 50)
