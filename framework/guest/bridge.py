"""dom0's software bridge (``brctl addbr xenbr0``) and the Ethernet II framing it reads.

A bridge learns, from each frame's source MAC, which port that address sits behind, and
forwards by destination MAC: a known unicast address goes to its one port (or nowhere,
when it sits behind the port the frame came in on), an unknown, multicast or broadcast
address is flooded to every other port.  This is the learning bridge of IEEE 802.1D and
Linux's ``net/bridge``, minus spanning tree and address ageing: the simulated topologies
have no loops and a run's learned addresses never move, so the forwarding database keeps
an address until its port is detached.

The bridge is pure logic over ports it is given (netback's vifs); it never touches memory
or time, so it is the same in a unit test and in a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

from framework.hw970.link import ETH_HLEN
from framework.xen.public.layout import Layout

__all__ = [
    "ARPHRD_ETHER",
    "ARPOP_REPLY",
    "ARP_HEADER",
    "BROADCAST_MAC",
    "ETHERNET_HEADER",
    "ETH_ALEN",
    "ETH_HLEN",
    "ETH_P_ARP",
    "ETH_P_IP",
    "Bridge",
    "BridgePort",
    "EthernetHeader",
    "Forwarding",
    "build_frame",
    "format_mac",
    "gratuitous_arp",
    "is_multicast",
    "parse_mac",
]

ETH_ALEN: Final = 6
#: EtherTypes (linux/if_ether.h): IPv4, what netstream frames claim to carry, and ARP.
ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ARPHRD_ETHER: Final = 1
ARPOP_REPLY: Final = 2
BROADCAST_MAC: Final = b"\xff" * ETH_ALEN

#: struct ethhdr: destination, source (6 bytes each) and the big-endian EtherType.
ETHERNET_HEADER: Final = Layout(
    "ethhdr", ETH_HLEN, {"h_dest": (0, ETH_ALEN), "h_source": (6, ETH_ALEN), "h_proto": (12, 2)}
)


#: struct arphdr for Ethernet/IPv4 (RFC 826): hardware and protocol types and sizes, the
#: operation, then sender and target hardware (MAC) and protocol (IPv4) addresses.
ARP_HEADER: Final = Layout(
    "arphdr",
    28,
    {
        "ar_hrd": (0, 2),
        "ar_pro": (2, 2),
        "ar_hln": (4, 1),
        "ar_pln": (5, 1),
        "ar_op": (6, 2),
        "ar_sha": (8, ETH_ALEN),
        "ar_sip": (14, 4),
        "ar_tha": (18, ETH_ALEN),
        "ar_tip": (24, 4),
    },
)


def parse_mac(text: str) -> bytes:
    """ "00:16:3e:00:01:00" -> its six bytes; anything else is refused with the reason."""
    parts = text.split(":")
    if len(parts) != ETH_ALEN or not all(
        len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise ValueError(f"MAC address {text!r} is not six ':'-separated hex byte pairs")
    return bytes(int(p, 16) for p in parts)


def format_mac(mac: bytes) -> str:
    if len(mac) != ETH_ALEN:
        raise ValueError(f"a MAC address is {ETH_ALEN} bytes, got {len(mac)}")
    return ":".join(f"{b:02x}" for b in mac)


def is_multicast(mac: bytes) -> bool:
    """The I/G bit (bit 0 of the first byte): group addresses, broadcast included."""
    return bool(mac[0] & 1)


class EthernetHeader(NamedTuple):
    """The 14 bytes in front of every frame."""

    dst: bytes
    src: bytes
    ethertype: int

    def pack(self) -> bytes:
        for name, mac in (("destination", self.dst), ("source", self.src)):
            if len(mac) != ETH_ALEN:
                raise ValueError(f"{name} MAC is {len(mac)} bytes, not {ETH_ALEN}")
        if not 0 <= self.ethertype <= 0xFFFF:
            raise ValueError(f"EtherType {self.ethertype:#x} does not fit 16 bits")
        return ETHERNET_HEADER.pack(
            h_dest=int.from_bytes(self.dst, "big"),
            h_source=int.from_bytes(self.src, "big"),
            h_proto=self.ethertype,
        )

    @classmethod
    def unpack(cls, frame: bytes) -> EthernetHeader:
        if len(frame) < ETH_HLEN:
            raise ValueError(
                f"a {len(frame)}-byte frame is shorter than the {ETH_HLEN}-byte Ethernet header"
            )
        v = ETHERNET_HEADER.unpack(frame)
        return cls(
            v["h_dest"].to_bytes(ETH_ALEN, "big"),
            v["h_source"].to_bytes(ETH_ALEN, "big"),
            v["h_proto"],
        )


def build_frame(dst: bytes, src: bytes, payload: bytes, ethertype: int = ETH_P_IP) -> bytes:
    """An Ethernet II frame: header then payload (no FCS: the link model carries none)."""
    return EthernetHeader(dst, src, ethertype).pack() + payload


def gratuitous_arp(mac: bytes, ip: int = 0) -> bytes:
    """The broadcast ARP reply a netfront sends when it connects (Linux netfront's
    ``send_fake_arp``), so that bridges learn its MAC before it has anything to say."""
    mac_int = int.from_bytes(mac, "big")
    arp = ARP_HEADER.pack(
        ar_hrd=ARPHRD_ETHER,
        ar_pro=ETH_P_IP,
        ar_hln=ETH_ALEN,
        ar_pln=4,
        ar_op=ARPOP_REPLY,
        ar_sha=mac_int,
        ar_sip=ip,
        ar_tha=mac_int,
        ar_tip=ip,
    )
    return build_frame(BROADCAST_MAC, mac, arp, ETH_P_ARP)


class BridgePort(Protocol):
    """What the bridge needs of a port: a name for messages (e.g. ``vif5.0``)."""

    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=BridgePort)


@dataclass(frozen=True)
class Forwarding(Generic[P]):
    """Where one frame goes: the egress ports (in attach order) and how it was decided
    ("unicast", "flood" for unknown destinations, "broadcast" for group addresses,
    "filtered" when the destination sits behind the ingress port)."""

    ports: tuple[P, ...]
    how: str


class Bridge(Generic[P]):
    """A learning bridge over ports of type P; ports are compared by identity."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ports: list[P] = []
        #: The forwarding database: MAC -> the port it was last seen behind.
        self.fdb: dict[bytes, P] = {}
        self.forwarded = 0
        self.flooded = 0
        self.filtered = 0

    def __repr__(self) -> str:
        return f"Bridge({self.name!r}, ports={[p.name for p in self.ports]})"

    def _index(self, port: P) -> int:
        for i, p in enumerate(self.ports):
            if p is port:
                return i
        return -1

    def attach(self, port: P) -> None:
        """``brctl addif``: the port starts taking part in forwarding."""
        if self._index(port) >= 0:
            raise ValueError(f"bridge {self.name}: port {port.name} is already attached")
        self.ports.append(port)

    def detach(self, port: P) -> None:
        """``brctl delif``: the port leaves, and every address learned behind it is forgotten."""
        i = self._index(port)
        if i < 0:
            raise ValueError(f"bridge {self.name}: port {port.name} is not attached")
        del self.ports[i]
        for mac in [m for m, p in self.fdb.items() if p is port]:
            del self.fdb[mac]

    def lookup(self, mac: bytes) -> P | None:
        return self.fdb.get(mac)

    def forward(self, frame: bytes, ingress: P) -> Forwarding[P]:
        """Learn the frame's source behind `ingress` and say where the frame goes."""
        if self._index(ingress) < 0:
            raise ValueError(
                f"bridge {self.name}: frame from port {ingress.name}, which is not attached"
            )
        hdr = EthernetHeader.unpack(frame)
        if not is_multicast(hdr.src):  # a group address is never a station's source
            self.fdb[hdr.src] = ingress
        others = tuple(p for p in self.ports if p is not ingress)
        if is_multicast(hdr.dst):
            self.flooded += 1
            return Forwarding(others, "broadcast")
        out = self.fdb.get(hdr.dst)
        if out is None:
            self.flooded += 1
            return Forwarding(others, "flood")
        if out is ingress:
            self.filtered += 1
            return Forwarding((), "filtered")
        self.forwarded += 1
        return Forwarding((out,), "unicast")
