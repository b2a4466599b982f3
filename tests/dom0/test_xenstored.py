"""xenstored: the tree, path rules, permissions, watches and transactions, driven through
encoded and decoded wire messages exactly as a domain's ring would carry them."""

from __future__ import annotations

import random

import pytest

from framework.dom0.xenstored import (
    STANDARD_NODES,
    XENSTORE_ABS_PATH_MAX,
    Xenstored,
    is_valid_path,
)
from framework.errors import SimulationError, XenstoreError
from framework.guest import xs_wire as xs
from framework.guest.xs_wire import XsMsg

Out = list[tuple[int, XsMsg]]


class Client:
    """One domain's end: every request and reply crosses the wire as bytes."""

    def __init__(self, daemon: Xenstored, domid: int) -> None:
        self.d, self.domid, self.next_req = daemon, domid, 1
        self.events: list[tuple[int, str, bytes]] = []  # (receiver, path, token)

    def send(self, msg: XsMsg) -> XsMsg:
        """Send `msg` with a fresh req_id; return the reply; collect the watch events."""
        msg = XsMsg(msg.type, self.next_req, msg.tx_id, msg.payload)
        self.next_req += 1
        out = self.d.handle(self.domid, XsMsg.decode(msg.encode()))
        target, reply = out[0]
        assert target == self.domid and reply.req_id == msg.req_id
        assert reply.tx_id == msg.tx_id
        self.events += events_of(out[1:])
        return XsMsg.decode(reply.encode())

    def read(self, path: str, tx: int = 0) -> bytes:
        return xs.parse_read(self.send(xs.read(path, tx_id=tx)))

    def write(self, path: str, value: str | bytes, tx: int = 0) -> None:
        xs.parse_ack(self.send(xs.write(path, value, tx_id=tx)), xs.XS_WRITE)

    def mkdir(self, path: str, tx: int = 0) -> None:
        xs.parse_ack(self.send(xs.mkdir(path, tx_id=tx)), xs.XS_MKDIR)

    def rm(self, path: str, tx: int = 0) -> None:
        xs.parse_ack(self.send(xs.rm(path, tx_id=tx)), xs.XS_RM)

    def ls(self, path: str, tx: int = 0) -> list[str]:
        return xs.parse_directory(self.send(xs.directory(path, tx_id=tx)))

    def perms(self, path: str) -> list[str]:
        return [str(p) for p in xs.parse_get_perms(self.send(xs.get_perms(path)))]

    def set_perms(self, path: str, *perms: str, tx: int = 0) -> None:
        xs.parse_ack(self.send(xs.set_perms(path, perms, tx_id=tx)), xs.XS_SET_PERMS)

    def watch(self, path: str, token: str) -> None:
        xs.parse_ack(self.send(xs.watch(path, token)), xs.XS_WATCH)

    def unwatch(self, path: str, token: str) -> None:
        xs.parse_ack(self.send(xs.unwatch(path, token)), xs.XS_UNWATCH)

    def start(self) -> int:
        return xs.parse_transaction_start(self.send(xs.transaction_start()))

    def end(self, tx: int, commit: bool = True) -> None:
        xs.parse_ack(self.send(xs.transaction_end(commit, tx_id=tx)), xs.XS_TRANSACTION_END)

    def errno(self, msg: XsMsg) -> str:
        """The errno name of a request that must fail."""
        reply = self.send(msg)
        assert reply.type == xs.XS_ERROR, f"{msg.name} succeeded: {reply.payload!r}"
        with pytest.raises(XenstoreError) as info:
            xs.check_reply(reply, msg.type)
        return info.value.errno_name


def events_of(out: Out) -> list[tuple[int, str, bytes]]:
    result = []
    for target, msg in out:
        assert (msg.type, msg.req_id, msg.tx_id) == (xs.XS_WATCH_EVENT, 0, 0)
        path, token = xs.parse_watch_event(msg)
        result.append((target, path, token))
    return result


@pytest.fixture
def d() -> Xenstored:
    daemon = Xenstored()
    daemon.introduce_domain(5)
    daemon.introduce_domain(7)
    return daemon


@pytest.fixture
def dom0(d: Xenstored) -> Client:
    return Client(d, 0)


@pytest.fixture
def g5(d: Xenstored) -> Client:
    return Client(d, 5)


@pytest.fixture
def g7(d: Xenstored) -> Client:
    return Client(d, 7)


# --- the tree ------------------------------------------------------------------------
def test_standard_top_level(dom0: Client) -> None:
    assert dom0.ls("/") == ["local", "tool", "vm"]
    assert dom0.ls("/local/domain") == ["0", "5", "7"]
    assert dom0.ls("/tool") == ["xenstored"]
    for path in STANDARD_NODES:
        assert dom0.read(path) == b""
        assert dom0.perms(path) == ["n0"]
    # The homes of introduced domains belong to them.
    assert dom0.perms("/local/domain/5") == ["n5"]


def test_write_read_and_implicit_parents(dom0: Client) -> None:
    dom0.write("/vm/a/b/c", b"v\0with nul")
    assert dom0.read("/vm/a/b/c") == b"v\0with nul"
    assert dom0.read("/vm/a/b") == b"" and dom0.ls("/vm/a") == ["b"]
    assert dom0.ls("/vm/a/b/c") == []
    dom0.write("/vm/a/b/c", "")
    assert dom0.read("/vm/a/b/c") == b""
    dom0.d.check_store()


def test_directory_lists_in_creation_order(dom0: Client) -> None:
    for name in ["zeta", "alpha", "mid"]:
        dom0.write(f"/vm/{name}", name)
    assert dom0.ls("/vm") == ["zeta", "alpha", "mid"]
    dom0.rm("/vm/zeta")
    dom0.mkdir("/vm/zeta")
    assert dom0.ls("/vm") == ["alpha", "mid", "zeta"]


def test_mkdir(dom0: Client) -> None:
    dom0.write("/vm/x", "keep")
    dom0.mkdir("/vm/x")  # an existing node is fine and keeps its value
    assert dom0.read("/vm/x") == b"keep"
    dom0.mkdir("/vm/new/deep")
    assert dom0.ls("/vm/new") == ["deep"] and dom0.read("/vm/new/deep") == b""


def test_rm_is_recursive(dom0: Client) -> None:
    dom0.write("/vm/t/a/1", "x")
    dom0.write("/vm/t/a/2", "y")
    dom0.write("/vm/t/b", "z")
    dom0.rm("/vm/t/a")
    assert dom0.ls("/vm/t") == ["b"]
    for gone in ["/vm/t/a", "/vm/t/a/1", "/vm/t/a/2"]:
        assert dom0.errno(xs.read(gone)) == "ENOENT"
    dom0.rm("/vm/t/a")  # already gone, parent there: fine
    assert dom0.errno(xs.rm("/vm/nothing/below")) == "ENOENT"
    assert dom0.errno(xs.rm("/")) == "EINVAL"
    dom0.d.check_store()


def test_reads_of_missing_nodes(dom0: Client) -> None:
    assert dom0.errno(xs.read("/vm/missing")) == "ENOENT"
    assert dom0.errno(xs.directory("/vm/missing")) == "ENOENT"
    assert dom0.errno(xs.get_perms("/vm/missing")) == "ENOENT"


def test_domain_paths(d: Xenstored, g5: Client) -> None:
    reply = g5.send(xs.get_domain_path(12))
    assert xs.parse_get_domain_path(reply) == "/local/domain/12"
    assert xs.parse_is_domain_introduced(g5.send(xs.is_domain_introduced(7)))
    assert not xs.parse_is_domain_introduced(g5.send(xs.is_domain_introduced(9)))
    assert g5.errno(xs.get_domain_path(-1 & 0xFFFFFF)) == "EINVAL"


def test_relative_paths_start_at_the_callers_home(dom0: Client, g5: Client) -> None:
    g5.write("data/x", "1")
    assert dom0.read("/local/domain/5/data/x") == b"1"
    assert g5.read("data/x") == b"1"
    assert g5.ls("data") == ["x"]
    assert dom0.errno(xs.read("data/x")) == "ENOENT"  # dom0's home is /local/domain/0


# --- paths ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/a//b", "/a/", "/a b", "/a.b", "/a\\b", "/ä", "", "/a/\t",
        "/" + "a" * XENSTORE_ABS_PATH_MAX, "x" * 2049,
    ],
)  # fmt: skip
def test_invalid_paths_are_einval(dom0: Client, g5: Client, path: str) -> None:
    payload = path.encode() + b"\0"
    for client in (dom0, g5):
        for kind in (xs.XS_READ, xs.XS_MKDIR, xs.XS_RM, xs.XS_DIRECTORY):
            assert client.errno(XsMsg(kind, 0, 0, payload)) == "EINVAL"
        assert client.errno(XsMsg(xs.XS_WRITE, 0, 0, payload + b"v")) == "EINVAL"


def test_path_rules() -> None:
    assert is_valid_path("/")
    assert is_valid_path("/local/domain/5/device/vif/0/mac-addr_@x")
    assert is_valid_path("/" + "a" * (XENSTORE_ABS_PATH_MAX - 1))
    assert not is_valid_path("/" + "a" * XENSTORE_ABS_PATH_MAX)
    assert not is_valid_path("relative")


def test_malformed_payloads_are_einval(dom0: Client) -> None:
    assert dom0.errno(XsMsg(xs.XS_READ, 0, 0, b"/vm")) == "EINVAL"  # no NUL
    assert dom0.errno(XsMsg(xs.XS_READ, 0, 0, b"/vm\0/tool\0")) == "EINVAL"  # two strings
    assert dom0.errno(XsMsg(xs.XS_WRITE, 0, 0, b"/vm")) == "EINVAL"  # no value separator
    assert dom0.errno(XsMsg(xs.XS_WATCH, 0, 0, b"/vm\0")) == "EINVAL"  # no token
    assert dom0.errno(XsMsg(xs.XS_SET_PERMS, 0, 0, b"/vm\0")) == "EINVAL"  # no perms
    assert dom0.errno(XsMsg(xs.XS_SET_PERMS, 0, 0, b"/vm\0q0\0")) == "EINVAL"


def test_unknown_and_reply_only_types_are_enosys(dom0: Client) -> None:
    for kind in (99, int(xs.XS_WATCH_EVENT), int(xs.XS_ERROR)):
        assert dom0.errno(XsMsg(kind, 0, 0, b"/vm\0")) == "ENOSYS"


def test_big_directory_is_e2big(dom0: Client) -> None:
    for i in range(40):
        dom0.mkdir(f"/vm/{i:03d}" + "n" * 120)
    assert dom0.errno(xs.directory("/vm")) == "E2BIG"


def test_requests_from_unknown_domains_are_a_glue_bug(d: Xenstored) -> None:
    with pytest.raises(SimulationError, match="no connection from domain 9"):
        d.handle(9, xs.read("/vm"))


# --- permissions ---------------------------------------------------------------------
def test_guest_cannot_read_dom0_or_another_guest(dom0: Client, g5: Client) -> None:
    dom0.write("/local/domain/0/secret", "s")
    dom0.write("/local/domain/7/name", "seven")
    assert g5.errno(xs.read("/local/domain/0/secret")) == "EACCES"
    assert g5.errno(xs.read("/local/domain/7/name")) == "EACCES"
    assert g5.errno(xs.directory("/local/domain/7")) == "EACCES"
    assert g5.errno(xs.get_perms("/local/domain/7")) == "EACCES"
    assert g5.errno(xs.write("/local/domain/7/name", "x")) == "EACCES"
    assert g5.errno(xs.rm("/local/domain/7/name")) == "EACCES"
    assert dom0.read("/local/domain/7/name") == b"seven"


def test_missing_nodes_under_unreadable_parents_do_not_leak(dom0: Client, g5: Client) -> None:
    dom0.write("/local/domain/7/exists", "x")
    # Whether the node exists or not, domain 5 learns only EACCES.
    assert g5.errno(xs.read("/local/domain/7/exists")) == "EACCES"
    assert g5.errno(xs.read("/local/domain/7/absent")) == "EACCES"
    assert g5.errno(xs.read("/local/domain/7/absent/deeper")) == "EACCES"
    assert g5.errno(xs.rm("/local/domain/7/absent")) == "EACCES"
    # Under its own home it learns ENOENT.
    assert g5.errno(xs.read("/local/domain/5/absent")) == "ENOENT"


def test_guest_owns_its_home_and_what_it_creates(dom0: Client, g5: Client) -> None:
    g5.write("/local/domain/5/device/vif/0/state", "1")
    assert g5.read("/local/domain/5/device/vif/0/state") == b"1"
    assert g5.perms("/local/domain/5/device/vif/0/state") == ["n5"]
    assert g5.ls("/local/domain/5/device") == ["vif"]
    g5.rm("/local/domain/5/device")
    assert g5.ls("/local/domain/5") == []


def test_new_nodes_inherit_but_the_guest_becomes_owner(dom0: Client, g5: Client) -> None:
    dom0.mkdir("/local/domain/0/backend/vbd/5")
    dom0.set_perms("/local/domain/0/backend/vbd/5", "r0", "b5", "n7")
    g5.write("/local/domain/0/backend/vbd/5/x/y", "1")
    # Created by domain 5 from a parent whose first entry is r0: owner 5, default r.
    assert dom0.perms("/local/domain/0/backend/vbd/5/x") == ["r5", "b5", "n7"]
    assert dom0.perms("/local/domain/0/backend/vbd/5/x/y") == ["r5", "b5", "n7"]
    # dom0 creating keeps the parent's owner.
    dom0.write("/local/domain/0/backend/vbd/5/z", "2")
    assert dom0.perms("/local/domain/0/backend/vbd/5/z") == ["r0", "b5", "n7"]


def test_default_and_listed_permissions(dom0: Client, g5: Client, g7: Client) -> None:
    dom0.write("/vm/shared", "data")
    dom0.set_perms("/vm/shared", "r0", "w7")  # everyone reads, 7 may only write
    assert g5.read("/vm/shared") == b"data"
    assert g5.errno(xs.write("/vm/shared", "no")) == "EACCES"
    assert g7.errno(xs.read("/vm/shared")) == "EACCES"
    g7.write("/vm/shared", "by 7")
    assert dom0.read("/vm/shared") == b"by 7"
    # Writing a new node needs write access to the parent.
    assert g5.errno(xs.write("/vm/shared/child", "x")) == "EACCES"
    g7.write("/vm/shared/child", "x")
    assert dom0.perms("/vm/shared/child") == ["r7", "w7"]


def test_set_perms_only_by_owner_or_dom0(dom0: Client, g5: Client, g7: Client) -> None:
    dom0.write("/vm/node", "v")
    dom0.set_perms("/vm/node", "n0", "b5")
    # Domain 5 may read and write the node, but does not own it.
    g5.write("/vm/node", "w")
    assert g5.errno(xs.set_perms("/vm/node", ["b0"])) == "EACCES"
    assert g7.errno(xs.set_perms("/vm/node", ["b7"])) == "EACCES"
    assert dom0.perms("/vm/node") == ["n0", "b5"]
    # The owner may change the entries but may not give the node away.
    g5.write("mine", "m")
    g5.set_perms("mine", "n5", "r7")
    assert g7.read("/local/domain/5/mine") == b"m"
    assert g5.errno(xs.set_perms("mine", ["b7"])) == "EPERM"
    assert g5.perms("mine") == ["n5", "r7"]
    dom0.set_perms("/local/domain/5/mine", "n7")  # dom0 may
    assert g5.errno(xs.read("mine")) == "EACCES"


def test_privileged_requests(d: Xenstored, g5: Client) -> None:
    assert g5.errno(xs.introduce(9, 1, 1)) == "EACCES"
    assert g5.errno(xs.release(7)) == "EACCES"
    assert g5.errno(XsMsg(xs.XS_DEBUG, 0, 0, b"check\0")) == "EACCES"
    assert d.is_introduced(7)


# --- watches -------------------------------------------------------------------------
def test_watch_fires_once_up_front(dom0: Client, g5: Client) -> None:
    g5.watch("/local/domain/5/device", "dev")
    assert g5.events == [(5, "/local/domain/5/device", b"dev")]
    assert g5.errno(xs.watch("/local/domain/5/device", "dev")) == "EEXIST"
    g5.watch("/local/domain/5/device", "other")  # another token is another watch


def test_changes_fire_watches_on_the_path_and_its_ancestors(dom0: Client, g5: Client) -> None:
    dom0.watch("/local/domain", "doms")
    dom0.watch("/local/domain/5/device/vbd", "vbd")
    dom0.watch("/local/domain/5/device/vif", "vif")
    dom0.events.clear()
    g5.write("/local/domain/5/device/vbd/768/state", "3")
    assert g5.events == [
        (0, "/local/domain/5/device/vbd/768/state", b"doms"),
        (0, "/local/domain/5/device/vbd/768/state", b"vbd"),
    ]
    g5.events.clear()
    g5.write("/local/domain/5/device/vbd-not-a-child", "x")
    assert [e[2] for e in g5.events] == [b"doms"]


def test_rm_fires_watches_below_the_removed_node(dom0: Client) -> None:
    dom0.write("/vm/t/a/b", "1")
    dom0.watch("/vm/t/a/b", "deep")
    dom0.watch("/vm", "top")
    dom0.watch("/tool", "elsewhere")
    dom0.events.clear()
    dom0.rm("/vm/t")
    assert dom0.events == [(0, "/vm/t/a/b", b"deep"), (0, "/vm/t", b"top")]


def test_relative_watches_get_relative_events(dom0: Client, g5: Client) -> None:
    g5.watch("device", "rel")
    assert g5.events == [(5, "device", b"rel")]
    g5.events.clear()
    dom0.write("/local/domain/5/device/vif/0", "x")
    assert dom0.events == [(5, "device/vif/0", b"rel")]
    g5.unwatch("device", "rel")  # relative paths name the same watch


def test_unwatch(dom0: Client, g5: Client) -> None:
    g5.watch("/local/domain/5", "home")
    g5.unwatch("/local/domain/5", "home")
    g5.events.clear()
    g5.write("x", "1")
    assert g5.events == []
    assert g5.errno(xs.unwatch("/local/domain/5", "home")) == "ENOENT"


def test_events_only_go_to_domains_that_can_read(dom0: Client, g5: Client, g7: Client) -> None:
    dom0.write("/vm/shared/x", "1")
    dom0.set_perms("/vm/shared", "n0", "r5")
    dom0.set_perms("/vm/shared/x", "n0", "r5")
    g5.watch("/vm/shared", "t5")
    g7.watch("/vm/shared", "t7")
    assert g5.events == [(5, "/vm/shared", b"t5")]
    assert g7.events == []  # not even the initial event
    g5.events.clear()
    dom0.write("/vm/shared/x", "2")
    assert dom0.events == [(5, "/vm/shared/x", b"t5")]
    dom0.events.clear()
    # A watcher on "/" sees changes only to nodes it may read.
    g7.watch("/", "root")
    g7.events.clear()
    dom0.write("/local/domain/7/a", "mine")
    dom0.write("/local/domain/5/b", "not mine")
    assert dom0.events == [(7, "/local/domain/7/a", b"root")]


def test_removal_reaches_the_watchers_of_the_path(dom0: Client, g5: Client) -> None:
    dom0.mkdir("/local/domain/0/backend/vbd/5/768")
    dom0.set_perms("/local/domain/0/backend/vbd/5/768", "n0", "r5")
    g5.watch("/local/domain/0/backend/vbd/5/768", "be")
    g5.events.clear()
    dom0.rm("/local/domain/0/backend/vbd/5")
    assert dom0.events == [(5, "/local/domain/0/backend/vbd/5/768", b"be")]


def test_domain_watches(d: Xenstored, dom0: Client, g5: Client) -> None:
    dom0.watch("@introduceDomain", "in")
    dom0.watch("@releaseDomain", "out")
    g5.watch("@releaseDomain", "g5out")
    assert dom0.events == [(0, "@introduceDomain", b"in"), (0, "@releaseDomain", b"out")]
    g5.watch("/local/domain", "dirs")
    out = d.introduce_domain(9)
    assert events_of(out) == [(0, "@introduceDomain", b"in")]
    assert dom0.read("/local/domain/9") == b"" and dom0.perms("/local/domain/9") == ["n9"]
    out = d.release_domain(7)
    assert events_of(out) == [(0, "@releaseDomain", b"out"), (5, "@releaseDomain", b"g5out")]
    assert not d.is_introduced(7)
    with pytest.raises(XenstoreError, match="ENOENT"):
        d.release_domain(7)


def test_release_drops_the_domains_watches_and_transactions(d: Xenstored, dom0: Client) -> None:
    g9 = Client(d, 9)
    d.introduce_domain(9)
    g9.watch("/local/domain/9", "w")
    tx = g9.start()
    g9.write("x", "1", tx)
    d.release_domain(9)
    d.introduce_domain(9)
    dom0.write("/local/domain/9/y", "2")
    assert dom0.events == []
    assert g9.errno(xs.read("x", tx_id=tx)) == "ENOENT"  # the transaction went too
    assert dom0.errno(xs.read("/local/domain/9/x")) == "ENOENT"


def test_introduce_and_release_by_message(d: Xenstored, dom0: Client) -> None:
    dom0.watch("@introduceDomain", "in")
    dom0.events.clear()
    xs.parse_ack(dom0.send(xs.introduce(11, 0x3FFD, 4)), xs.XS_INTRODUCE)
    assert dom0.events == [(0, "@introduceDomain", b"in")]
    assert d.connection(11).port == 4 and d.connection(11).mfn == 0x3FFD
    xs.parse_ack(dom0.send(xs.release(11)), xs.XS_RELEASE)
    assert not d.is_introduced(11)
    assert dom0.errno(xs.release(11)) == "ENOENT"
    assert dom0.errno(xs.introduce(0, 1, 1)) == "EINVAL"


def test_watch_quota() -> None:
    small = Xenstored(max_watches_per_domain=2)
    small.introduce_domain(5)
    c = Client(small, 5)
    c.watch("a", "1")
    c.watch("a", "2")
    assert c.errno(xs.watch("a", "3")) == "E2BIG"
    for i in range(5):
        Client(small, 0).watch("/vm", str(i))  # dom0 has no quota


# --- transactions --------------------------------------------------------------------
def test_transaction_commit_applies_and_fires_then(dom0: Client, g5: Client) -> None:
    dom0.watch("/local/domain/5", "w")
    dom0.events.clear()
    tx = g5.start()
    g5.write("a/b", "1", tx)
    g5.write("c", "2", tx)
    assert g5.read("a/b", tx) == b"1"  # the transaction sees its writes
    assert g5.ls("/local/domain/5", tx) == ["a", "c"]
    assert g5.errno(xs.read("a/b")) == "ENOENT"  # nobody else does yet
    assert g5.events == []  # watches fire on commit only
    g5.end(tx)
    assert dom0.read("/local/domain/5/a/b") == b"1"
    assert dom0.read("/local/domain/5/c") == b"2"
    assert g5.events == [(0, "/local/domain/5/a/b", b"w"), (0, "/local/domain/5/c", b"w")]
    dom0.d.check_store()


def test_transaction_abort_applies_nothing(dom0: Client, g5: Client) -> None:
    g5.write("keep", "old")
    tx = g5.start()
    g5.write("keep", "new", tx)
    g5.rm("keep", tx)
    g5.write("fresh", "x", tx)
    g5.end(tx, commit=False)
    assert g5.read("keep") == b"old"
    assert g5.errno(xs.read("fresh")) == "ENOENT"
    assert g5.errno(xs.transaction_end(True, tx_id=tx)) == "ENOENT"


def test_conflict_is_eagain_and_applies_nothing(dom0: Client, g5: Client) -> None:
    g5.write("counter", "1")
    dom0.watch("/local/domain/5", "w")
    tx = g5.start()
    value = int(g5.read("counter", tx))
    g5.write("counter", str(value + 1), tx)
    g5.write("other", "side effect", tx)
    dom0.write("/local/domain/5/counter", "10")  # someone else changes what tx read
    dom0.events.clear()
    assert g5.errno(xs.transaction_end(True, tx_id=tx)) == "EAGAIN"
    assert g5.read("counter") == b"10"
    assert g5.errno(xs.read("other")) == "ENOENT"
    assert dom0.events == []
    # The failed transaction is gone; a retry succeeds.
    assert g5.errno(xs.read("counter", tx_id=tx)) == "ENOENT"
    tx = g5.start()
    g5.write("counter", str(int(g5.read("counter", tx)) + 1), tx)
    g5.end(tx)
    assert g5.read("counter") == b"11"


def test_conflict_on_a_node_read_later_but_changed_after_start(dom0: Client, g5: Client) -> None:
    g5.write("a", "1")
    tx = g5.start()
    dom0.write("/local/domain/5/a", "2")
    assert g5.read("a", tx) == b"2"
    g5.write("b", "x", tx)
    assert g5.errno(xs.transaction_end(True, tx_id=tx)) == "EAGAIN"


def test_conflict_on_a_parent_whose_children_changed(dom0: Client, g5: Client) -> None:
    tx = g5.start()
    g5.write("dir/mine", "1", tx)
    dom0.write("/local/domain/5/theirs", "2")  # adds a child to the home tx extended
    assert g5.errno(xs.transaction_end(True, tx_id=tx)) == "EAGAIN"
    assert g5.ls("/local/domain/5") == ["theirs"]


def test_conflict_when_a_node_removed_by_others_was_seen_missing(dom0: Client, g5: Client) -> None:
    g5.write("gone/leaf", "1")
    tx = g5.start()
    dom0.rm("/local/domain/5/gone")
    assert g5.errno(xs.read("gone/leaf", tx_id=tx)) == "ENOENT"
    g5.write("note", "saw nothing", tx)
    assert g5.errno(xs.transaction_end(True, tx_id=tx)) == "EAGAIN"


def test_unrelated_changes_do_not_conflict(dom0: Client, g5: Client, g7: Client) -> None:
    g5.write("dir/a", "1")
    tx = g5.start()
    g5.write("dir/a", "2", tx)
    g7.write("elsewhere", "x")  # another domain's subtree
    g5.write("/local/domain/5/dir/b", "outside tx")  # a sibling the tx never looked at
    g5.end(tx)
    assert g5.ls("dir") == ["a", "b"]
    assert g5.read("dir/a") == b"2"


def test_transaction_reads_are_a_snapshot_of_first_sight(dom0: Client, g5: Client) -> None:
    g5.write("a", "1")
    tx = g5.start()
    assert g5.read("a", tx) == b"1"
    dom0.write("/local/domain/5/a", "2")
    assert g5.read("a", tx) == b"1"  # still what the transaction first saw
    g5.end(tx, commit=False)


def test_transaction_rm_and_set_perms(dom0: Client, g5: Client, g7: Client) -> None:
    g5.write("t/x", "1")
    g5.write("t/y", "2")
    tx = g5.start()
    g5.rm("t/x", tx)
    g5.set_perms("t/y", "n5", "r7", tx=tx)
    assert g5.ls("t", tx) == ["y"]
    assert g7.errno(xs.read("/local/domain/5/t/y")) == "EACCES"
    g5.end(tx)
    assert g5.ls("t") == ["y"]
    assert g7.read("/local/domain/5/t/y") == b"2"
    dom0.d.check_store()


def test_transaction_errors(dom0: Client, g5: Client, g7: Client) -> None:
    assert g5.errno(xs.read("a", tx_id=42)) == "ENOENT"
    tx = g5.start()
    assert g7.errno(xs.read("/local/domain/7", tx_id=tx)) == "ENOENT"  # ids are per domain
    assert g5.errno(XsMsg(xs.XS_TRANSACTION_START, 0, tx, b"\0")) == "EBUSY"
    assert g5.errno(XsMsg(xs.XS_TRANSACTION_END, 0, tx, b"X\0")) == "EINVAL"
    assert g5.errno(XsMsg(xs.XS_TRANSACTION_END, 0, 0, b"T\0")) == "ENOENT"
    assert g5.start() != tx
    g5.end(tx)


def test_transaction_quota() -> None:
    small = Xenstored(max_transactions_per_domain=2)
    small.introduce_domain(5)
    c = Client(small, 5)
    first = c.start()
    c.start()
    assert c.errno(xs.transaction_start()) == "ENOSPC"
    c.end(first, commit=False)
    c.start()


def test_dom0_debug(d: Xenstored, dom0: Client) -> None:
    xs.parse_ack(dom0.send(XsMsg(xs.XS_DEBUG, 0, 0, b"print\0hello\0")), xs.XS_DEBUG)
    xs.parse_ack(dom0.send(XsMsg(xs.XS_DEBUG, 0, 0, b"check\0")), xs.XS_DEBUG)
    assert d.debug_log == ["hello"]
    assert dom0.errno(XsMsg(xs.XS_DEBUG, 0, 0, b"bogus\0")) == "EINVAL"


# --- invariants ----------------------------------------------------------------------
def dump(client: Client, path: str = "/") -> list[tuple[str, bytes, list[str], list[str]]]:
    """Every node below `path` as dom0 sees it: path, value, perms, children."""
    children = client.ls(path)
    rows = [(path, client.read(path), client.perms(path), children)]
    for name in children:
        rows += dump(client, f"{path.rstrip('/')}/{name}")
    return rows


def random_ops(seed: int, n: int) -> list[XsMsg]:
    rng = random.Random(seed)
    names = ["a", "b", "c", "d"]
    ops = []
    for _ in range(n):
        path = "/vm/" + "/".join(rng.choice(names) for _ in range(rng.randint(1, 3)))
        kind = rng.choice(["write", "write", "mkdir", "rm", "perms"])
        if kind == "write":
            ops.append(xs.write(path, rng.randbytes(rng.randint(0, 8))))
        elif kind == "mkdir":
            ops.append(xs.mkdir(path))
        elif kind == "rm":
            ops.append(xs.rm(path))
        else:
            ops.append(xs.set_perms(path, [f"{rng.choice('nrwb')}{rng.choice([0, 5, 7])}"]))
    return ops


@pytest.mark.parametrize("seed", range(8))
def test_a_lone_transaction_commits_what_direct_requests_do(seed: int) -> None:
    direct, batched = Xenstored(), Xenstored()
    a, b = Client(direct, 0), Client(batched, 0)
    tx = b.start()
    for op in random_ops(seed, 60):
        ra = a.send(op)
        rb = b.send(XsMsg(op.type, 0, tx, op.payload))
        assert (ra.type, ra.payload) == (rb.type, rb.payload)
    assert dump(b) == dump(Client(Xenstored(), 0))  # nothing applied before the commit
    b.end(tx)
    assert dump(a) == dump(b)
    assert dump(a) != dump(Client(Xenstored(), 0))
    direct.check_store()
    batched.check_store()


def test_toolstack_device_transaction(dom0: Client, g5: Client, g7: Client) -> None:
    """xend's way of adding a vbd: directories and permissions, then the nodes, in one
    transaction; the guest then owns its frontend and may only read its backend."""
    back, front = "/local/domain/0/backend/vbd/5/768", "/local/domain/5/device/vbd/768"
    dom0.watch("/local/domain/0/backend/vbd", "backend")
    g5.watch("device", "frontend")
    dom0.events.clear()
    g5.events.clear()
    tx = dom0.start()
    for path, perms in ((back, ["n0", "r5"]), (front, ["n5", "r0"])):
        dom0.mkdir(path, tx)
        dom0.set_perms(path, *perms, tx=tx)
    for path, value in ((f"{back}/frontend", front), (f"{front}/backend", back)):
        dom0.write(path, value, tx)
    assert dom0.events == [] and g5.events == []
    dom0.end(tx)
    # One event per changed node, in the order the transaction first changed them.
    assert dom0.events == [
        (0, back, b"backend"),
        (5, "device/vbd/768", b"frontend"),
        (0, f"{back}/frontend", b"backend"),
        (5, "device/vbd/768/backend", b"frontend"),
    ]
    assert g5.read(f"{front}/backend") == back.encode()
    assert g5.read(f"{back}/frontend") == front.encode()
    g5.write(f"{front}/state", "3")
    assert g5.errno(xs.write(f"{back}/state", "4")) == "EACCES"
    assert g7.errno(xs.read(f"{back}/frontend")) == "EACCES"
    assert dom0.read(f"{front}/state") == b"3"
