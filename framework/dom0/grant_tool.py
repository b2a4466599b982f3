"""dom0's side of the scenario's grants: the peer of every grant made to dom0 (it maps the
pages into its foreign area each round), and the grant timeline actions.

- `grant_map` / `grant_unmap`: dom0 maps the grant's pages (GNTTABOP_map_grant_ref with
  GNTMAP_host_map, then a 4 KiB PTE) and keeps them until the unmap, as a user process
  holds a gntdev mapping.  dom0 may try a grant made to another guest: it reads the refs
  from the granter's xenstore directory like any peer, and Xen refuses the map (the entry
  names another domain: GNTST_general_error in Xen 3.1's __gnttab_map_grant_ref), which
  gnttab.map records with its reason.
- a granter saved and restored (`framework.guest.sharedmem`): dom0 unmaps before its old
  domain is destroyed, and its peer follows the new domid (xend calls both).
- `grant_revoke`: the toolstack writes `revoke` in the granter's
  `control/sharedmem/<grant>` node, which the granting kernel watches (as it watches
  `control/shutdown`); the kernel ends the grant itself.
"""

from __future__ import annotations

from framework.guest.kernel import GuestKernel
from framework.guest.sharedmem import CONTROL_DIR, Peer
from framework.hw970.core import Core
from framework.scenario import (
    GrantMapAction,
    GrantRevokeAction,
    GrantUnmapAction,
    Scenario,
    is_dom0_name,
)

__all__ = ["GrantTool"]


class GrantTool:
    """The grants dom0 takes part in, by grant name."""

    def __init__(self, scenario: Scenario, domids: dict[str, int]) -> None:
        self.scenario = scenario
        self.domids = domids  # xm's live table: name -> domid of the built guests
        self.grants = {g.name: g for g in scenario.grants}
        #: dom0's peer of each grant it answers or maps.
        self.peers: dict[str, Peer] = {}

    def guests_built(self, k: GuestKernel, core: Core, names: list[str]) -> None:
        """Start dom0's peer of each grant the guests just built make to dom0."""
        for g in self.scenario.grants:
            if g.granter in names and is_dom0_name(g.peer) and g.granter in self.domids:
                peer = Peer(k, self.domids[g.granter], g.name)
                self.peers[g.name] = peer
                peer.start(core)

    def granter_leaving(self, core: Core, domid: int) -> None:
        """Before a saved granter's old domain is destroyed: unmap what dom0 still maps
        of it (a mapped grant holds the old domain's pages, and so the domain, dying)."""
        for peer in self.peers.values():
            if peer.granter == domid:
                peer.unmap(core)

    def granter_restored(self, core: Core, name: str, domid: int) -> None:
        """Granter `name` was restored as `domid`: dom0's peer of each of its grants
        watches the new home (as xend tells a restored frontend's backend)."""
        for g in self.scenario.grants:
            peer = self.peers.get(g.name)
            if g.granter == name and peer is not None and peer.granter != domid:
                peer.granter_moved(core, domid)

    def act(
        self,
        k: GuestKernel,
        core: Core,
        action: GrantRevokeAction | GrantMapAction | GrantUnmapAction,
    ) -> None:
        g = self.grants[action.grant]
        granter = self.domids.get(g.granter)
        if granter is None:
            k.console(core, f"sharedmem {g.name}: {action.action}: no domain {g.granter}")
            return
        if isinstance(action, GrantRevokeAction):
            assert k.xenbus is not None
            k.xenbus.write(core, f"/local/domain/{granter}/{CONTROL_DIR}/{g.name}", "revoke")
            return
        peer = self.peers.get(g.name)
        if isinstance(action, GrantUnmapAction):
            if peer is not None:
                peer.unmap(core)
            return
        if peer is None:  # a grant dom0 is not the peer of: it only maps it
            peer = Peer(k, granter, g.name, answer=False)
            self.peers[g.name] = peer
            peer.start(core)
        write = action.write

        def mapped(c: Core) -> None:
            peer.map(c, writable_pte=write)
            if write:
                peer.write_mapped(c, peer.verified)

        peer.when_connected(core, mapped)
