"""Domains restored from a save file (`restore: <file>`) instead of being built.

The file alone is enough: its configuration (the saved domain's entry: memory, VCPUs,
devices, workloads...) becomes the domain's, so beside `restore` an item may give only
`name` (default: the saved domain's) and `start` (default 0, or `timeline`); any other key
is refused in one line. The file is verified whole now - signature, SHA-256, configuration
- so a missing, truncated or corrupted file is a one-line error (exit 2) before the run
directory exists. Its vbds are validated as any scenario's: a user's image must exist, be
the saved size and open with the saved mode (only a `w` one is ever written); the run's
own disks travel inside the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from framework.errors import SaveFileError
from framework.save_file import verify
from framework.scenario.fields import FieldPath, Problem, clip

__all__ = ["RESTORE_KEYS", "expand_restores", "restore_origin"]

#: What a restored domain's item may say beside `restore`.
RESTORE_KEYS: Final = ("name", "start")


def expand_restores(data: object, base_dir: Path, found: dict[int, frozenset[str]]) -> object:
    """Scenario data with each `domains[i]` that names a `restore` file filled from the
    file's configuration (the item's `name` and `start` win). `found` gets the item's own
    keys by domain index, for `restore_origin`."""
    if not isinstance(data, dict) or not isinstance(data.get("domains"), list):
        return data
    domains: list[object] = []
    for i, item in enumerate(data["domains"]):
        if not isinstance(item, dict) or "restore" not in item:
            domains.append(item)
            continue
        name = item["restore"]
        if not isinstance(name, str) or not name:
            raise Problem(
                ("domains", i, "restore"),
                f"expected the path of a save file, got {clip(repr(name))}",
            )
        extra = sorted(k for k in item if k != "restore" and k not in RESTORE_KEYS)
        if extra:
            raise Problem(
                ("domains", i, extra[0]),
                f"a restored domain takes {extra[0]!r} from its save file; beside `restore` "
                f"only {' and '.join(RESTORE_KEYS)} may be given",
            )
        given = Path(name)
        try:
            header = verify(given if given.is_absolute() else base_dir / given)
        except SaveFileError as err:
            raise Problem(("domains", i, "restore"), str(err)) from err
        found[i] = frozenset(item)
        saved = {k: v for k, v in header.config.items() if k not in ("start", "config")}
        domains.append({**saved, **item})
    return {**data, "domains": domains}


def restore_origin(found: dict[int, frozenset[str]], path: FieldPath) -> FieldPath | None:
    """Where to report an error at `path` about a key a save file gave: the item's
    `restore` key (the scenario has no line for the saved configuration)."""
    if len(path) < 3 or path[0] != "domains" or not isinstance(path[1], int):
        return None
    own = found.get(path[1])
    if own is None or path[2] in own:
        return None
    return ("domains", path[1], "restore")
