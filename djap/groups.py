"""Which processes `djap supervise` starts: the general group and the dedicated ones.

`--gpu-procs 1:GpuJob` and `--pool 2:Resize,Thumb` each make a group that runs only
those job names; the general group (`--procs`) excludes them by itself, so a job
name is never claimed by two kinds of process.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    procs: int
    #: None: every job name (the general group); else only these.
    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    #: Process i of this group gets CUDA_VISIBLE_DEVICES=i.
    gpu: bool = False


def parse_dedicated(flag: str, text: str) -> tuple[int, list[str]]:
    """'2:A,B' -> (2, ['A', 'B']); ValueError names the flag and the expected shape."""
    shape = f"{flag} {text!r} should look like N:JobName[,JobName...], e.g. {flag} 1:GpuJob"
    count, sep, names_text = text.partition(":")
    if not sep:
        raise ValueError(shape)
    try:
        n = int(count)
    except ValueError:
        raise ValueError(shape) from None
    if n < 1:
        raise ValueError(f"{flag} {text!r}: the process count must be at least 1")
    names = [n_.strip() for n_ in names_text.split(",") if n_.strip()]
    if not names:
        raise ValueError(shape)
    return n, names


def plan_groups(
    procs: int,
    gpu_procs: str | None = None,
    pools: list[str] | None = None,
    exclude: list[str] | None = None,
) -> list[GroupSpec]:
    """The groups to start, general one first; ValueError on bad or overlapping specs."""
    dedicated: list[GroupSpec] = []
    if gpu_procs:
        n, names = parse_dedicated("--gpu-procs", gpu_procs)
        dedicated.append(GroupSpec("gpu", n, include=names, gpu=True))
    for i, text in enumerate(pools or [], start=1):
        n, names = parse_dedicated("--pool", text)
        dedicated.append(GroupSpec(f"pool{i}", n, include=names))
    owner: dict[str, str] = {}
    for group in dedicated:
        for name in group.include or []:
            if name in owner:
                raise ValueError(
                    f"job {name!r} is in both the {owner[name]} and the {group.name} group; "
                    "give each job name to one dedicated group"
                )
            owner[name] = group.name
    if procs < 0:
        raise ValueError("--procs must be 0 or more")
    if procs == 0 and not dedicated:
        raise ValueError("nothing to start: give --procs at least 1, or --gpu-procs / --pool")
    general_exclude = list(dict.fromkeys([*(exclude or []), *owner]))
    groups = [GroupSpec("default", procs, include=None, exclude=general_exclude)] if procs else []
    return groups + dedicated


def check_names(groups: list[GroupSpec], registered: list[str]) -> None:
    """Fail on a job name no jobs.py defines (a typo would leave a process idle forever)."""
    for group in groups:
        for name in [*(group.include or []), *group.exclude]:
            if name in registered:
                continue
            close = difflib.get_close_matches(name, registered, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"no registered job is named {name!r} (group {group.name}){hint} "
                f"Registered jobs: {', '.join(sorted(registered)) or 'none'}"
            )
