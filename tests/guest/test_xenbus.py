"""xenbus end to end: a guest's request travels through its xenstore ring and event
channel to xenstored in dom0 and the reply comes back the same way."""

from __future__ import annotations

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.guest.xenbus import XsReply
from framework.hw970.core import Core
from tests.xen.xenharness import Caller, domain_named, quickstart


def test_guest_requests_reach_xenstored_through_the_ring_and_permissions_hold() -> None:
    sim = quickstart("4ms")
    sim.run()
    dom = domain_named(sim, "guest2")
    k = sim.guests.kernels[dom.domid]
    core = Caller(sim, dom).core
    replies: dict[str, XsReply] = {}

    def keep(name: str):
        return lambda _c, r: replies.__setitem__(name, r)

    def ask(c: Core) -> None:
        assert k.xenbus is not None
        k.xenbus.write(c, "data/greeting", "hello", keep("write"))
        k.xenbus.read(c, "data/greeting", keep("read"))
        k.xenbus.read(c, "/local/domain/0/secret", keep("dom0"))
        k.xenbus.read(c, f"/local/domain/{dom.domid}/nope", keep("missing"))

    sim.guests.current_core = core
    try:
        ask(core)
    finally:
        sim.guests.current_core = None
    sim.env.run(until=sim.env.now + 2_000_000)
    assert replies["write"].error is None
    assert replies["read"].payload == b"hello"
    assert replies["missing"].error == "ENOENT"
    # dom0's home is not readable by a guest: denied, not "missing".
    assert replies["dom0"].error == "EACCES"
    # The daemon holds the value; the trace shows each request as xenstored saw it.
    df = sim.rec.to_dataframe().xen.wide()
    reqs = df[(df["kind"] == "xs.request") & (df["dom"] == dom.domid)]
    assert any("EACCES" in t for t in reqs["text"])
