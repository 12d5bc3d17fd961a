"""`djap status`: a snapshot printed once as tables or JSON, or redrawn with --watch."""

from __future__ import annotations

import json
import sys
import time

from rich.console import Console

from ..dashboard.render import render
from ..status.queries import preflight
from ..status.reader import SnapshotReader, take_snapshot
from ..status.snapshot import to_json


def status_command(*, as_json: bool, watch: bool, check: bool, interval: float) -> int:
    """`djap status`: the snapshot once (tables or JSON), refreshed with --watch.

    With --check the exit code is 1 when runnable jobs wait that no live worker takes.
    """
    preflight()
    console = Console()
    if watch and not as_json:
        from rich.live import Live

        from djap_django import conf

        alias = conf.database_alias()
        reader = SnapshotReader(alias, conf.get("STALE_AFTER"), min_interval_s=interval)
        with Live(console=console, auto_refresh=False) as live:
            try:
                while True:
                    live.update(render(reader.read(time.monotonic())), refresh=True)
                    time.sleep(interval)
            except KeyboardInterrupt:
                return 0
    while True:
        snapshot = take_snapshot()
        if as_json:
            print(json.dumps(to_json(snapshot), indent=None if watch else 2), flush=True)
        elif not check:
            console.print(render(snapshot, fit_screen=False))
        if not watch:
            break
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return 0
    if check and snapshot.stranded:
        waiting = {n: snapshot.queue.get(n, {}).get("new", 0) for n in snapshot.stranded}
        print(
            "djap status: jobs wait that no live worker takes: "
            + ", ".join(f"{n} ({c} new)" for n, c in waiting.items()),
            file=sys.stderr,
        )
        return 1
    if check and not as_json:
        print("djap status: ok: every waiting job has a live worker that takes it")
    return 0
