#!/usr/bin/env python3
"""djap side by side with the job queues a Django developer would otherwise pick, in one run.

Starts its own throwaway PostgreSQL (scripts/pg-throwaway) and, for Celery, its own
redis-server on a free port without persistence; builds one virtualenv per peer from the
pinned requirements/*.txt (djap's from this checkout); runs every peer's phases one peer
after the other on the same servers; writes report.md (medians, ranges, ratios), the raw
results.jsonl and a plot; stops the servers it started. Stdlib only: any python3 runs it.

    benchmarks/peers/run.py                          # everything: about 45 minutes
    benchmarks/peers/run.py --job noop --jobs 5000 --runs 1 --peers djap,pgqueuer,celery
    benchmarks/peers/run.py --smoke --peers djap,raw # a few seconds: the harness works
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import os
import pathlib
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

HERE = pathlib.Path(__file__).resolve().parent
HARNESS = HERE / "harness"
REQUIREMENTS = HERE / "requirements"
ROOT = HERE.parent.parent
#: A peer that has not finished all its runs by then is stopped (seconds).
PEER_TIMEOUT_S = 1800
#: A peer told to stop gets this long to stop its own workers (seconds).
PEER_STOP_S = 30
#: redis-server must answer PING within this long after its start (seconds).
REDIS_START_S = 10.0
#: Written into each venv; a venv whose stamp differs from its requirements is rebuilt.
STAMP = ".djap-peers-requirements"
#: Default jobs per drain: the no-op, and the ORM job (whose slow peers run ~100 jobs/s).
NOOP_JOBS = 20_000
ORM_JOBS = 2_000
#: The raw psycopg loop drains so fast that it runs this many times N (for the clock's sake).
RAW_SCALE = 10


@dataclass(frozen=True)
class PeerSpec:
    venv: str
    script: str
    jobs: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: A module that must import in the peer's interpreter (checked with --no-venvs).
    module: str = ""
    redis: bool = False
    postgres: bool = True


PEERS: dict[str, PeerSpec] = {
    "orm-body-20-threads": PeerSpec("djap", "peer_ormceiling.py", ("orm",), module="django"),
    "raw-psycopg3": PeerSpec("raw", "peer_raw.py", ("noop",), module="psycopg"),
    "raw-psycopg3-batch1": PeerSpec(
        "raw", "peer_raw.py", ("noop",), {"RAW_BATCH": "1"}, module="psycopg"
    ),
    "djap-pg": PeerSpec("djap", "peer_djap.py", ("noop", "orm"), {"DJAP_DB": "pg"}, "djap"),
    "djap-pg-sync": PeerSpec(
        "djap", "peer_djap.py", ("orm",), {"DJAP_DB": "pg", "DJAP_SYNC": "1"}, "djap"
    ),
    "djap-sqlite": PeerSpec(
        "djap", "peer_djap.py", ("noop",), {"DJAP_DB": "sqlite"}, "djap", postgres=False
    ),
    "pgqueuer": PeerSpec("pgqueuer", "peer_pgqueuer.py", ("noop",), module="pgqueuer"),
    "procrastinate": PeerSpec(
        "procrastinate", "peer_procrastinate.py", ("noop",), module="procrastinate"
    ),
    "chancy": PeerSpec("chancy", "peer_chancy.py", ("noop",), module="chancy"),
    "celery-noresults": PeerSpec(
        "celery", "peer_celery.py", ("noop", "orm"), {"CELERY_RESULTS": "0"}, "celery", True
    ),
    "celery-results": PeerSpec(
        "celery", "peer_celery.py", ("noop",), {"CELERY_RESULTS": "1"}, "celery", True
    ),
    "django-tasks-pg": PeerSpec(
        "djtasks", "peer_djtasks.py", ("noop", "orm"), {"DJT_DB": "pg"}, "django_tasks_db"
    ),
    "django-tasks-pg-interval0.1": PeerSpec(
        "djtasks",
        "peer_djtasks.py",
        ("noop",),
        {"DJT_DB": "pg", "DJT_INTERVAL": "0.1", "PHASES": "latency"},
        "django_tasks_db",
    ),
    "django-tasks-sqlite": PeerSpec(
        "djtasks", "peer_djtasks.py", ("noop",), {"DJT_DB": "sqlite"}, "django_tasks_db"
    ),
    "django-q2": PeerSpec("djq2", "peer_djq2.py", ("noop", "orm"), module="django_q"),
}
#: With --baseline REV: djap at that commit, beside this checkout's, in the same run.
BASELINE_PEERS: dict[str, PeerSpec] = {
    f"djap-base-{kind}": PeerSpec(
        "djap-base",
        "peer_djap.py",
        spec.jobs,
        {**spec.env, "DJAP_LABEL": "djap-base"},
        "djap",
        postgres=spec.postgres,
    )
    for kind, spec in (
        ("pg", PEERS["djap-pg"]),
        ("pg-sync", PEERS["djap-pg-sync"]),
        ("sqlite", PEERS["djap-sqlite"]),
    )
}
#: Short names a user may give for several peers at once.
ALIASES = {
    "djap": ["djap-pg", "djap-pg-sync", "djap-sqlite"],
    "djap-base": list(BASELINE_PEERS),
    "raw": ["raw-psycopg3"],
    "celery": ["celery-noresults", "celery-results"],
    "django-tasks": ["django-tasks-pg", "django-tasks-pg-interval0.1", "django-tasks-sqlite"],
    "djtasks": ["django-tasks-pg", "django-tasks-pg-interval0.1", "django-tasks-sqlite"],
    "q2": ["django-q2"],
    "ceiling": ["orm-body-20-threads"],
}
JOB_KINDS = ("noop", "orm")


class UsageError(Exception):
    """Bad arguments or a missing tool: one line, exit 2."""


def say(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------ arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="benchmarks/peers/run.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"peers: {', '.join(PEERS)}\naliases: "
        + ", ".join(f"{a}={'+'.join(v)}" for a, v in ALIASES.items())
        + "\n\nbenchmarks/peers/README.md says what each peer runs and why.",
    )
    ap.add_argument(
        "--peers", help="comma-separated peers or aliases, PEER:JOB for one job (default: all)"
    )
    ap.add_argument("--job", default="noop,orm", help="noop, orm or noop,orm (default both)")
    ap.add_argument("--jobs", type=int, help=f"no-op jobs per drain (default {NOOP_JOBS:,})")
    ap.add_argument("--orm-jobs", type=int, help=f"ORM jobs per drain (default {ORM_JOBS:,})")
    ap.add_argument("--runs", type=int, help="repetitions of every phase per peer (default 3)")
    ap.add_argument("--phases", help="enqueue,drain1,drain2,latency (default: all of them)")
    ap.add_argument("--query-ms", type=float, default=5.0, help="the ORM job's query (5 ms)")
    ap.add_argument("--out", type=pathlib.Path, help="results folder (default out/<time>)")
    ap.add_argument("--python", default="python3", help="interpreter for the peer venvs")
    ap.add_argument(
        "--djap",
        metavar="REV",
        help="measure djap at this git revision of the checkout (default: the work tree)",
    )
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="also run djap at this git revision, as the djap-base-* peers: before and "
        "after side by side in one run",
    )
    ap.add_argument(
        "--venvs",
        type=pathlib.Path,
        default=pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
        / "djap-peers"
        / "venvs",
        help="where the peer venvs live (default ~/.cache/djap-peers/venvs)",
    )
    ap.add_argument(
        "--no-venvs",
        action="store_true",
        help="run every peer with this interpreter (it must have their packages)",
    )
    ap.add_argument(
        "--database-url",
        help="use this PostgreSQL server instead of a throwaway cluster (its databases "
        "<prefix>* are dropped and recreated)",
    )
    ap.add_argument("--db-prefix", default="bench_", help="prefix of the peers' databases")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, short waits, 1 run")
    ap.add_argument("--no-plot", action="store_true", help="skip the plot")
    ap.add_argument("--list", action="store_true", help="print the peers and exit")
    return ap.parse_args(argv)


def select_peers(arg: str | None, jobs: list[str], baseline: bool) -> list[tuple[str, str]]:
    """(job, peer) pairs to run, in order: every peer of the first job, then the next."""
    if baseline:  # each djap-base peer right after its djap peer: minutes apart, not many
        order = []
        for name in PEERS:
            order.append(name)
            order += [b for b in BASELINE_PEERS if b == name.replace("djap-", "djap-base-", 1)]
        merged = {**PEERS, **BASELINE_PEERS}
        PEERS.clear()
        PEERS.update({name: merged[name] for name in order})
    only: dict[str, str] = {}  # peer -> the one job it runs ("celery-noresults:orm")
    if arg:
        names: list[str] = []
        for word in (w.strip() for w in arg.split(",") if w.strip()):
            word, _, job = word.partition(":")
            if job and job not in JOB_KINDS:
                raise UsageError(f"unknown job {job!r} in {word}:{job}: choose from noop, orm")
            if job:
                only[word] = job
            if word in ALIASES:
                names += ALIASES[word]
            elif word in PEERS:
                names.append(word)
            elif word in BASELINE_PEERS or word == "djap-base":
                raise UsageError(f"peer {word!r} needs --baseline REV")
            else:
                close = difflib.get_close_matches(word, [*PEERS, *ALIASES], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UsageError(f"unknown peer {word!r}{hint} (see --list)")
    else:
        names = list(PEERS)
    pairs = [
        (job, p)
        for job in jobs
        for p in dict.fromkeys(names)
        if job in PEERS[p].jobs and only.get(p, job) == job
    ]
    if not pairs:
        raise UsageError(f"none of the peers {names} runs the job(s) {jobs}")
    return pairs


# ------------------------------------------------------------------ services
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres(needed: bool, url: str | None) -> Iterator[str]:
    """The server's URL without a database: the given one, or a throwaway cluster's."""
    if not needed:
        yield ""
        return
    if url:
        yield url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        return
    pg_dir = tempfile.mkdtemp(prefix="djap-peers-pg.")
    tool = ROOT / "scripts" / "pg-throwaway"
    say("==> starting a throwaway PostgreSQL cluster (scripts/pg-throwaway)")
    try:  # stop (which also removes the folder) whatever happened to the start
        started = subprocess.run([str(tool), "start", pg_dir], capture_output=True, text=True)
        if started.returncode != 0:
            raise UsageError(f"could not start PostgreSQL: {started.stderr.strip()}")
        yield started.stdout.strip().rsplit("/", 1)[0]
    finally:
        subprocess.run([str(tool), "stop", pg_dir], capture_output=True)
        shutil.rmtree(pg_dir, ignore_errors=True)
        say("==> stopped the throwaway PostgreSQL cluster")


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis(needed: bool, work: pathlib.Path) -> Iterator[str]:
    """redis-server on a free port, no persistence; stopped (by its pid) on the way out."""
    if not needed:
        yield ""
        return
    exe = shutil.which("redis-server")
    if not exe:
        raise UsageError(
            "the Celery peers need redis-server (Debian: apt-get install redis-server)"
        )
    port = free_port()
    cmd = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(work), "--logfile", str(work / "redis.log")]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + REDIS_START_S
        while not redis_ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise UsageError(f"redis-server did not start; see {work / 'redis.log'}")
            time.sleep(0.05)
        say(f"==> redis-server on 127.0.0.1:{port} (pid {proc.pid}, no persistence)")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------ venvs
def interpreter(name: str) -> str:
    found = shutil.which(name) if "/" not in name else name
    if not found:
        raise UsageError(f"no interpreter {name!r}; pass --python /path/to/python3")
    return found


def checkout(rev: str | None, args: argparse.Namespace) -> tuple[pathlib.Path, str]:
    """(folder, commit) of djap at a revision: the work tree itself, or an export of it."""

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(f"git {' '.join(cmd)}: {done.stderr.strip()}")
        return done.stdout.strip()

    if rev is None:
        return ROOT, git("describe", "--always", "--dirty")
    sha = git("rev-parse", "--short", f"{rev}^{{commit}}")
    folder = args.venvs.parent / "checkouts" / sha
    if not (folder / "pyproject.toml").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", sha], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout, check=True)
        archive.wait()
    return folder, sha


def venv_python(venv: str, args: argparse.Namespace, py: str) -> str:
    """The peer venv's python, built (or rebuilt) from its pinned requirements."""
    version = subprocess.run(
        [py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    source = args.sources.get(venv)
    # A revision's venv is kept apart from the work tree's: both stay built.
    folder = f"djap-{source.name}" if source and source != ROOT else venv
    path = args.venvs / f"{folder}-py{version}"
    reqs = (REQUIREMENTS / f"{'djap' if source else venv}.txt").read_text()
    if source:
        reqs += f"\n# editable: {source}\n"
    stamp = path / STAMP
    if stamp.exists() and stamp.read_text() == reqs and (path / "bin" / "python").exists():
        return str(path / "bin" / "python")
    pinned = (
        f"djap from {source}, pinned by requirements/djap.txt"
        if source
        else (f"pinned: requirements/{venv}.txt")
    )
    say(f"==> building the {venv} venv in {path} ({pinned})")
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([py, "-m", "venv", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip.append("--disable-pip-version-check")
    if source:
        pip += ["-c", str(REQUIREMENTS / "djap.txt"), "-e", f"{source}[postgres]"]
    else:
        pip += ["-r", str(REQUIREMENTS / f"{venv}.txt")]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"pip could not build the {venv} venv: {done.stderr.strip()[-400:]}")
    stamp.write_text(reqs)
    return str(path / "bin" / "python")


def pythons(pairs: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, str]:
    """venv name -> interpreter, for every venv the selected peers need."""
    venvs = dict.fromkeys(PEERS[p].venv for _, p in pairs)
    if args.no_venvs:
        missing = sorted(
            {PEERS[p].module for _, p in pairs if not importlib.util.find_spec(PEERS[p].module)}
        )
        if missing:
            raise UsageError(f"--no-venvs: this interpreter lacks {', '.join(missing)}")
        return dict.fromkeys(venvs, sys.executable)
    py = interpreter(args.python)
    return {v: venv_python(v, args, py) for v in venvs}


# ------------------------------------------------------------------ the run
#: What `pip freeze` says, without the seconds that importing pip takes on a busy machine.
LIST_PACKAGES = (
    "import importlib.metadata as m\n"
    "print(' '.join(f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()))"
)


def describe(
    args: argparse.Namespace, pg_url: str, redis_url: str, py: dict[str, str], freeze: bool
) -> None:
    """env.txt: the machine, the servers and every venv's packages (unless not `freeze`)."""
    cores = os.cpu_count()
    lines = [
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        *(f"{name}: commit {commit}" for name, commit in args.commits.items()),
        f"machine: {cores} cores, {platform.machine()}, {platform.platform()}",
    ]
    snippet = (
        "import sys, psycopg\n"
        "c = psycopg.connect(sys.argv[1] + '/postgres')\n"
        "print(c.execute('select version()').fetchone()[0].split(',')[0])\n"
        "print(c.execute(\"select string_agg(name || '=' || setting || coalesce(unit, ''), ', '"
        " order by name) from pg_settings where name in ('fsync', 'synchronous_commit',"
        " 'shared_buffers', 'max_connections', 'autovacuum', 'wal_level')\").fetchone()[0])\n"
    )
    if pg_url:
        any_py = next(iter(py.values()))
        pg = subprocess.run([any_py, "-c", snippet, pg_url], capture_output=True, text=True)
        found = " | ".join(pg.stdout.strip().splitlines()) or pg.stderr.strip()
        lines.append(f"postgres: {found}")
    if redis_url:
        v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        lines.append(f"redis: {v.split()[2] if v else '?'} ({redis_url}, save '' appendonly no)")
    for venv, exe in py.items() if freeze else ():
        ver = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
        pkgs = subprocess.run([exe, "-c", LIST_PACKAGES], capture_output=True, text=True)
        pkgs = sorted(pkgs.stdout.split(), key=str.lower)
        lines.append(f"venv {venv}: {ver}; {' '.join(pkgs)}")
    (args.out / "env.txt").write_text("\n".join(lines) + "\n")


def peer_env(args: argparse.Namespace, job: str, peer: str, urls: tuple[str, str]) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DJAP_", "BENCH_", "PYTHON"))
    }
    n = args.jobs if job == "noop" else args.orm_jobs
    if peer == "raw-psycopg3":
        n *= RAW_SCALE
    env.update(
        N=str(n),
        RUNS=str(args.runs),
        BENCH_JOB=job,
        BENCH_QUERY_S=str(args.query_ms / 1000),
        BENCH_PG_URL=urls[0],
        BENCH_REDIS_URL=urls[1],
        BENCH_DB_PREFIX=args.db_prefix,
        BENCH_WORK=str(args.out / "work"),
        BENCH_RESULTS=str(args.out / "results.jsonl"),
        PYTHONUNBUFFERED="1",
    )
    if args.smoke:
        env.update(LAT_JOBS="5", BENCH_SETTLE_S="0.1", DRAIN_TIMEOUT_S="60")
    if args.phases:
        env["PHASES"] = args.phases
    env.update(PEERS[peer].env)
    if PEERS[peer].venv in args.commits:
        env["DJAP_COMMIT"] = args.commits[PEERS[peer].venv]
    return env


def run_peers(args: argparse.Namespace, pairs, py: dict[str, str], urls: tuple[str, str]) -> int:
    failed = 0
    for job, peer in pairs:
        spec = PEERS[peer]
        say(f"=== {time.strftime('%H:%M:%S')} {peer} ({job})")
        t0 = time.monotonic()
        with open(args.out / "logs" / f"{peer}.{job}.out", "ab") as log:
            proc = subprocess.Popen(
                [py[spec.venv], spec.script],
                cwd=HARNESS,
                env=peer_env(args, job, peer, urls),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                rc: int | str = proc.wait(timeout=PEER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                rc = "timeout"
            finally:  # on a timeout or an interrupt: the peer stops its workers first
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=PEER_STOP_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        say(f"    rc={rc}, {time.monotonic() - t0:.0f} s")
        if rc != 0:
            failed += 1
            say(f"    see {args.out / 'logs' / f'{peer}.{job}.out'}")
    return failed


def drop_databases(pg_url: str, prefix: str, py: dict[str, str]) -> None:
    """On a server given with --database-url, leave no benchmark database behind."""
    snippet = (
        "import sys, psycopg\n"
        "c = psycopg.connect(sys.argv[1] + '/postgres', autocommit=True)\n"
        "names = c.execute('select datname from pg_database where starts_with(datname, %s)',"
        " (sys.argv[2],)).fetchall()\n"
        "for (name,) in names:\n"
        "    c.execute('DROP DATABASE \"%s\" WITH (FORCE)' % name.replace('\"', ''))\n"
    )
    any_py = next(iter(py.values()))
    subprocess.run([any_py, "-c", snippet, pg_url, prefix], capture_output=True)


def plot(args: argparse.Namespace, py: str | None) -> None:
    if args.no_plot:
        return
    if py is None:
        say("==> no plot: this interpreter has no matplotlib (or drop --no-venvs)")
        return
    cmd = [py, str(ROOT / "scripts" / "bench_plot.py"), "--peers", str(args.out / "results.jsonl")]
    cmd += ["-o", str(args.out / "peers.png")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    say(f"==> {done.stdout.strip() or 'plot failed: ' + done.stderr.strip()[-300:]}")


def plot_python(args: argparse.Namespace) -> str | None:
    if args.no_plot:
        return None
    if args.no_venvs:
        return sys.executable if importlib.util.find_spec("matplotlib") else None
    return venv_python("plot", args, interpreter(args.python))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, spec in PEERS.items():
            say(f"{name:30} jobs: {', '.join(spec.jobs):10} venv: {spec.venv}")
        return 0
    jobs = [j.strip() for j in args.job.split(",") if j.strip()]
    bad = [j for j in jobs if j not in JOB_KINDS]
    if bad:
        raise UsageError(f"unknown --job {bad[0]!r}: choose from {', '.join(JOB_KINDS)}")
    small = args.smoke
    args.jobs = args.jobs or (200 if small else NOOP_JOBS)
    args.orm_jobs = args.orm_jobs or (100 if small else ORM_JOBS)
    args.runs = args.runs or (1 if small else 3)
    pairs = select_peers(args.peers, jobs, bool(args.baseline))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    args.out = (args.out or HERE / "out" / stamp).resolve()
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    (args.out / "work").mkdir(exist_ok=True)
    args.sources, args.commits = {}, {}
    for venv, rev in (("djap", args.djap), ("djap-base", args.baseline)):
        if venv == "djap" or rev:
            folder, commit = checkout(rev, args) if not args.no_venvs else (ROOT, "this venv")
            args.sources[venv], args.commits[venv] = folder, commit
    say(f"==> {len(pairs)} peer runs: {', '.join(f'{p} ({j})' for j, p in pairs)}")
    py = pythons(pairs, args)
    plot_py = plot_python(args)
    needs_pg = any(PEERS[p].postgres for _, p in pairs)
    needs_redis = any(PEERS[p].redis for _, p in pairs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with (
        postgres(needs_pg, args.database_url) as pg_url,
        redis(needs_redis, args.out / "work") as r_url,
    ):
        describe(args, pg_url, r_url, py, freeze=not args.smoke)
        try:
            failed = run_peers(args, pairs, py, (pg_url, r_url))
        finally:
            if args.database_url:
                drop_databases(pg_url, args.db_prefix, py)
    shutil.rmtree(args.out / "work", ignore_errors=True)
    if not (args.out / "results.jsonl").exists():
        say("no results: every peer failed")
        return 1
    sys.path.insert(0, str(HARNESS))
    import report

    say(f"==> wrote {report.write_report(args.out)}")
    plot(args, plot_py)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as exc:
        print(f"benchmarks/peers/run.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
