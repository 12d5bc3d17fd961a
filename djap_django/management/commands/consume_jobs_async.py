"""`manage.py consume_jobs_async`: the same worker, and the same options, as `djap work`."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from djap_django.preflight import database_problem
from djap_django.runner import run_worker_process
from djap_django.worker import WorkerOptions


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


class Command(BaseCommand):
    help = "Run one djap worker process (the same as `djap work`)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--concurrency", type=_positive_int, default=None)
        parser.add_argument("--lanes", type=_positive_int, default=None)
        parser.add_argument("--include", type=_names, default=None)
        parser.add_argument("--exclude", type=_names, default=[])
        parser.add_argument("--burst", action="store_true")
        parser.add_argument("--num-jobs", type=_positive_int, default=None)
        parser.add_argument("--timeout", type=_seconds, default=None)
        parser.add_argument("--grace", type=_seconds, default=None)
        parser.add_argument("--group", default="default")
        parser.add_argument("--node-name", default=None)
        parser.add_argument("--log-level", default="INFO")

    def handle(self, *args: Any, **opts: Any) -> None:
        problem = database_problem()
        if problem:
            raise CommandError(problem)
        options = WorkerOptions(
            concurrency=opts["concurrency"],
            lanes=opts["lanes"],
            include=opts["include"],
            exclude=opts["exclude"],
            burst=opts["burst"],
            num_jobs=opts["num_jobs"],
            timeout=opts["timeout"],
            grace=opts["grace"],
            group=opts["group"],
            host=opts["node_name"],
        )
        code = run_worker_process(options, opts["log_level"])
        if code:
            raise CommandError(f"worker exited with code {code}", returncode=code)
