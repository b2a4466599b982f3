"""What xenstored stores: node paths and their rules, nodes with per-domain permissions,
watches, transactions and client connections (Xen 3.0.4's `xenstored_core.c`,
`xenstored_transaction.c`); the daemon that serves requests over them is
`framework.dom0.xenstored`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from framework.guest.xs_wire import XS_PERM_OWNER, XS_PERM_READ, XS_PERM_WRITE, Perm, XsMsg

if TYPE_CHECKING:
    from framework.dom0.xenstored import Xenstored

#: Path limits (xs_wire.h): an absolute path, and a relative one before the domain's home
#: is put in front of it.
XENSTORE_ABS_PATH_MAX: Final = 3072
XENSTORE_REL_PATH_MAX: Final = 2048
#: Characters xenstored allows in a node path (valid_chars).
PATH_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@")
#: The watch paths that fire on domain arrival and departure instead of on nodes.
INTRODUCE_DOMAIN: Final = "@introduceDomain"
RELEASE_DOMAIN: Final = "@releaseDomain"
#: Nodes xenstored starts with (all owned by dom0, no access for anyone else).
STANDARD_NODES: Final = (
    "/",
    "/local",
    "/local/domain",
    "/local/domain/0",
    "/tool",
    "/tool/xenstored",
    "/vm",
)

DOM0: Final = 0
_ALL: Final = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER


def domain_path(domid: int) -> str:
    """A domain's home, where its relative paths start."""
    return f"/local/domain/{domid}"


def is_valid_path(path: str) -> bool:
    """An absolute node path as xenstored accepts it: allowed characters only, no empty
    component, no trailing '/' (except the root), at most XENSTORE_ABS_PATH_MAX bytes."""
    return (
        path.startswith("/")
        and len(path) <= XENSTORE_ABS_PATH_MAX
        and "//" not in path
        and (path == "/" or not path.endswith("/"))
        and all(c in PATH_CHARS for c in path)
    )


def parent_path(path: str) -> str:
    if path == "/":
        raise ValueError("the root node has no parent")
    head = path.rsplit("/", 1)[0]
    return head or "/"


def is_child(child: str, parent: str) -> bool:
    """`child` is `parent` or below it (xenstored's is_child)."""
    if parent == "/":
        return True
    return child == parent or child.startswith(parent + "/")


def perm_for(domid: int, perms: tuple[Perm, ...]) -> int:
    """The XS_PERM_* bits `domid` has on a node (perm_for_conn): dom0 and the owner have
    all; a later entry naming `domid` decides; otherwise the owner's entry is the default."""
    if domid == DOM0 or perms[0].domid == domid:
        return _ALL
    for p in perms[1:]:
        if p.domid == domid:
            return p.bits
    return perms[0].bits


@dataclass(frozen=True, slots=True)
class Node:
    """One node, never mutated: a change stores a new Node, so a transaction can keep the
    version it saw.  `generation` is the store's change counter when it was stored."""

    value: bytes
    perms: tuple[Perm, ...]
    children: tuple[str, ...] = ()
    generation: int = 0


@dataclass
class Watch:
    node: str  # canonical path, or "@introduceDomain" / "@releaseDomain"
    token: bytes
    relative: bool  # registered relative to the home: events are reported relative too


@dataclass
class Transaction:
    """A transaction's view: the committed nodes it has looked at (as it first saw them)
    and its own changes, applied only on a conflict-free commit."""

    id: int
    domid: int
    start_generation: int
    store: dict[str, Node] = field(repr=False)
    seen: dict[str, Node | None] = field(default_factory=dict)
    written: dict[str, Node | None] = field(default_factory=dict)
    changes: dict[str, bool] = field(default_factory=dict)  # path -> recurse, in order

    def get(self, path: str) -> Node | None:
        if path in self.written:
            return self.written[path]
        if path not in self.seen:
            self.seen[path] = self.store.get(path)
        return self.seen[path]

    def put(self, path: str, node: Node) -> None:
        self.written[path] = node

    def remove(self, path: str) -> None:
        self.written[path] = None

    def changed(self, path: str, recurse: bool) -> None:
        self.changes[path] = self.changes.get(path, False) or recurse

    def conflict(self) -> str | None:
        """The first node that changed under the transaction, or None."""
        for path, snap in self.seen.items():
            now = self.store.get(path)
            if snap is None:
                moved = now is not None
            else:
                moved = now is None or now.generation != snap.generation
                moved = moved or snap.generation > self.start_generation
            if moved:
                return path
        return None


class Committed:
    """The committed store as a view: changes land at once and fire watches at once."""

    def __init__(self, daemon: Xenstored) -> None:
        self._d = daemon

    def get(self, path: str) -> Node | None:
        return self._d._nodes.get(path)

    def put(self, path: str, node: Node) -> None:
        self._d._generation += 1
        self._d._nodes[path] = replace(node, generation=self._d._generation)

    def remove(self, path: str) -> None:
        del self._d._nodes[path]

    def changed(self, path: str, recurse: bool) -> None:
        self._d._fire_watches(path, recurse)


View = Transaction | Committed


@dataclass
class Connection:
    """A domain's link to xenstored (its ring, or dom0's socket)."""

    domid: int
    mfn: int = 0
    port: int = 0
    watches: list[Watch] = field(default_factory=list)
    transactions: dict[int, Transaction] = field(default_factory=dict)
    next_tx_id: int = 1

    @property
    def home(self) -> str:
        return domain_path(self.domid)


Outbox = list[tuple[int, XsMsg]]
Handler = Callable[[Connection, View, XsMsg], bytes]
