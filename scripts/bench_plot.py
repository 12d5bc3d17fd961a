"""Draw docs/benchmarks.png from scripts/bench and peer-harness results (needs matplotlib).

matplotlib is not a djap dependency: run this with any Python that has it, e.g.

    python3 -m venv /tmp/plotvenv && /tmp/plotvenv/bin/pip install matplotlib
    /tmp/plotvenv/bin/python scripts/bench_plot.py --djap /tmp/djap-bench.jsonl \\
        --peers /tmp/djap-bench-after/logs/results.jsonl \\
        --before /tmp/djap-bench-before/logs/results.jsonl -o docs/benchmarks.png

--djap: JSON lines from scripts/bench (djap bench --json). --peers: the results.jsonl of one
run of ../shared/bench/run_all.sh (djap and the peers side by side); --before: the same
harness run against djap before the performance work (optional).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def peer_medians(records: list[dict], suffix: str = "") -> dict[str, tuple[float, float]]:
    """peer -> (median steady jobs/s with 1 process, with 2 processes)."""
    runs: dict[str, list[list[float]]] = defaultdict(lambda: [[], []])
    for r in records:
        for k, key in enumerate(("drain1", "drain2")):
            rate = (r.get(key) or {}).get("steady_rate")
            if rate:
                runs[r["peer"] + suffix][k].append(rate)
    return {p: tuple(statistics.median(v) if v else 0.0 for v in pair) for p, pair in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--djap", required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--before")
    ap.add_argument("-o", "--out", default="docs/benchmarks.png")
    args = ap.parse_args()

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))

    lines: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    for r in load(args.djap):
        if r["job"] == "noop":
            lines[(r["database"], r["procs"])].append(
                (r["concurrency"], r["drain_steady_jobs_per_s"])
            )
    for (db, procs), points in sorted(lines.items()):
        points.sort()
        left.plot(
            [c for c, _ in points],
            [v for _, v in points],
            marker="o",
            linestyle="-" if db == "postgresql" else "--",
            label=f"djap {db}, {procs} process{'es' if procs > 1 else ''}",
        )
    left.set_xscale("log")
    left.set_xlabel("--concurrency (asyncio tasks per process)")
    left.set_ylabel("steady drain, no-op jobs/s")
    left.set_title("djap bench: throughput against concurrency and processes")
    left.grid(True, alpha=0.3)
    left.legend()

    medians = peer_medians(load(args.peers))
    if args.before:
        before = peer_medians(load(args.before), " (before)")
        medians.update({p: v for p, v in before.items() if p.startswith("djap")})
    order = sorted(medians, key=lambda p: -medians[p][0])
    x = range(len(order))
    width = 0.38
    right.bar([i - width / 2 for i in x], [medians[p][0] for p in order], width, label="1 process")
    right.bar(
        [i + width / 2 for i in x], [medians[p][1] for p in order], width, label="2 processes"
    )
    right.set_xticks(list(x))
    right.set_xticklabels(order, rotation=35, ha="right")
    right.set_yscale("log")  # the peers span two orders of magnitude
    right.set_ylabel("steady drain, no-op jobs/s (median of runs, log scale)")
    right.set_title("Side by side in one run (../shared/bench; PostgreSQL 15)")
    right.grid(True, axis="y", alpha=0.3)
    right.legend()

    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
