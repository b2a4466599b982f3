"""`xm save` and `xm restore` as xend carries them out (XendCheckpoint.py's order).

Save: xend writes `suspend` to the guest's `control/shutdown`, then looks at the domain
every `POLL_NS` (getdomaininfo) until it has shut down for suspend (at most `POLL_LIMIT`
times); the saver (`save_restore.save_domain`) writes the file, and the domain is
destroyed as `xm destroy` does it (devices unplugged first) - or, with `checkpoint`, told
to go on. The trace has `xend.save` when the request is written and `xend.saved` (file
bytes, simulated ns since the request) when the file is complete.

Restore: the domain is built from the file in one pass that also checks it (`restore_domain`),
introduced to xenstored and xenconsoled, its vbds plugged, and unpaused (`xend.restored`).
A file that is missing, corrupted or truncated, or a save that would overwrite a file, is
an `xm save/restore ...: Error:` line on dom0's console and in the run's build errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from framework.dom0.save_restore import restore_domain, resume_checkpoint, save_domain, unpause
from framework.dom0.xm_create import config_of, workload_properties
from framework.errors import BuildError, SaveFileError
from framework.hw970.core import Core
from framework.save_file import read_header
from framework.scenario import DomainSpec, RestoreAction, SaveAction, Scenario
from framework.scenario.fields import reloadable_dump
from framework.trace.ids import K
from framework.xen.public.domctl import (
    DOMINF_shutdown,
    XEN_DOMCTL_getdomaininfo,
    XEN_DOMINF_shutdownshift,
)
from framework.xen.public.sched import SHUTDOWN_suspend

if TYPE_CHECKING:
    from framework.dom0.userspace import Dom0

__all__ = ["POLL_LIMIT", "POLL_NS", "XmSave"]

POLL_NS: Final = 1_000_000
POLL_LIMIT: Final = 1000


class XmSave:
    """xend's save and restore for one run."""

    def __init__(self, dom0: Dom0, scenario: Scenario, run_dir: Path) -> None:
        self.dom0 = dom0
        self.scenario = scenario
        self.run_dir = run_dir
        #: The configuration of each guest by name (scenario ones, then restored ones).
        self.specs: dict[str, DomainSpec] = {d.name: d for d in scenario.domains}

    def _path(self, file: str, written_here: bool) -> Path:
        p = Path(file)
        if p.is_absolute():
            return p
        return (self.run_dir if written_here else self.scenario.base_dir) / p

    def _log(self, core: Core, what: str) -> None:
        self.dom0.xm.errors.append(what)
        xend = self.dom0.xend
        assert xend is not None
        xend.log(core, what)

    # -- save ------------------------------------------------------------------------------
    def save(self, core: Core, domid: int, action: SaveAction) -> None:
        k = self.dom0.kernel
        assert k is not None and k.xenbus is not None
        k.xenbus.write(core, f"/local/domain/{domid}/control/shutdown", "suspend")
        k.emit(core, K.GUEST_MARK, domid, text="xend.save")
        self._poll(core, domid, action, core.now_ns(), 0)

    def _poll(self, core: Core, domid: int, action: SaveAction, t0: int, n: int) -> None:
        ts = self.dom0.toolstack(core)
        rc, out = ts.domctl(XEN_DOMCTL_getdomaininfo, domid)
        flags = out["info_flags"]
        reason = (flags >> XEN_DOMINF_shutdownshift) & 0xFF
        if rc == 0 and flags & DOMINF_shutdown and reason == SHUTDOWN_suspend:
            self._write(core, domid, action, t0)
            return
        if rc < 0 or n >= POLL_LIMIT:
            self._log(core, f"xm save {action.domain}: Error: the domain did not suspend")
            return
        k = self.dom0.kernel
        assert k is not None
        k.add_timer(
            core,
            core.now_ns() + POLL_NS,
            lambda c, _d: self._poll(c, domid, action, t0, n + 1),
        )

    def _write(self, core: Core, domid: int, action: SaveAction, t0: int) -> None:
        name = action.domain
        d = self.specs[name]
        path = self._path(action.file, True)
        ts = self.dom0.toolstack(core)
        disks = [
            (vbd.name, vbd.size or 0, self._own_disk(name, vbd.name))
            for vbd in d.vbds
            if self.scenario.image_path(vbd) is None
        ]
        try:
            save_domain(ts, domid, config_of(d), self._config(d), path, disks)
        except FileExistsError:
            self._log(core, f"xm save {name}: Error: {path} exists; not overwritten")
            return
        except (OSError, BuildError) as err:
            self._log(core, f"xm save {name}: Error: {err}")
            return
        k = self.dom0.kernel
        assert k is not None
        k.emit(core, K.GUEST_MARK, core.now_ns() - t0, text="xend.saved")
        xend = self.dom0.xend
        assert xend is not None
        if action.checkpoint:
            try:
                resume_checkpoint(ts, domid)
            except BuildError as err:
                self._log(core, f"xm save -c {name}: Error: {err}")
            return
        self.dom0.grant_tool.granter_leaving(core, domid)
        xend.destroy(core, domid, name)

    def _own_disk(self, name: str, vbd: str) -> Path:
        """The disk file the run made for guest `name`'s vbd `vbd` (one with no image)."""
        return self.dom0.xm.disk_dir / f"{name}-{vbd}.img"

    def _config(self, d: DomainSpec) -> dict[str, object]:
        """The domain's entry as the file keeps it: a vbd over a user's image names that
        file by its absolute path (restored, it is opened with the mode saved: written
        only if that was `w`); a disk the run made keeps its size, and its data goes into
        the file (`save_domain`), so the file alone restores it in another run. Where
        and when it was built (`start`, `config`, `restore`) is not kept."""
        config = reloadable_dump(d)
        for key in ("start", "config", "restore"):
            config.pop(key, None)
        for dev in config.get("devices", []):
            if isinstance(dev, dict) and dev.get("kind") == "vbd":
                vbd = next(v for v in d.vbds if v.name == dev["name"])
                image = self.scenario.image_path(vbd)
                if image is not None:
                    dev["image"] = str(image.resolve())
                    dev["size"] = None
        return config

    # -- restore ---------------------------------------------------------------------------
    def restore(self, core: Core, action: RestoreAction) -> None:
        written = any(
            isinstance(a, SaveAction) and a.file == action.file for a in self.scenario.timeline
        )
        path = self._path(action.file, written)
        try:
            d = DomainSpec.model_validate(read_header(path).config)
        except (SaveFileError, ValueError) as err:
            self._log(core, f"xm restore {action.file}: Error: {str(err).splitlines()[0]}")
            return
        if action.domain:
            d = d.model_copy(update={"name": action.domain})
        self.restore_spec(core, d, path)

    def restore_domain_of(self, core: Core, d: DomainSpec) -> None:
        """A scenario domain with `restore: <file>`, due now: restored from that file."""
        assert d.restore is not None
        self.restore_spec(core, d, self._path(d.restore, False))

    def restore_spec(self, core: Core, d: DomainSpec, path: Path) -> None:
        """Build guest `d` from the save file at `path` and start it. The disks the run
        made for the saved guest come out of the file into this run's own disk files
        (written aside first, then put in place: a failed restore leaves none)."""
        dom0 = self.dom0
        assert dom0.store is not None and dom0.consoled is not None and dom0.xend is not None
        ts = dom0.toolstack(core)
        props = {**workload_properties(d.workloads), **dom0.xm.io_props(d)}
        own = {
            vbd.name: self._own_disk(d.name, vbd.name)
            for vbd in d.vbds
            if self.scenario.image_path(vbd) is None
        }
        aside = {name: f.with_suffix(".restoring") for name, f in own.items()}
        try:
            dom0.xm.disk_dir.mkdir(parents=True, exist_ok=True)
            domid, cport, sport = restore_domain(ts, path, config_of(d), props, aside)
            for name, f in aside.items():
                f.replace(own[name])
        except (BuildError, SaveFileError, OSError) as err:
            self._log(core, f"xm restore {d.name}: Error: {err}")
            return
        self.specs[d.name] = d
        dom0.xm.names[domid] = d.name
        dom0.xm.domids[d.name] = domid
        dom0.destroyed.discard(d.name)
        dom0.store.introduce(core, domid, sport)
        dom0.consoled.connect(core, domid, cport, d.name)
        dom0.xm.plug_spec(core, d, domid, dom0.xend)
        assert dom0.kernel is not None
        dom0.xm.announce_restored(core, dom0.kernel, d, domid)
        dom0.grant_tool.granter_restored(core, d.name, domid)
        try:
            unpause(ts, domid)
        except BuildError as err:
            self._log(core, f"xm restore {d.name}: Error: {err}")
            return
        k = dom0.kernel
        assert k is not None
        k.emit(core, K.GUEST_MARK, domid, text="xend.restored")
