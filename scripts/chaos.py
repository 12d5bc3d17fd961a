"""The fault-injection soak behind scripts/chaos: real faults, then every job accounted for.

Three workers under `djap supervise` on a PostgreSQL cluster of its own run side-
effecting jobs (each attempt records its start and end, with its process and time)
and fan-out/join pipelines, while this script SIGKILLs and SIGSTOPs workers at
random, restarts PostgreSQL once, lets a trigger refuse some finishes, and prunes
done jobs and pipelines beside them. At the end it checks, and prints:

- every job is done, or failed with a reason (pruned ones were done: prune takes
  only `done` here, and a pipeline only whole);
- every pipeline ended, and every join that ran got all its branches;
- every second run has a cause this script injected: the earlier attempt's process
  was killed or stopped, or that attempt broke off during the PostgreSQL restart.

Run it through scripts/chaos, which starts and stops the throwaway cluster.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "djap_chaos"
#: Seconds a worker may be silent before it counts as dead (short, so rescues come soon).
STALE_AFTER_S = 5.0
HEARTBEAT_S = 0.5
#: A SIGSTOP this long is shorter than STALE_AFTER (no rescue), or longer (a rescue).
SHORT_STOP_S = 1.0
LONG_STOP_S = 2 * STALE_AFTER_S
#: An attempt that broke off this close to the PostgreSQL restart is the restart's doing.
RESTART_WINDOW_S = 30.0
BRANCHES = 5  # per pipeline: SquareAndSum fans out into this many squares, then joins


@dataclass
class Faults:
    """What the script did, and when."""

    #: Processes SIGKILLed, or SIGSTOPped past STALE_AFTER: their jobs may run again.
    killed: set[int] = field(default_factory=set)
    stopped: set[int] = field(default_factory=set)
    #: Processes SIGSTOPped for less than STALE_AFTER: nothing of theirs may run again.
    paused: set[int] = field(default_factory=set)
    kills: int = 0
    short_stops: int = 0
    long_stops: int = 0
    restarts: list[float] = field(default_factory=list)
    prunes: int = 0
    pruned: int = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the throwaway cluster's postgresql:// URL")
    p.add_argument("--pg-dir", required=True, help="its directory (scripts/pg-throwaway)")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--pipelines", type=int, default=500)
    p.add_argument("--procs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=50)
    # A worker killed every minute or so lets the supervisor's crash backoff reset.
    p.add_argument("--kill-every", type=float, default=20.0, help="seconds between SIGKILLs")
    p.add_argument("--stop-every", type=float, default=25.0, help="seconds between SIGSTOPs")
    p.add_argument("--prune-every", type=float, default=5.0)
    p.add_argument("--refuse", type=float, default=0.01, help="share of finishes refused")
    p.add_argument("--restart-at", type=float, default=0.4, help="restart PG at this progress")
    p.add_argument("--job-ms", type=float, default=20.0, help="longest job body, ms")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--log", default="/tmp/djap-chaos-supervisor.log")
    return p.parse_args(argv)


def setup_django(url: str) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJAP_TEST_DB": "postgres",
        "DJAP_TEST_DATABASE_URL": url,
        "DJAP_TEST_DB_NAME": DB_NAME,
        "DJAP_TEST_STALE_AFTER": str(STALE_AFTER_S),
        "DJAP_TEST_HEARTBEAT": str(HEARTBEAT_S),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        admin.execute(f"CREATE DATABASE {DB_NAME}")
        # The soak is about faults, not the disk: commits do not wait for the WAL flush.
        # A restart here is a clean (fast) shutdown, which flushes it, so nothing is lost.
        admin.execute(f"ALTER DATABASE {DB_NAME} SET synchronous_commit = off")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return {**os.environ, **env}


def install_refusals(share: float) -> None:
    """A trigger that refuses `share` of the finishes; a sequence counts the refusals."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CREATE SEQUENCE IF NOT EXISTS djap_chaos_refusals")
        cur.execute(
            f"""CREATE OR REPLACE FUNCTION djap_chaos_refuse() RETURNS trigger AS $$
                BEGIN
                  IF OLD.status = 'in_progress' AND NEW.status IN ('done', 'failed')
                     AND random() < {float(share)} THEN
                    PERFORM nextval('djap_chaos_refusals');
                    RAISE EXCEPTION 'chaos: this write is refused';
                  END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql"""
        )
        cur.execute(
            "CREATE TRIGGER djap_chaos_refuse BEFORE UPDATE ON djap_job "
            "FOR EACH ROW EXECUTE FUNCTION djap_chaos_refuse()"
        )


def enqueue(jobs: int, pipelines: int, job_ms: float, rng: random.Random) -> None:
    import djap
    from tests.testapp.jobs import ChaosRecord
    from tests.testapp.pipelines import SquareAndSum

    chunk = 5000
    for start in range(0, jobs, chunk):
        djap.bulk_create_new(
            [
                ChaosRecord.create({"key": i, "seconds": rng.uniform(0, job_ms / 1000)})
                for i in range(start, min(jobs, start + chunk))
            ]
        )
    for _ in range(pipelines):
        SquareAndSum.trigger({"count": BRANCHES})


def query(fn, attempts: int = 60):
    """Run an ORM read, riding out the restart this script itself causes."""
    from django.db import InterfaceError, OperationalError, connections

    for attempt in range(attempts):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            connections.close_all()
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def left() -> tuple[int, int]:
    """(jobs not finished, pipelines running)."""
    from djap_django.models import JobDBModel, PipelineDBModel

    def count():
        open_ = JobDBModel.objects.filter(status__in=("new", "in_progress", "not_ready")).count()
        running = PipelineDBModel.objects.filter(status="running").count()
        return open_, running

    return query(count)


#: Only a worker registered this long ago is a victim: it has claimed jobs, and the
#: supervisor's crash backoff (which grows while workers die young) stays short.
VICTIM_MIN_UPTIME_S = 5.0


def workers_of(sup: subprocess.Popen) -> list[int]:
    """The supervisor's live child processes."""
    import psutil

    found = []
    try:
        for child in psutil.Process(sup.pid).children():
            with _suppress_psutil():
                if child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child.pid)
    except psutil.Error:
        pass
    return found


def victims(sup: subprocess.Popen) -> list[int]:
    """Children whose worker row has said `running` for VICTIM_MIN_UPTIME_S at least."""
    import datetime as dt

    from djap_django.models import WorkerDBModel

    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=VICTIM_MIN_UPTIME_S)
    registered = set(
        query(
            lambda: list(
                WorkerDBModel.objects.filter(
                    supervisor_pid=sup.pid, state="running", started_at__lt=since
                ).values_list("pid", flat=True)
            )
        )
    )
    return [pid for pid in workers_of(sup) if pid in registered]


class _suppress_psutil:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        import psutil

        return kind is not None and issubclass(kind, psutil.Error)


def prune(env: dict[str, str], faults: Faults) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "djap",
            "prune",
            "--older-than",
            "0s",
            "--status",
            "done",
            "--quiet",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"deleted (\d+) jobs", out.stdout)
    if found:
        faults.prunes += 1
        faults.pruned += int(found.group(1))


def inject(args, env, sup, faults: Faults, rng: random.Random, total: int) -> float:
    """Faults until nothing is left to run; returns the seconds it took."""
    started = time.monotonic()
    next_kill = started + args.kill_every * rng.uniform(0.5, 1.5)
    next_stop = started + args.stop_every * rng.uniform(0.5, 1.5)
    next_prune = started + args.prune_every
    to_continue: list[tuple[float, int]] = []
    restarted = False
    while True:
        now = time.monotonic()
        if now - started > args.timeout:
            print(f"chaos: timed out after {args.timeout:g} s", file=sys.stderr)
            break
        for due, pid in [c for c in to_continue if c[0] <= now]:
            to_continue.remove((due, pid))
            with _suppress():
                os.kill(pid, signal.SIGCONT)
        open_, running = left()
        if open_ == 0 and running == 0 and not to_continue:
            break
        if not restarted and open_ <= total * (1 - args.restart_at):
            restarted = True
            faults.restarts.append(time.time())
            subprocess.run([str(ROOT / "scripts/pg-throwaway"), "restart", args.pg_dir], check=True)
        pids = victims(sup)
        if pids and now >= next_kill:
            pid = rng.choice(pids)
            with _suppress():
                os.kill(pid, signal.SIGKILL)
                faults.killed.add(pid)
                faults.kills += 1
            next_kill = now + args.kill_every * rng.uniform(0.5, 1.5)
        if pids and now >= next_stop:
            pid = rng.choice(pids)
            long_stop = rng.random() < 0.5
            with _suppress():
                os.kill(pid, signal.SIGSTOP)
                if long_stop:
                    faults.stopped.add(pid)
                    faults.long_stops += 1
                else:
                    faults.paused.add(pid)
                    faults.short_stops += 1
                to_continue.append((now + (LONG_STOP_S if long_stop else SHORT_STOP_S), pid))
            next_stop = now + args.stop_every * rng.uniform(0.5, 1.5)
        if now >= next_prune:
            prune(env, faults)
            next_prune = time.monotonic() + args.prune_every
        time.sleep(0.2)
    return time.monotonic() - started


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, ProcessLookupError)


@dataclass
class Attempt:
    number: int
    pid: int
    started: float
    ended: bool = False


#: Supervisor log lines for the workers it SIGKILLed itself (hung, or slow to stop).
_SUPERVISOR_KILL = re.compile(r"pid (\d+) (?:hung|did not stop in time)")


def supervisor_kills(log_path: str) -> set[int]:
    """The pids the supervisor killed: a SIGSTOP past STALE_AFTER ends that way, and so
    does a worker starved of CPU for that long on a loaded machine."""
    text = Path(log_path).read_text(errors="replace")
    return {int(pid) for pid in _SUPERVISOR_KILL.findall(text)}


def verify(args, faults: Faults) -> tuple[dict[str, int], list[str]]:
    """The counts, and what is wrong (empty when every check passes)."""
    from django.db import connection

    from djap_django.models import JobDBModel, PipelineDBModel
    from tests.testapp.jobs import SUM_ALL_KEY
    from tests.testapp.models import Execution

    problems: list[str] = []
    rows = dict(JobDBModel.objects.filter(name="ChaosRecord").values_list("inputs__key", "status"))
    reasons = dict(
        JobDBModel.objects.filter(name="ChaosRecord", status="failed").values_list(
            "inputs__key", "error"
        )
    )
    attempts: dict[int, dict[int, Attempt]] = collections.defaultdict(dict)
    for key, pid, env in Execution.objects.exclude(key=SUM_ALL_KEY).values_list(
        "key", "pid", "env"
    ):
        phase, number, at = env.split()
        got = attempts[key].setdefault(int(number), Attempt(int(number), pid, float(at)))
        if phase == "end":
            got.ended = True
    by_status = collections.Counter(rows.values())
    pruned = 0
    for key in range(args.jobs):
        status = rows.get(key)
        if status is None:
            pruned += 1
            if not any(a.ended for a in attempts[key].values()):
                problems.append(f"job {key} is gone but never ran to its end")
        elif status not in ("done", "failed"):
            problems.append(f"job {key} is {status}")
        elif status == "failed" and not reasons.get(key):
            problems.append(f"job {key} failed without a reason")
    by_supervisor = supervisor_kills(args.log)
    second_runs = by_kill = by_supervisor_kill = by_restart = 0
    for key, runs in attempts.items():
        for number in sorted(runs):
            if number == 1:
                continue
            second_runs += 1
            before = runs.get(number - 1)
            if before is None:
                # The earlier attempt's own start record failed: only an outage does that.
                by_restart += 1
            elif before.pid in faults.killed or before.pid in faults.stopped:
                by_kill += 1
            elif before.pid in by_supervisor:
                by_supervisor_kill += 1
            elif not before.ended and any(
                abs(before.started - t) < RESTART_WINDOW_S for t in faults.restarts
            ):
                by_restart += 1
            else:
                problems.append(
                    f"job {key}: attempt {number} ran after attempt {number - 1} in pid "
                    f"{before.pid}, which nobody killed or stopped past STALE_AFTER"
                    + (" (that attempt had finished its body)" if before.ended else "")
                )
    pipelines = collections.Counter(PipelineDBModel.objects.values_list("status", flat=True))
    if pipelines.get("running"):
        problems.append(f"{pipelines['running']} pipelines still running")
    joins = collections.Counter(
        Execution.objects.filter(key=SUM_ALL_KEY).values_list("env", flat=True)
    )
    short = {env: n for env, n in joins.items() if env != str(BRANCHES)}
    if short:
        problems.append(f"joins that got fewer than {BRANCHES} branches: {short}")
    with connection.cursor() as cur:
        cur.execute("SELECT last_value, is_called FROM djap_chaos_refusals")
        last, called = cur.fetchone()
    counts = {
        "jobs": args.jobs,
        "done (left in the table)": by_status.get("done", 0),
        "failed, with a reason": by_status.get("failed", 0),
        "pruned (done)": pruned,
        "executions": sum(len(r) for r in attempts.values()),
        "second runs": second_runs,
        "  after a SIGKILL or SIGSTOP of their worker": by_kill,
        "  after the supervisor killed their worker (hung)": by_supervisor_kill,
        "  after the PostgreSQL restart broke their attempt": by_restart,
        "  unexplained": second_runs - by_kill - by_supervisor_kill - by_restart,
        "pipelines": args.pipelines,
        "  done": pipelines.get("done", 0),
        "  failed": pipelines.get("failed", 0),
        "  pruned whole": args.pipelines - sum(pipelines.values()),
        "joins run (all with every branch)": sum(joins.values()),
        "SIGKILLs": faults.kills,
        "workers the supervisor found hung and killed": len(by_supervisor),
        f"SIGSTOPs < STALE_AFTER ({SHORT_STOP_S:g} s)": faults.short_stops,
        f"SIGSTOPs > STALE_AFTER ({LONG_STOP_S:g} s)": faults.long_stops,
        "PostgreSQL restarts": len(faults.restarts),
        "finishes refused by the trigger": last if called else 0,
        "prune passes": faults.prunes,
        "rows pruned": faults.pruned,
    }
    return counts, problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    env = setup_django(args.url)
    install_refusals(args.refuse)
    t0 = time.monotonic()
    enqueue(args.jobs, args.pipelines, args.job_ms, rng)
    total = args.jobs + args.pipelines * (BRANCHES + 2)
    print(
        f"chaos: enqueued {args.jobs} jobs and {args.pipelines} pipelines in "
        f"{time.monotonic() - t0:.1f} s; starting {args.procs} workers",
        flush=True,
    )
    log = open(args.log, "wb")  # noqa: SIM115 - closed below
    sup = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "djap",
            "supervise",
            "--procs",
            str(args.procs),
            "--concurrency",
            str(args.concurrency),
            "--no-dashboard",
            "--grace",
            "5",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    faults = Faults()
    try:
        took = inject(args, env, sup, faults, rng, total)
    finally:
        for pid in workers_of(sup):
            with _suppress():
                os.kill(pid, signal.SIGCONT)
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
        log.close()
    counts, problems = query(lambda: verify(args, faults))
    width = max(map(len, counts))
    print(f"chaos: {took:.0f} s of faults; supervisor exited {sup.returncode}; log {args.log}")
    for name, value in counts.items():
        print(f"  {name:<{width}}  {value:>8}")
    for problem in problems[:50]:
        print(f"PROBLEM: {problem}")
    if problems:
        print(f"chaos: FAILED, {len(problems)} problems", file=sys.stderr)
        return 1
    print(
        "chaos: every job done or failed with a reason, every pipeline ended, "
        "every second run explained"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
