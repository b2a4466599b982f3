"""The guest OS's boot: which VCPU's upcall handles which event channel port."""

from __future__ import annotations

from framework.guest.runtime import AREA_BASE, AREA_EVTMASK, AREA_SIZE
from framework.scenario import parse_scenario
from framework.simulation import Simulation

TWO_VCPUS = """
name: bind
duration: 20ms
domains:
  - name: g
    memory: 64MiB
    vcpus: 2
    workloads: [{kind: timer, hz: 1000, vcpu: 1}]
"""


def _mask_bit(sim: Simulation, domid: int, vcpu: int, port: int) -> bool:
    """Bit `port` of VCPU `vcpu`'s binding mask, read from the guest's memory."""
    dom = sim.xen.domains[domid]
    addr = (dom.rma_mfn << 12) + AREA_BASE + AREA_SIZE * vcpu + AREA_EVTMASK + (port >> 6) * 8
    return bool(int.from_bytes(sim.machine.memory.read(addr, 8), "big") >> (port & 63) & 1)


def test_a_port_bound_to_vcpu_1_is_in_its_mask_and_no_longer_in_vcpu_0s() -> None:
    sim = Simulation(parse_scenario(TWO_VCPUS, "<test>"))
    try:
        sim.run()
        domid = sim.domids["g"]
        k = next(k for k in sim.guests.kernels.values() if k.domid == domid)
        timer_port = k.timer_ports[1]
        assert _mask_bit(sim, domid, 1, timer_port)
        assert not _mask_bit(sim, domid, 0, timer_port)
        # the xenstore port stays with VCPU 0, where every port starts
        store = k.spec.store_evtchn
        assert _mask_bit(sim, domid, 0, store) and not _mask_bit(sim, domid, 1, store)
    finally:
        sim.close()
