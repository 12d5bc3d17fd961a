"""Health of a worker process: a psutil sample, and the restart policy as pure decisions.

The supervisor samples each child about once a second (`sample_process`) and asks
`decide` what to do with it. Everything after the sample is a pure function of
plain values, so the policy is tested without processes or clocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import psutil

#: The first restart after a crash waits this long (seconds); each further crash doubles it.
BACKOFF_FIRST = 1.0
#: The backoff never exceeds this (seconds).
BACKOFF_MAX = 60.0
#: A process that stayed up this long (seconds) was healthy: its crash streak is forgotten.
BACKOFF_RESET_AFTER = 60.0
#: A process gets this long (seconds) to import Django and register its worker row.
STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    """What the supervisor knows about one child at one instant."""

    pid: int
    #: None while the process runs; its exit code once it has exited (negative: a signal).
    exit_code: int | None = None
    zombie: bool = False
    rss: int = 0
    cpu_percent: float = 0.0
    #: Seconds since the process started.
    uptime: float = 0.0
    #: Seconds since the worker row's last heartbeat; None until the row exists.
    heartbeat_age: float | None = None
    #: True once the process was asked to drain (SIGTERM sent).
    draining: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    """The thresholds `decide` applies; from DJAP settings and supervise's flags."""

    #: A heartbeat older than this (seconds) means a hung event loop or a stopped process.
    hung_after: float
    #: RSS in bytes above which a process drains and is replaced; None = no limit.
    max_memory: int | None = None
    startup_timeout: float = STARTUP_TIMEOUT


class Action(StrEnum):
    KEEP = "keep"
    #: The process exited: reap it, put its jobs back, start another (after the backoff).
    RESTART = "restart"
    #: The process is hung: SIGKILL it, then as RESTART.
    KILL = "kill"
    #: The process is too big: ask it to drain (SIGTERM) and start a replacement now.
    RECYCLE = "recycle"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    #: Whether this counts toward the crash streak (and so the backoff).
    crash: bool = False


def decide(sample: Sample, limits: Limits) -> Decision:
    """What to do with a process, from one sample."""
    if sample.exit_code is not None or sample.zombie:
        return Decision(Action.RESTART, describe_exit(sample.exit_code), crash=True)
    if sample.heartbeat_age is None:
        if sample.uptime > limits.startup_timeout:
            return Decision(
                Action.KILL,
                f"no heartbeat {sample.uptime:.0f}s after start (startup hung)",
                crash=True,
            )
    elif sample.heartbeat_age > limits.hung_after:
        return Decision(
            Action.KILL,
            f"hung: no heartbeat for {sample.heartbeat_age:.0f}s (limit {limits.hung_after:g}s)",
            crash=True,
        )
    if limits.max_memory is not None and not sample.draining and sample.rss > limits.max_memory:
        return Decision(
            Action.RECYCLE,
            f"memory: RSS {format_bytes(sample.rss)} over --max-memory "
            f"{format_bytes(limits.max_memory)}",
        )
    return Decision(Action.KEEP)


def describe_exit(code: int | None) -> str:
    """'exited with code 3', 'killed by SIGKILL'."""
    if code is None:
        return "exited (zombie)"
    if code < 0:
        try:
            import signal

            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def next_crash_streak(streak: int, uptime: float, crash: bool) -> int:
    """The crash streak after a process ends: reset by a long healthy run."""
    if uptime >= BACKOFF_RESET_AFTER:
        streak = 0
    return streak + 1 if crash else streak


def backoff_delay(streak: int) -> float:
    """Seconds to wait before restarting after `streak` crashes in a row (0: none)."""
    if streak <= 0:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (streak - 1))


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'512MB', '1.5G', '200m', '1048576' -> bytes (binary units); ValueError names the fix."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a size: write it like 512MB or 2GB")
    number, unit = float(match.group(1)), match.group(2).lower()
    value = int(number * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"size {text!r} must be more than zero")
    return value


def format_bytes(n: int | float) -> str:
    """1536 -> '1.5K', 52428800 -> '50M'."""
    for unit in ("", "K", "M", "G"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


class ProcessProbe:
    """psutil's view of one child; kept between samples so CPU% is measured over the gap."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._proc: psutil.Process | None = psutil.Process(pid)
            self._proc.cpu_percent(None)  # the first call only starts the measurement
        except psutil.Error:
            self._proc = None

    def measure(self) -> tuple[bool, int, float]:
        """(zombie, rss bytes, cpu percent since the last call); zeros once it is gone."""
        if self._proc is None:
            return False, 0, 0.0
        try:
            with self._proc.oneshot():
                zombie = self._proc.status() == psutil.STATUS_ZOMBIE
                if zombie:
                    return True, 0, 0.0
                return False, self._proc.memory_info().rss, self._proc.cpu_percent(None)
        except psutil.NoSuchProcess:
            return False, 0, 0.0
        except psutil.Error:
            return False, 0, 0.0
