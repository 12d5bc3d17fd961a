"""A worker's background services: each a small loop with named defaults and a `run_once`.

The worker (worker.py) composes them; see Worker.services for the list and where
a new one (the scheduler of periodic jobs, the stager of scheduled ones) goes.
"""

from __future__ import annotations

from .base import Service
from .cancel_watch import CancelWatch
from .heartbeat import Heartbeat
from .pruner import Pruner
from .rescuer import Rescuer
from .scheduler import PeriodicScheduler
from .stager import Stager

__all__ = [
    "CancelWatch",
    "Heartbeat",
    "PeriodicScheduler",
    "Pruner",
    "Rescuer",
    "Service",
    "Stager",
]
