"""The live view of `djap supervise` and `djap status --watch`.

- `render`: the view as a pure function of a `djap.status.Snapshot` (tables, lines);
- `text`: the words and numbers in it (durations, counts, progress, the summary line);
- `live`: where frames go (a rich Live region, or log lines without a terminal).
"""

from __future__ import annotations

from .live import LiveView, LogView
from .render import render
from .text import (
    format_count,
    format_duration,
    jobs_left,
    pipelines_line,
    progress_text,
    sparkline,
    summary_line,
)

__all__ = [
    "LiveView",
    "LogView",
    "format_count",
    "format_duration",
    "jobs_left",
    "pipelines_line",
    "progress_text",
    "render",
    "sparkline",
    "summary_line",
]
