"""`djap supervise`: start worker processes, watch them, replace the ones that fail.

One module per job, each importing only those above it in this list:

- `options`: what was asked (`SuperviseOptions`);
- `processes`: process control: slots, children, spawn, signals, reap;
- `events`: what was done to a process and why (the view's lines, one log line each);
- `database`: whether the worker table is readable, and since when;
- `rescue`: putting back the jobs of a dead child, and of stale workers on any host;
- `restarts`: `djap.health.decide` wired to signals, rescues and backoff;
- `views`: the process rows of the snapshot (the view model);
- `logfile`: where log lines go under the live view;
- `core`: the loop (`Supervisor`): tick, signals, burst.

`djap.commands.supervise` is the command on top.
"""

from __future__ import annotations

from .core import IMMEDIATE_STOP_S, TICK_S, Supervisor
from .events import EVENTS_KEPT
from .logfile import default_log_file
from .options import SuperviseOptions
from .processes import Child, Slot
from .rescue import RESCUE_STALE_EVERY_S
from .restarts import STOP_MARGIN_S

__all__ = [
    "EVENTS_KEPT",
    "IMMEDIATE_STOP_S",
    "RESCUE_STALE_EVERY_S",
    "STOP_MARGIN_S",
    "TICK_S",
    "Child",
    "Slot",
    "SuperviseOptions",
    "Supervisor",
    "default_log_file",
]
