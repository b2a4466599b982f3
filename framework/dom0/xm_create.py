"""`xm create` for the guests of a scenario: what xend does between a config and a running
guest.

For each group of guests due at one time (a pingpong pair is built together, since each
side needs the other's domid), the toolstack builds the domains with real domctl hypercalls,
xend wires the interdomain channels both sides' kernels will find in their devtrees, loads
and starts each kernel, introduces it to xenstored and xenconsoled, then attaches its disks
and links and writes its device directories.  A failed step is reported on dom0's console
as `xm create <name>: Error: ...` and leaves no half-built domain behind.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from framework.dom0.devctl import vbd_devid, vif_mac
from framework.dom0.store_rings import StoreService
from framework.dom0.toolstack import DomainConfig, Toolstack
from framework.dom0.xenconsoled import ConsoleService
from framework.dom0.xend import DeviceConfig, Xend
from framework.errors import BuildError
from framework.guest.kernel import GuestKernel
from framework.guest.kmem import KernelMemory
from framework.guest.pingpong import PEER_NODE as PINGPONG_PEER_NODE
from framework.hw970.core import Core
from framework.scenario import (
    BlockioWorkload,
    ComputeWorkload,
    ConsoleWorkload,
    DomainSpec,
    NetstreamWorkload,
    PingpongWorkload,
    Scenario,
    SharedmemWorkload,
    TimerWorkload,
    VbdSpec,
    Workload,
    is_dom0_name,
)
from framework.xen.public.devtree import WorkloadValue, workload_instance
from framework.xen.public.domctl import XEN_DOMCTL_destroydomain


class DeviceBay(Protocol):
    """The machine's disks and links as xend attaches them to a guest's backends."""

    def add_vbd(
        self, domid: int, devid: int, image_path: Path, size: int | None, writable: bool
    ) -> object:
        """Give vbd (domid, devid) a disk over `image_path`, made sparse at `size` if it
        does not exist, opened as it is if `size` is None (OSError/ValueError if it
        cannot); returns the device model."""
        ...

    def add_vif(self, domid: int, devid: int) -> object:
        """Give vif (domid, devid) a link to its bridge (returns the link model)."""
        ...

    def remove_vbd(self, domid: int, devid: int) -> None:
        """Let vbd (domid, devid)'s disk go (detached): its image closes once the disk is
        idle, and the device number may be attached again."""
        ...


class Dom0Port:
    """dom0's kernel as the toolstack's hypercall port, for the native call in progress."""

    def __init__(self, kernel: GuestKernel, core: Core) -> None:
        self.kernel = kernel
        self.core = core

    def hypercall(self, r3: int, *args: int) -> int:
        return self.kernel.hypercall(self.core, r3, *args)

    def write(self, gpa: int, data: bytes) -> None:
        KernelMemory(self.core).write(gpa, data)

    def read(self, gpa: int, n: int) -> bytes:
        return KernelMemory(self.core).read(gpa, n)

    def view(self, gpa: int, n: int, write: bool) -> memoryview:
        state = self.core.state
        assert state is not None
        if gpa + n <= state.tr.rma_size:  # dom0's kernel memory in its RMA: contiguous
            return self.core.memory.view(state.tr.rma_base + gpa, n, write)
        mem = KernelMemory(self.core)
        first = mem.maddr(gpa, write)
        for off in range(4096 - (gpa & 0xFFF), n, 4096):
            if mem.maddr(gpa + off, write) != first + off:
                raise BuildError(f"dom0 buffer at {gpa:#x} is not machine-contiguous")
        return self.core.memory.view(first, n, write)

    def console(self, text: str) -> None:
        self.kernel.console(self.core, text)


def workload_properties(loads: tuple[Workload, ...]) -> dict[str, WorkloadValue]:
    """The /xen/workload devtree properties a kernel reads its own workloads from (the
    device workloads are added by `XmCreate`, which knows the devices)."""
    props: dict[str, WorkloadValue] = {}
    compute = [w.vcpu for w in loads if isinstance(w, ComputeWorkload)]
    timers = [w for w in loads if isinstance(w, TimerWorkload)]
    if compute:
        props["compute-vcpus"] = sorted(set(compute))
    for i, t in enumerate(timers):
        # Each timer keeps its own rate: `timer.<i>.hz` / `timer.<i>.vcpu`.
        props.update(workload_instance("timer", i, {"hz": t.hz, "vcpu": t.vcpu}))
    consoles = [w for w in loads if isinstance(w, ConsoleWorkload)]
    for i, w in enumerate(consoles):
        assert w.text is not None  # filled in from the domain's name by the scenario
        props.update(
            workload_instance(
                "console", i, {"text": w.text, "every": w.every, "count": w.count, "vcpu": w.vcpu}
            )
        )
    return props


def stream_seed(seed: int, name: str, what: str) -> int:
    """A workload's own 32-bit seed: from the scenario seed and where it runs."""
    return random.Random(f"{seed}:{name}:{what}").getrandbits(32)


class XmCreate:
    """Builds the scenario's guests as dom0's toolstack and xend do."""

    def __init__(
        self,
        scenario: Scenario,
        make_toolstack: Callable[[Dom0Port], Toolstack],
        devices: DeviceBay,
        disk_dir: Path,
        macs: dict[tuple[int, int], str],
    ) -> None:
        self.scenario = scenario
        self.make_toolstack = make_toolstack
        self.devices = devices
        self.disk_dir = disk_dir
        self.macs = macs
        self.domids: dict[str, int] = {}
        self.names: dict[int, str] = {0: "Domain-0"}
        self.errors: list[str] = []

    def build_group(
        self,
        kernel: GuestKernel,
        core: Core,
        group: list[int],
        xend: Xend,
        store: StoreService,
        consoled: ConsoleService,
    ) -> None:
        """Create, wire, start and plug the guests `group` (indices into the scenario)."""
        port = Dom0Port(kernel, core)
        ts = self.make_toolstack(port)
        doms = self.scenario.domains
        built: list[int] = []
        for i in group:
            d = doms[i]
            try:
                domid = ts.create(config_of(d))
                self.names[domid] = d.name
                self.domids[d.name] = domid
                built.append(i)
            except BuildError as err:
                self._build_failed(ts, port, d.name, str(err))
        props = {
            i: {**workload_properties(doms[i].workloads), **self.io_props(doms[i], i)}
            for i in built
        }
        self._wire_pingpong(ts, built, props)
        self._grant_props(ts.domids, built, props)
        for i in built:
            d = doms[i]
            try:
                console_port, store_port = ts.load_and_start(config_of(d), props[i])
            except BuildError as err:
                self._build_failed(ts, port, d.name, str(err))
                continue
            # xend's part: introduce the domain to xenstored, connect its console.
            domid = ts.domids[d.name]
            store.introduce(core, domid, store_port)
            consoled.connect(core, domid, console_port, d.name)
            self._plug_devices(core, i, domid, xend)

    def _wire_pingpong(
        self, ts: Toolstack, built: list[int], props: dict[int, dict[str, WorkloadValue]]
    ) -> None:
        """Allocate each pingpong pair's channel on the pong side, for both devtrees."""
        doms = self.scenario.domains
        for i in built:
            for w in doms[i].workloads:
                if not (isinstance(w, PingpongWorkload) and w.role == "pong"):
                    continue
                j = next((k for k in built if doms[k].name == w.peer), None)
                if j is None:
                    continue
                pong_id, ping_id = ts.domids[doms[i].name], ts.domids[doms[j].name]
                p = ts.alloc_unbound(pong_id, ping_id)
                props[i].update(
                    {
                        "pingpong-role": "pong",
                        "pingpong-port": p,
                        "pingpong-peer": ping_id,
                        "pingpong-vcpu": w.vcpu,
                        "pingpong-rounds": 0,
                    }
                )
                ping = next(x for x in doms[j].workloads if isinstance(x, PingpongWorkload))
                props[j].update(
                    {
                        "pingpong-role": "ping",
                        "pingpong-port": p,
                        "pingpong-peer": pong_id,
                        "pingpong-vcpu": ping.vcpu,
                        "pingpong-rounds": ping.rounds,
                    }
                )

    def _grant_props(
        self, domids: dict[str, int], built: list[int], props: dict[int, dict[str, WorkloadValue]]
    ) -> None:
        """Each grant for its granter's devtree (`sharedmem.<i>.*`, with its workload's
        rounds), and for a guest peer's (`sharedmem-peer.<i>.*`): both learn the other's
        domid from the toolstack, as split drivers learn their backend's."""
        doms = self.scenario.domains
        index = {doms[i].name: i for i in built}
        peer_count: dict[int, int] = {}
        for n, g in enumerate(self.scenario.grants):
            i = index.get(g.granter)
            if i is None:
                continue
            peer = 0 if is_dom0_name(g.peer) else domids.get(g.peer)
            if peer is None:
                continue  # the peer is built with the granter (creation_plan)
            params: dict[str, WorkloadValue] = {
                "name": g.name,
                "peer": peer,
                "pages": g.pages,
                "readonly": int(g.access == "ro"),
            }
            for w in doms[i].workloads:
                if isinstance(w, SharedmemWorkload) and w.grant == g.name:
                    params.update({"every": w.every, "rounds": w.rounds, "vcpu": w.vcpu})
            props[i].update(workload_instance("sharedmem", n, params))
            j = index.get(g.peer)
            if j is not None:
                c = peer_count[j] = peer_count.get(j, -1) + 1
                granter = domids[g.granter]
                props[j].update(
                    workload_instance("sharedmem-peer", c, {"name": g.name, "granter": granter})
                )

    def _plug_devices(self, core: Core, i: int, domid: int, xend: Xend) -> None:
        """Attach the guest's disks and links, then let xend write its device nodes."""
        self.plug_spec(core, self.scenario.domains[i], domid, xend, i)

    def plug_spec(self, core: Core, d: DomainSpec, domid: int, xend: Xend, i: int = -1) -> None:
        """Attach the disks and links of guest `d` (the scenario's `i`-th; -1: a restored
        guest, whose vbds name their image files), then write its device nodes."""
        configs: list[DeviceConfig] = []
        for vbd in d.vbds:
            config = self.vbd_device(core, xend, d.name, domid, vbd, "xm create")
            if config is not None:
                configs.append(config)
        for n, vif in enumerate(d.vifs):
            configs.append(self.vif_device(domid, n, vif.bridge, self.macs[(i, n)]))
        if configs:
            xend.add_devices(core, domid, configs)

    def announce_restored(self, core: Core, k: GuestKernel, d: DomainSpec, domid: int) -> None:
        """A restored guest's pingpong peer learns its new domid: xend writes it in the
        peer's `data/pingpong/peer`, which the peer's kernel watches (as xend writes a
        restored frontend's backend entries in a driver domain's home)."""
        assert k.xenbus is not None
        for w in d.workloads:
            peer = self.domids.get(w.peer) if isinstance(w, PingpongWorkload) else None
            if peer is not None and peer != domid:
                k.xenbus.write(core, f"/local/domain/{peer}/{PINGPONG_PEER_NODE}", str(domid))

    def vbd_device(
        self, core: Core, xend: Xend, name: str, domid: int, vbd: VbdSpec, verb: str
    ) -> DeviceConfig | None:
        """Give guest `name`'s vbd its disk and return its device nodes (None, said on
        dom0's console as `<verb> <name>: Error: ...`, if the disk cannot be had)."""
        devid = vbd_devid(vbd.name)
        image = self.scenario.image_path(vbd)
        shown = vbd.image
        # The user's image is opened as it is, never created (size None); only a disk
        # of the run directory's is made, sparse, at the scenario's size.
        size = None
        if image is None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            image = self.disk_dir / f"{name}-{vbd.name}.img"
            shown = f"disks/{image.name}"
            size = vbd.size
        try:
            self.devices.add_vbd(domid, devid, image, size, writable=vbd.mode == "w")
        except (OSError, ValueError) as err:
            self._device_failed(xend, core, name, f"vbd {vbd.name}: {err}", verb)
            return None
        return DeviceConfig(
            "vbd",
            devid,
            {"params": str(shown), "mode": vbd.mode, "type": "file", "dev": vbd.name},
            {"virtual-device": str(devid), "device-type": "disk"},
        )

    @staticmethod
    def default_mac(index: int, devid: int) -> str:
        """The MAC of vif `devid` of the scenario's guest `index` when it names none."""
        return vif_mac(index + 1, devid)

    def vif_device(self, domid: int, devid: int, bridge: str, mac: str) -> DeviceConfig:
        """Give vif `devid` its link and return its device nodes."""
        self.devices.add_vif(domid, devid)
        return DeviceConfig(
            "vif",
            devid,
            {"bridge": bridge, "mac": mac, "handle": str(devid)},
            {"mac": mac, "handle": str(devid)},
        )

    def _device_failed(
        self, xend: Xend, core: Core, name: str, why: str, verb: str = "xm create"
    ) -> None:
        self.errors.append(f"{verb} {name}: Error: {why}")
        xend.k.console(core, f"{verb} {name}: Error: {why}")

    def io_props(self, d: DomainSpec, i: int = -1) -> dict[str, WorkloadValue]:
        """Device workload properties of guest `d` (the scenario's `i`-th; -1: a restored
        guest, which has no vif): blockio per vbd, netstream per vif."""
        seed = self.scenario.seed
        props: dict[str, WorkloadValue] = {}
        for w in d.workloads:
            if isinstance(w, BlockioWorkload):
                devid = vbd_devid(w.device)
                params: dict[str, WorkloadValue] = {
                    "pattern": w.pattern,
                    "read-percent": w.read_percent,
                    "block-size": w.block_size,
                    "queue-depth": w.queue_depth,
                    "requests": w.requests,
                    "verify": int(w.verify),
                    "region": w.region or 0,
                    "seed": stream_seed(seed, d.name, w.device),
                    "vcpu": w.vcpu,
                }
                props.update(workload_instance("blockio", devid, params))
            elif isinstance(w, NetstreamWorkload):
                j = next(k for k, other in enumerate(self.scenario.domains) if other.name == w.peer)
                peer = self.scenario.domains[j]
                mine, peer_mac = next(
                    (n, self.macs[(j, m)])
                    for n, vif in enumerate(d.vifs)
                    for m, theirs in enumerate(peer.vifs)
                    if vif.bridge == theirs.bridge
                )
                params = {
                    "peer-mac": peer_mac,
                    "message-size": w.message_size,
                    "messages": w.messages,
                    "seed": stream_seed(seed, d.name, f"vif{mine}"),
                    "vcpu": w.vcpu,
                }
                props.update(workload_instance("netstream", mine, params))
        return props

    def _build_failed(self, ts: Toolstack, port: Dom0Port, name: str, why: str) -> None:
        self.errors.append(f"xm create {name}: Error: {why}")
        port.console(f"xm create {name}: Error: {why}")
        domid = ts.domids.pop(name, None)
        if domid is not None:
            self.names[domid] = f"{name} (not built)"
            self.domids.pop(name, None)
            ts.domctl(XEN_DOMCTL_destroydomain, domid)


def config_of(d: DomainSpec) -> DomainConfig:
    """The toolstack's configuration of a scenario's guest."""
    return DomainConfig(d.name, d.memory, d.vcpus, d.rma, d.weight, d.cap, d.affinity)


__all__ = [
    "DeviceBay",
    "Dom0Port",
    "XmCreate",
    "config_of",
    "stream_seed",
    "workload_properties",
]
