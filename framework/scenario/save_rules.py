"""Validation of `xm save` / `xm restore` on a scenario's timeline: what a save can carry,
when a restore's file exists, and that a save file given by the user is whole before
anything is built from it (its checksum, read now)."""

from __future__ import annotations

from pathlib import Path

from framework.errors import SaveFileError
from framework.save_file import verify
from framework.scenario.domains import DomainSpec
from framework.scenario.fields import Problem
from framework.scenario.grants import GrantSpec
from framework.scenario.limits import is_dom0_name
from framework.scenario.timeline import RestoreAction, SaveAction, TimelineAction
from framework.scenario.workloads import NetstreamWorkload
from framework.units import format_duration

__all__ = ["check_restore_action", "check_save_action", "check_save_files", "check_save_grants"]


def check_save_action(k: int, action: SaveAction, d: DomainSpec) -> None:
    """What a save can carry: one VCPU, vbds only, no netstream (a pingpong side
    re-establishes its channel after the restore)."""
    if d.vcpus != 1:
        raise Problem(
            ("timeline", k, "domain"),
            f"domain {d.name!r} has {d.vcpus} VCPUs; only a single-VCPU guest can be saved",
        )
    for w in d.workloads:
        if isinstance(w, NetstreamWorkload):
            raise Problem(
                ("timeline", k, "domain"),
                f"domain {d.name!r} runs a {w.kind} workload, which save/restore does not "
                "carry (its vif is not reconnected)",
            )
    if d.vifs:
        raise Problem(
            ("timeline", k, "domain"),
            f"domain {d.name!r} has a vif; only vbds are reconnected after a restore",
        )


def check_restore_action(
    k: int,
    action: RestoreAction,
    timeline: tuple[TimelineAction, ...],
    duration: int,
    destroyed: dict[str, tuple[int, int]],
) -> None:
    """A restore comes before the end, after the save that writes its file (if one does);
    the restored name may be used again from then on."""
    if action.at >= duration:
        raise Problem(
            ("timeline", k, "at"),
            f"at {format_duration(action.at)} is not before the end of the run "
            f"(duration {format_duration(duration)})",
        )
    saver = next((a for a in timeline if isinstance(a, SaveAction) and a.file == action.file), None)
    if saver is not None and saver.at >= action.at:
        raise Problem(
            ("timeline", k, "at"),
            f"at {format_duration(action.at)} the file {action.file!r} is not written yet "
            f"(its save is at {format_duration(saver.at)})",
        )
    name = action.domain or (saver.domain if saver is not None else None)
    if name is not None:
        destroyed.pop(name, None)


def check_save_files(timeline: tuple[TimelineAction, ...], base_dir: Path) -> None:
    """A save never overwrites a file; a restore of a file no save of this run writes
    needs a whole, uncorrupted save file (checked now: nothing is built from a bad one)."""
    written = {a.file for a in timeline if isinstance(a, SaveAction)}
    for k, action in enumerate(timeline):
        if (
            isinstance(action, SaveAction)
            and Path(action.file).is_absolute()
            and Path(action.file).exists()
        ):
            raise Problem(
                ("timeline", k, "file"),
                f"{action.file} exists; xm save never overwrites a file",
            )
        if isinstance(action, RestoreAction) and action.file not in written:
            try:
                verify(base_dir / action.file)
            except SaveFileError as err:
                raise Problem(("timeline", k, "file"), str(err)) from err


def check_save_grants(timeline: tuple[TimelineAction, ...], grants: tuple[GrantSpec, ...]) -> None:
    """A granter whose peer is dom0 may be saved (its grants are re-established after the
    restore); a grant's peer is not, nor a granter whose peer is a guest (that peer is not
    told the restored granter's domid)."""
    for k, action in enumerate(timeline):
        if not isinstance(action, SaveAction):
            continue
        for g in grants:
            if action.domain == g.peer:
                why = "a grant's peer is not reconnected after a restore"
            elif action.domain == g.granter and not is_dom0_name(g.peer):
                why = "only a grant to dom0 is re-established after a restore"
            else:
                continue
            raise Problem(
                ("timeline", k, "domain"),
                f"domain {action.domain!r} takes part in grant {g.name!r}; {why}",
            )
