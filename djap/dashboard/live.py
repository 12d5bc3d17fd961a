"""Where the view goes: a rich Live region on a terminal, or a summary log line now and then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..status.snapshot import Snapshot
from .render import render
from .text import summary_line


class LiveView:
    """The rich Live loop: redraws the latest snapshot on every supervisor tick."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.live = Live(
            console=console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=True,
            redirect_stderr=True,
        )

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def __call__(self, snapshot: Snapshot) -> None:
        self.live.update(render(snapshot), refresh=True)


class LogView:
    """Without a TTY: process events are log lines already; add a summary line now and then."""

    def __init__(
        self, emit: Callable[[str], object], every_s: float, clock: Callable[[], float]
    ) -> None:
        self.emit, self.every_s, self.clock = emit, every_s, clock
        self.last = clock()

    def __call__(self, snapshot: Snapshot) -> None:
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            self.emit(summary_line(snapshot))
