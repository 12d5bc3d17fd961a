"""What the supervisor did to a process, and why: kept for the view and logged as one line."""

from __future__ import annotations

import datetime as dt
import logging

from ..status.snapshot import Event

logger = logging.getLogger("djap.supervisor")

#: Events kept in memory; the view shows the newest few.
EVENTS_KEPT = 50
#: Events a snapshot carries.
EVENTS_PUBLISHED = 10


class EventLog:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, text: str, level: int = logging.WARNING) -> None:
        """Record one event: shown in the view, logged as one line."""
        self.events.append(Event(dt.datetime.now(dt.UTC), text))
        del self.events[:-EVENTS_KEPT]
        logger.log(level, "%s", text)

    def recent(self) -> tuple[Event, ...]:
        return tuple(self.events[-EVENTS_PUBLISHED:])
