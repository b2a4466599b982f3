"""xenstored, the store daemon dom0 runs: a tree of nodes with per-domain permissions,
watches and transactions, serving one decoded request at a time.

Semantics follow the C xenstored of Xen 3.0.4 (`tools/xenstore/xenstored_core.c`,
`xenstored_watch.c`, `xenstored_domain.c`), with two later refinements, chosen because
they are what a reader of today's xenstored expects:
- a transaction conflicts only when a node it read or wrote (or an ancestor it had to look
  at) changed after it began, rather than when anything in the store changed;
- an unprivileged domain may not give a node away (set_perms changing the owner: EPERM).

Decisions worth knowing:
- XS_DIRECTORY lists children in the order they were created (xenstored appends a child
  to its parent's list); a removed and re-created child moves to the end.
- handle() returns the reply to the caller first, then the watch events, ordered by
  connection (dom0, then domains in the order they were introduced) and, within one
  connection, by the order its watches were registered.
- A watch event reaches a watcher only if it may read the changed node; a removed node is
  reported to every watcher of its path (xenstored lets EACCES through there so drivers
  see their peer's directory go).  Events on "@..." paths go to every watcher.
- introduce_domain() also creates the domain's home /local/domain/<domid> owned by the
  domain ("n<domid>") when it is missing, as xend does before introducing a domain.
- Quotas kept: 128 watches (E2BIG) and 10 open transactions (ENOSPC) per unprivileged
  domain.  Left out: the per-domain node count and node size quotas.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from framework.dom0.xenstore_tree import (
    DOM0,
    INTRODUCE_DOMAIN,
    PATH_CHARS,
    RELEASE_DOMAIN,
    STANDARD_NODES,
    XENSTORE_ABS_PATH_MAX,
    XENSTORE_REL_PATH_MAX,
    Committed,
    Connection,
    Handler,
    Node,
    Outbox,
    Transaction,
    View,
    Watch,
    domain_path,
    is_child,
    is_valid_path,
    parent_path,
    perm_for,
)
from framework.errors import SimulationError, XenstoreError, XsWireError
from framework.guest import xs_wire as xs
from framework.guest.xs_wire import XS_PERM_OWNER, XS_PERM_READ, XS_PERM_WRITE, Perm, XsMsg
from framework.xen.public.io.xs_wire import XENSTORE_PAYLOAD_MAX


class Xenstored:
    """The daemon: `handle` serves one request; `introduce_domain` and `release_domain`
    are the toolstack's calls.  Each returns the (domid, message) pairs to send."""

    def __init__(
        self, *, max_watches_per_domain: int = 128, max_transactions_per_domain: int = 10
    ) -> None:
        self.max_watches = max_watches_per_domain
        self.max_transactions = max_transactions_per_domain
        self._generation = 0
        self._nodes: dict[str, Node] = {}
        self._conns: dict[int, Connection] = {DOM0: Connection(DOM0)}
        self._events: Outbox = []
        self.debug_log: list[str] = []
        root_perms = (Perm(DOM0, "n"),)
        committed = Committed(self)
        for path in STANDARD_NODES:
            committed.put(path, Node(b"", root_perms))
            if path != "/":
                self._add_child(committed, path)
        self._handlers: dict[int, Handler] = {
            xs.XS_DEBUG: self._do_debug,
            xs.XS_DIRECTORY: self._do_directory,
            xs.XS_READ: self._do_read,
            xs.XS_GET_PERMS: self._do_get_perms,
            xs.XS_WATCH: self._do_watch,
            xs.XS_UNWATCH: self._do_unwatch,
            xs.XS_TRANSACTION_START: self._do_transaction_start,
            xs.XS_TRANSACTION_END: self._do_transaction_end,
            xs.XS_INTRODUCE: self._do_introduce,
            xs.XS_RELEASE: self._do_release,
            xs.XS_GET_DOMAIN_PATH: self._do_get_domain_path,
            xs.XS_WRITE: self._do_write,
            xs.XS_MKDIR: self._do_mkdir,
            xs.XS_RM: self._do_rm,
            xs.XS_SET_PERMS: self._do_set_perms,
            xs.XS_IS_DOMAIN_INTRODUCED: self._do_is_domain_introduced,
            xs.XS_RESUME: self._do_resume,
        }

    # -- the toolstack's side ---------------------------------------------------------
    def introduce_domain(
        self, domid: int, *, mfn: int = 0, port: int = 0, create_home: bool = True
    ) -> Outbox:
        """Accept requests from `domid` (its store page `mfn`, event channel `port`) and
        fire @introduceDomain.  Introducing a known domain again only records the new page
        and port (xenstored's way of rebinding after a resume)."""
        self._events = []
        self._introduce(domid, mfn, port, create_home)
        return self._take_events()

    def release_domain(self, domid: int) -> Outbox:
        """Forget `domid`: its watches and open transactions go, then @releaseDomain fires.
        Its nodes stay; removing its home is the toolstack's job."""
        self._events = []
        self._release(domid)
        return self._take_events()

    def domains_shut_down(self) -> Outbox:
        """VIRQ_DOM_EXC found a guest newly shut down (xenstored's domain_cleanup): fire
        @releaseDomain, so the toolstack looks at its domains."""
        self._events = []
        self._fire_watches(RELEASE_DOMAIN, False)
        return self._take_events()

    def _introduce(self, domid: int, mfn: int, port: int, create_home: bool) -> None:
        if not 0 < domid <= xs.DOMID_MAX:
            raise xs.refused("EINVAL", f"cannot introduce domid {domid}")
        conn = self._conns.get(domid)
        if conn is not None:
            conn.mfn, conn.port = mfn, port
            return
        self._conns[domid] = Connection(domid, mfn, port)
        home = domain_path(domid)
        committed = Committed(self)
        if create_home and committed.get(home) is None:
            self._create(self._conns[DOM0], committed, home, b"")
            node = committed.get(home)
            assert node is not None
            committed.put(home, replace(node, perms=(Perm(domid, "n"),)))
            committed.changed(home, False)
        self._fire_watches(INTRODUCE_DOMAIN, False)

    def _release(self, domid: int) -> None:
        if domid == DOM0:
            raise xs.refused("EINVAL", "dom0 cannot be released from xenstored")
        if domid not in self._conns:
            raise xs.refused("ENOENT", f"domain {domid} was never introduced")
        del self._conns[domid]
        self._fire_watches(RELEASE_DOMAIN, False)

    def is_introduced(self, domid: int) -> bool:
        return domid in self._conns

    def connection(self, domid: int) -> Connection:
        try:
            return self._conns[domid]
        except KeyError:
            raise SimulationError(
                f"xenstored has no connection from domain {domid}: introduce it first"
            ) from None

    # -- requests ---------------------------------------------------------------------
    def handle(self, domid: int, msg: XsMsg) -> Outbox:
        """Serve one request from `domid`: the reply to it, then any watch events."""
        conn = self.connection(domid)
        self._events = []
        try:
            handler = self._handlers.get(msg.type)
            if handler is None:
                raise xs.refused("ENOSYS", f"{msg.name} is not a request xenstored serves")
            view = self._view(conn, msg.tx_id)
            payload = handler(conn, view, msg)
            if len(payload) > XENSTORE_PAYLOAD_MAX:
                raise xs.refused(
                    "E2BIG", f"the {msg.name} reply of {len(payload)} bytes does not fit"
                )
            reply = xs.reply_to(msg, payload)
        except XenstoreError as err:
            self._events = []
            reply = xs.error_reply(msg, err.errno_name)
        return [(domid, reply), *self._take_events()]

    def _view(self, conn: Connection, tx_id: int) -> View:
        if tx_id == 0:
            return Committed(self)
        tx = conn.transactions.get(tx_id)
        if tx is None:
            raise xs.refused("ENOENT", f"domain {conn.domid} has no transaction {tx_id}")
        return tx

    def _take_events(self) -> Outbox:
        events, self._events = self._events, []
        return events

    # -- the tree ---------------------------------------------------------------------
    def _canonical(self, conn: Connection, raw: bytes) -> str:
        """An absolute, valid path from a request's path string (relative ones start at
        the caller's home)."""
        try:
            path = raw.decode("ascii")
        except UnicodeDecodeError:
            raise xs.refused("EINVAL", f"path {raw[:64]!r} is not ASCII") from None
        if not path.startswith("/"):
            if len(path) > XENSTORE_REL_PATH_MAX:
                raise xs.refused("EINVAL", f"relative path of {len(path)} bytes is too long")
            path = f"{conn.home}/{path}"
        if not is_valid_path(path):
            raise xs.refused("EINVAL", f"{path[:80]!r} is not a valid xenstore path")
        return path

    def _get_node(self, conn: Connection, view: View, path: str, perm: int) -> Node:
        """The node if `conn` has `perm` on it, else EACCES or ENOENT.  That errno is
        told only if `conn` has the same access to the nearest existing ancestor, else it
        is EACCES: a domain learns nothing about a subtree it cannot enter, and creating a
        node needs write access to its parent (errno_from_parents)."""
        node = view.get(path)
        if node is not None and perm_for(conn.domid, node.perms) & perm == perm:
            return node
        errno = "ENOENT" if node is None else "EACCES"
        if path != "/":
            ancestor = parent_path(path)
            while (above := view.get(ancestor)) is None:
                ancestor = parent_path(ancestor)
            if not perm_for(conn.domid, above.perms) & perm:
                errno = "EACCES"
        raise xs.refused(errno, f"domain {conn.domid} on {path}")

    def _add_child(self, view: View, path: str) -> None:
        parent = parent_path(path)
        node = view.get(parent)
        assert node is not None, f"{parent} must exist before its child {path}"
        view.put(parent, replace(node, children=(*node.children, path.rsplit("/", 1)[1])))

    def _create(self, conn: Connection, view: View, path: str, value: bytes) -> None:
        """Create `path` and any missing ancestors.  Each new node inherits its parent's
        permissions, but a guest owns what it creates (construct_node)."""
        missing = [path]
        while view.get(parent_path(missing[-1])) is None:
            missing.append(parent_path(missing[-1]))
        for p in reversed(missing):
            parent = view.get(parent_path(p))
            assert parent is not None
            perms = parent.perms
            if conn.domid != DOM0:
                perms = (Perm(conn.domid, perms[0].access), *perms[1:])
            view.put(p, Node(value if p == path else b"", perms))
            self._add_child(view, p)

    def _subtree(self, view: View, path: str) -> Iterator[str]:
        node = view.get(path)
        if node is None:
            return
        for name in node.children:
            yield from self._subtree(view, f"{path.rstrip('/')}/{name}")
        yield path

    def check_store(self) -> None:
        """Every child listed exists and every node is listed by its parent; raises
        SimulationError naming the first inconsistency."""
        for path, node in self._nodes.items():
            if not node.perms:
                raise SimulationError(f"xenstore node {path} has no permissions")
            for name in node.children:
                if f"{path.rstrip('/')}/{name}" not in self._nodes:
                    raise SimulationError(f"xenstore node {path} lists missing child {name}")
            if path != "/":
                parent = self._nodes.get(parent_path(path))
                if parent is None or path.rsplit("/", 1)[1] not in parent.children:
                    raise SimulationError(f"xenstore node {path} is not listed by its parent")

    # -- watches ----------------------------------------------------------------------
    def _fire_watches(self, name: str, recurse: bool) -> None:
        """Queue an event for every watch on `name` or an ancestor of it, and, when a
        subtree went (`recurse`), for every watch below it (fire_watches)."""
        for conn in self._conns.values():
            for w in conn.watches:
                if is_child(name, w.node):
                    self._add_event(conn, w, name)
                elif recurse and is_child(w.node, name):
                    self._add_event(conn, w, w.node)

    def _add_event(self, conn: Connection, w: Watch, name: str) -> None:
        """A watcher hears of a change to a node only if it may read that node.  A node
        that is gone is always reported: xenstored lets EACCES through there, so that a
        driver learns that its peer's directory disappeared (noted in xenstored's add_event)."""
        if not name.startswith("@"):
            node = self._nodes.get(name)
            if node is not None and not perm_for(conn.domid, node.perms) & XS_PERM_READ:
                return
            if w.relative:
                name = name[len(conn.home) + 1 :]
        self._events.append((conn.domid, xs.watch_event(name, w.token)))

    # -- one handler per request type -------------------------------------------------
    @staticmethod
    def _strings(msg: XsMsg, count: int) -> list[bytes]:
        """Exactly `count` NUL-terminated strings, else EINVAL."""
        try:
            parts = xs.split_strings(msg.payload)
        except XsWireError as err:
            raise xs.refused("EINVAL", str(err)) from None
        if len(parts) != count:
            raise xs.refused(
                "EINVAL", f"{msg.name} needs {count} NUL-terminated strings, got {len(parts)}"
            )
        return parts

    def _domid_arg(self, raw: bytes) -> int:
        text = raw.decode("ascii", "replace")
        if not text.isascii() or not text.isdigit() or int(text) > xs.DOMID_MAX:
            raise xs.refused("EINVAL", f"{text!r} is not a domid")
        return int(text)

    def _require_dom0(self, conn: Connection, msg: XsMsg) -> None:
        if conn.domid != DOM0:
            raise xs.refused("EACCES", f"{msg.name} is for dom0 only, not domain {conn.domid}")

    def _do_read(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        path = self._canonical(conn, self._strings(msg, 1)[0])
        return self._get_node(conn, view, path, XS_PERM_READ).value

    def _do_directory(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        path = self._canonical(conn, self._strings(msg, 1)[0])
        node = self._get_node(conn, view, path, XS_PERM_READ)
        return b"".join(name.encode() + b"\0" for name in node.children)

    def _do_get_perms(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        path = self._canonical(conn, self._strings(msg, 1)[0])
        node = self._get_node(conn, view, path, XS_PERM_READ)
        return xs.strings_payload([str(p) for p in node.perms])

    def _do_write(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        raw, sep, value = msg.payload.partition(b"\0")
        if not sep:
            raise xs.refused("EINVAL", "XS_WRITE payload is not path NUL value")
        path = self._canonical(conn, raw)
        try:
            node = self._get_node(conn, view, path, XS_PERM_WRITE)
        except XenstoreError as err:
            if err.errno_name != "ENOENT":
                raise
            self._create(conn, view, path, value)
        else:
            view.put(path, replace(node, value=value))
        view.changed(path, False)
        return xs.OK_PAYLOAD

    def _do_mkdir(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        path = self._canonical(conn, self._strings(msg, 1)[0])
        try:
            self._get_node(conn, view, path, XS_PERM_WRITE)
        except XenstoreError as err:
            if err.errno_name != "ENOENT":
                raise
            self._create(conn, view, path, b"")
            view.changed(path, False)
        return xs.OK_PAYLOAD  # an existing directory is fine

    def _do_rm(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        path = self._canonical(conn, self._strings(msg, 1)[0])
        try:
            self._get_node(conn, view, path, XS_PERM_WRITE)
        except XenstoreError as err:
            # Removing what is already gone is fine, if its parent is there.
            if err.errno_name == "ENOENT" and view.get(parent_path(path)) is not None:
                return xs.OK_PAYLOAD
            raise
        if path == "/":
            raise xs.refused("EINVAL", "the root node cannot be removed")
        for p in list(self._subtree(view, path)):
            view.remove(p)
        parent = view.get(parent_path(path))
        assert parent is not None
        gone = path.rsplit("/", 1)[1]
        children = tuple(c for c in parent.children if c != gone)
        view.put(parent_path(path), replace(parent, children=children))
        view.changed(path, True)
        return xs.OK_PAYLOAD

    def _do_set_perms(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        try:
            parts = xs.split_strings(msg.payload)
            if len(parts) < 2:
                raise XsWireError("XS_SET_PERMS needs a path and at least the owner's entry")
            perms = xs.parse_perms(parts[1:])
        except XsWireError as err:
            raise xs.refused("EINVAL", str(err)) from None
        path = self._canonical(conn, parts[0])
        node = self._get_node(conn, view, path, XS_PERM_WRITE | XS_PERM_OWNER)
        if conn.domid != DOM0 and perms[0].domid != node.perms[0].domid:
            raise xs.refused("EPERM", f"domain {conn.domid} may not give {path} away")
        view.put(path, replace(node, perms=perms))
        view.changed(path, False)
        return xs.OK_PAYLOAD

    def _do_watch(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        raw, token = self._strings(msg, 2)
        node, relative = self._watch_path(conn, raw)
        if len(token) + XENSTORE_ABS_PATH_MAX + 2 > XENSTORE_PAYLOAD_MAX:
            raise xs.refused("E2BIG", f"watch token of {len(token)} bytes is too long")
        if any(w.node == node and w.token == token for w in conn.watches):
            raise xs.refused("EEXIST", f"domain {conn.domid} already watches {node}")
        if conn.domid != DOM0 and len(conn.watches) >= self.max_watches:
            raise xs.refused("E2BIG", f"domain {conn.domid} has {self.max_watches} watches")
        w = Watch(node, token, relative)
        conn.watches.append(w)
        self._add_event(conn, w, node)  # fired once up front, as xenstored does
        return xs.OK_PAYLOAD

    def _do_unwatch(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        raw, token = self._strings(msg, 2)
        node, _ = self._watch_path(conn, raw)
        for i, w in enumerate(conn.watches):
            if w.node == node and w.token == token:
                del conn.watches[i]
                return xs.OK_PAYLOAD
        raise xs.refused("ENOENT", f"domain {conn.domid} has no watch on {node}")

    def _watch_path(self, conn: Connection, raw: bytes) -> tuple[str, bool]:
        if raw.startswith(b"@"):
            name = raw.decode("ascii", "replace")
            if len(name) < 2 or not all(c in PATH_CHARS for c in name):
                raise xs.refused("EINVAL", f"{name!r} is not a valid special watch path")
            return name, False
        return self._canonical(conn, raw), not raw.startswith(b"/")

    def _do_transaction_start(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        if isinstance(view, Transaction):
            raise xs.refused("EBUSY", f"transaction {view.id} is already open here")
        if conn.domid != DOM0 and len(conn.transactions) >= self.max_transactions:
            raise xs.refused("ENOSPC", f"domain {conn.domid} has too many transactions")
        tx_id = conn.next_tx_id
        while tx_id == 0 or tx_id in conn.transactions:
            tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.transactions[tx_id] = Transaction(tx_id, conn.domid, self._generation, self._nodes)
        return xs.cstring(str(tx_id))

    def _do_transaction_end(self, conn: Connection, view: View, msg: XsMsg) -> bytes:
        if not isinstance(view, Transaction):
            raise xs.refused("ENOENT", "XS_TRANSACTION_END outside a transaction")
        arg = self._strings(msg, 1)[0]
        if arg not in (b"T", b"F"):
            raise xs.refused("EINVAL", f"XS_TRANSACTION_END argument {arg!r} is not T or F")
        del conn.transactions[view.id]
        if arg == b"F":
            return xs.OK_PAYLOAD
        if (path := view.conflict()) is not None:
            raise xs.refused("EAGAIN", f"{path} changed under transaction {view.id}")
        self._generation += 1
        for path, node in view.written.items():
            if node is None:
                self._nodes.pop(path, None)
            else:
                self._nodes[path] = replace(node, generation=self._generation)
        for path, recurse in view.changes.items():
            self._fire_watches(path, recurse)
        return xs.OK_PAYLOAD

    def _do_introduce(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        self._require_dom0(conn, msg)
        raw_domid, raw_mfn, raw_port = self._strings(msg, 3)
        domid = self._domid_arg(raw_domid)
        if not raw_mfn.isdigit() or not raw_port.isdigit() or int(raw_port) == 0:
            raise xs.refused(
                "EINVAL", f"XS_INTRODUCE page {raw_mfn!r} or port {raw_port!r} is not valid"
            )
        self._introduce(domid, int(raw_mfn), int(raw_port), create_home=True)
        return xs.OK_PAYLOAD

    def _do_release(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        self._require_dom0(conn, msg)
        self._release(self._domid_arg(self._strings(msg, 1)[0]))
        return xs.OK_PAYLOAD

    def _do_resume(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        self._require_dom0(conn, msg)
        domid = self._domid_arg(self._strings(msg, 1)[0])
        if domid not in self._conns:
            raise xs.refused("ENOENT", f"domain {domid} was never introduced")
        return xs.OK_PAYLOAD

    def _do_get_domain_path(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        return xs.cstring(domain_path(self._domid_arg(self._strings(msg, 1)[0])))

    def _do_is_domain_introduced(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        domid = self._domid_arg(self._strings(msg, 1)[0])
        return b"T\0" if domid in self._conns else b"F\0"

    def _do_debug(self, conn: Connection, _view: View, msg: XsMsg) -> bytes:
        self._require_dom0(conn, msg)
        parts = xs.split_strings(msg.payload) if msg.payload.endswith(b"\0") else []
        if parts[:1] == [b"print"] and len(parts) == 2:
            self.debug_log.append(parts[1].decode(errors="replace"))
        elif parts == [b"check"]:
            self.check_store()
        else:
            raise xs.refused("EINVAL", "XS_DEBUG takes 'print' text or 'check'")
        return xs.OK_PAYLOAD


__all__ = [
    "DOM0",
    "INTRODUCE_DOMAIN",
    "RELEASE_DOMAIN",
    "STANDARD_NODES",
    "XENSTORE_ABS_PATH_MAX",
    "XENSTORE_REL_PATH_MAX",
    "Connection",
    "Node",
    "Outbox",
    "Transaction",
    "Watch",
    "Xenstored",
    "domain_path",
    "is_child",
    "is_valid_path",
    "parent_path",
    "perm_for",
]
