"""results.jsonl (one line per peer and run) to report.md: medians, ranges and ratios.

Stdlib only; run.py calls `write_report`, and `python report.py OUT_DIR` redoes it.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys
from collections.abc import Iterable
from typing import Any

ORDER = [
    "orm-body-20-threads",
    "raw-psycopg3",
    "raw-psycopg3-batch1",
    "djap-pg",
    "djap-pg-sync",
    "djap-sqlite",
    "djap-base-pg",
    "djap-base-pg-sync",
    "djap-base-sqlite",
    "pgqueuer",
    "procrastinate",
    "chancy",
    "celery-noresults",
    "celery-results",
    "django-tasks-pg",
    "django-tasks-sqlite",
    "django-q2",
]
#: The peer every ratio is taken against.
REFERENCE = "djap-pg"

WORKLOAD = {
    "noop": (
        "N no-op jobs: the body only appends `index start_time` to a marker file (one "
        "`os.write`), which is also how exactly-once execution is checked."
    ),
    "orm": (
        "N ORM jobs: after the marker write, one `BenchRow.objects.create(...)` and one "
        "query of that row with `pg_sleep({query_ms:g} ms)` in its SELECT (djbench/orm.py, the "
        "same statements as `djap bench --job orm`)."
    ),
}


def median(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def cell(xs: Iterable[float | None], fmt: str = "{:,.0f}") -> str:
    """median (min–max) of the runs, or the one value with n=1."""
    vals = [x for x in xs if x is not None]
    if not vals:
        return "—"
    med = fmt.format(statistics.median(vals))
    if len(vals) == 1:
        return f"{med} (n=1)"
    return f"{med} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def _rank(peer: str) -> int:
    return ORDER.index(peer) if peer in ORDER else len(ORDER)


def _phase(rs: list[dict[str, Any]], phase: str, key: str) -> list[float | None]:
    return [r[phase][key] for r in rs if phase in r]


def _problems(rs: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rs:
        for phase in ("drain1", "drain2", "latency"):
            if phase not in r:
                continue
            v = r[phase]["verify"]
            if not v["exactly_once"] or r[phase].get("timed_out"):
                out.append(
                    f"run {r['run']} {phase}: missing={v['missing']} duplicates={v['duplicates']}"
                    f" timed_out={r[phase].get('timed_out', False)} peer={r[phase].get('post')}"
                )
    return out


def job_section(job: str, recs: list[dict[str, Any]]) -> list[str]:
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in recs:
        by.setdefault((r["peer"], r["n"]), []).append(r)
    keys = sorted(by, key=lambda k: (_rank(k[0]), k[1]))
    query_ms = next((r.get("query_ms", 5) for r in recs), 5)
    out = [f"## Job: {job}", "", WORKLOAD[job].format(query_ms=query_ms), ""]
    out += [
        "| peer | version | enqueue jobs/s (bulk API) | enqueue jobs/s (alt API) | drain 1 proc "
        "| drain 2 procs | steady 1 proc | steady 2 procs | latency p50 ms | latency p95 ms "
        "| exactly once | runs × N |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    meds: dict[str, tuple[float | None, ...]] = {}
    for key in keys:
        rs = by[key]
        peer, n = key
        last = rs[-1]
        enq = [r.get("enqueue_rate") for r in rs] + [r.get("enqueue_rate_2") for r in rs]
        alt = [r["enqueue_alt"]["rate"] for r in rs if "enqueue_alt" in r]
        alt_label = next((r["enqueue_alt"]["api"] for r in rs if "enqueue_alt" in r), "")
        d1, d2 = _phase(rs, "drain1", "rate"), _phase(rs, "drain2", "rate")
        s1, s2 = _phase(rs, "drain1", "steady_rate"), _phase(rs, "drain2", "steady_rate")
        p50, p95 = _phase(rs, "latency", "p50_ms"), _phase(rs, "latency", "p95_ms")
        bad = _problems(rs)
        ok = "yes" if not bad else f"**NO** ({len(bad)} phases)"
        label = peer if sum(1 for k in keys if k[0] == peer) == 1 else f"{peer} (N={n})"
        size = f"{len(rs)} × {n:,}" if d1 else f"{len(rs)} × latency only"
        out.append(
            f"| {label} | {last['version']} | {cell(enq)} | {cell(alt)} | {cell(d1)} | "
            f"{cell(d2)} | {cell(s1)} | {cell(s2)} | {cell(p50, '{:.1f}')} | "
            f"{cell(p95, '{:.1f}')} | {ok} | {size} |"
        )
        meds.setdefault(peer, (median(d1), median(d2), median(s1), median(s2), median(p50)))
        loads = [r["loadavg"] for r in rs if "loadavg" in r]
        busy = f" Load average at the runs' start: {cell(loads, '{:.1f}')}." if loads else ""
        note = f"- **{label}**: {last['settings']}. Bulk enqueue: {last['bulk_api']}.{busy}"
        notes.append(note + (f" Alt enqueue: {alt_label}." if alt_label else ""))
        notes += [f"  - verification problem: {b}" for b in bad]
    out += ["", *ratio_lines(meds), "", "Settings per peer:", "", *notes, ""]
    return out


def ratio_lines(meds: dict[str, tuple[float | None, ...]]) -> list[str]:
    """djap-pg's medians divided by each peer's, from the same run."""
    ref = meds.get(REFERENCE)
    if not ref:
        return []

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a and b else "—"

    out = [
        f"Ratios, {REFERENCE} ÷ peer (medians of this run; above 1 means {REFERENCE} is faster; "
        "for latency, peer ÷ djap-pg):",
        "",
        "| peer | drain 1 proc | drain 2 procs | steady 1 proc | steady 2 procs | latency p50 |",
        "|---|---|---|---|---|---|",
    ]
    for peer, m in meds.items():
        if peer == REFERENCE:
            continue
        out.append(
            f"| {peer} | {ratio(ref[0], m[0])} | {ratio(ref[1], m[1])} | {ratio(ref[2], m[2])} "
            f"| {ratio(ref[3], m[3])} | {ratio(m[4], ref[4])} |"
        )
    return out


def write_report(out_dir: pathlib.Path) -> pathlib.Path:
    recs = [
        json.loads(line)
        for line in (out_dir / "results.jsonl").read_text().splitlines()
        if line.strip()
    ]
    lines = ["# Peer job-queue benchmark (side by side, one run)", ""]
    env = out_dir / "env.txt"
    if env.exists():
        lines += ["## Environment", "", "```", env.read_text().strip(), "```", ""]
    lines += [
        "Rates are jobs/s, each cell the **median (min–max)** over the runs. *drain*: N jobs "
        "already queued, from spawning the worker process(es) until the peer reports all N "
        "completed (start-up included); *steady*: from the first job's start to the last "
        "completion. *1 proc / 2 procs*: one or two instances of the peer's worker command "
        "(for Celery and django-q2 each instance is itself a pool of processes). *latency*: "
        "enqueue call start to job start, single enqueues 20 ms apart into one idle worker.",
        "",
    ]
    for job in ("noop", "orm"):
        sel = [r for r in recs if r.get("job", "noop") == job]
        if sel:
            lines += job_section(job, sel)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    print(write_report(pathlib.Path(sys.argv[1])).read_text())
