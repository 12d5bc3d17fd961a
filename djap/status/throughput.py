"""Jobs finished per second, measured from the workers' heartbeat counters.

A pure accumulator: the caller feeds it counters and a monotonic time, so it is
tested without processes or clocks.
"""

from __future__ import annotations

from .snapshot import Throughput


class ThroughputMeter:
    """Jobs finished per second, from the workers' heartbeat counters.

    Counters only grow within one worker row, so the meter adds each row's increase
    since it was last seen; a replaced worker's new row starts from zero. Rates are
    taken over a window of a few seconds because counters move once per heartbeat.
    """

    #: Seconds the "now" rate is averaged over.
    WINDOW_S = 5.0
    #: Points kept for the sparkline (one per `HISTORY_STEP_S`).
    HISTORY = 60
    HISTORY_STEP_S = 1.0

    def __init__(self, started: float) -> None:
        self.started = started
        self.total = 0
        self._seen: dict[int, int] = {}
        self._primed = False
        self._per_worker: dict[int, list[tuple[float, int]]] = {}
        self._points: list[tuple[float, int]] = [(started, 0)]
        self._history: list[float] = []
        self._last_history_at = started

    def update(self, now: float, counters: dict[int, int]) -> None:
        """Feed {worker id: done + failed} as read at monotonic time `now`."""
        if not self._primed:
            # Rows that existed before we started (other hosts, earlier runs) are a
            # baseline, not throughput of this run.
            self._seen, self._primed = dict(counters), True
        for wid in set(self._per_worker) - set(counters):
            del self._per_worker[wid]
        for wid, count in counters.items():
            self.total += max(0, count - self._seen.get(wid, 0))
            self._seen[wid] = max(count, self._seen.get(wid, 0))
            points = self._per_worker.setdefault(wid, [])
            points.append((now, count))
            while len(points) > 2 and now - points[1][0] >= self.WINDOW_S:
                points.pop(0)
        self._points.append((now, self.total))
        while len(self._points) > 2 and now - self._points[1][0] >= self.WINDOW_S:
            self._points.pop(0)
        if now - self._last_history_at >= self.HISTORY_STEP_S:
            self._history.append(self.rate_now())
            self._history = self._history[-self.HISTORY :]
            self._last_history_at = now

    @staticmethod
    def _rate(points: list[tuple[float, int]]) -> float:
        if len(points) < 2:
            return 0.0
        (t0, n0), (t1, n1) = points[0], points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def rate_now(self) -> float:
        return self._rate(self._points)

    def worker_rate(self, worker_id: int) -> float:
        return self._rate(self._per_worker.get(worker_id, []))

    def snapshot(self, now: float) -> Throughput:
        seconds = max(0.0, now - self.started)
        return Throughput(
            now=self.rate_now(),
            average=self.total / seconds if seconds > 0 else 0.0,
            total=self.total,
            seconds=seconds,
            history=tuple(self._history),
        )
