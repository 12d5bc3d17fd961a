"""Draw the benchmark figures from scripts/bench and peer-harness results (needs matplotlib).

matplotlib is not a djap dependency. benchmarks/peers/run.py draws its own figure with the
plot venv it builds (benchmarks/peers/requirements/plot.txt); by hand, with any Python that
has matplotlib:

    python3 -m venv /tmp/plotvenv && /tmp/plotvenv/bin/pip install matplotlib
    /tmp/plotvenv/bin/python scripts/bench_plot.py --djap /tmp/djap-bench.jsonl \\
        --peers benchmarks/peers/out/<run>/results.jsonl -o docs/benchmarks.png

--djap: JSON lines from scripts/bench (djap bench --json), drawn as throughput against
concurrency and processes. --peers: the results.jsonl of one benchmarks/peers/run.py run
(djap and the peers side by side): one panel per job kind in it (no-op, ORM). --before: a
peer run against djap before some work (optional; its djap bars are added, marked).
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


def peer_panel(ax, medians: dict[str, tuple[float, float]], title: str) -> None:
    order = sorted(medians, key=lambda p: -medians[p][0])
    x = range(len(order))
    width = 0.38
    ax.bar([i - width / 2 for i in x], [medians[p][0] for p in order], width, label="1 process")
    ax.bar([i + width / 2 for i in x], [medians[p][1] for p in order], width, label="2 processes")
    ax.set_xticks(list(x))
    ax.set_xticklabels(order, rotation=35, ha="right")
    ax.set_yscale("log")  # the peers span two orders of magnitude
    ax.set_ylabel("steady drain, jobs/s (median of runs, log scale)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()


def djap_panel(ax, records: list[dict]) -> None:
    lines: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        if r["job"] == "noop":
            lines[(r["database"], r["procs"])].append(
                (r["concurrency"], r["drain_steady_jobs_per_s"])
            )
    for (db, procs), points in sorted(lines.items()):
        points.sort()
        ax.plot(
            [c for c, _ in points],
            [v for _, v in points],
            marker="o",
            linestyle="-" if db == "postgresql" else "--",
            label=f"djap {db}, {procs} process{'es' if procs > 1 else ''}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("--concurrency (asyncio tasks per process)")
    ax.set_ylabel("steady drain, no-op jobs/s")
    ax.set_title("djap bench: throughput against concurrency and processes")
    ax.grid(True, alpha=0.3)
    ax.legend()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--djap")
    ap.add_argument("--peers")
    ap.add_argument("--before")
    ap.add_argument("-o", "--out", default="docs/benchmarks.png")
    args = ap.parse_args()
    if not (args.djap or args.peers):
        ap.error("give --djap, --peers or both")

    panels: list[tuple[str, object]] = []
    if args.djap:
        panels.append(("djap", load(args.djap)))
    if args.peers:
        peers = load(args.peers)
        before = load(args.before) if args.before else []
        for job, title in (("noop", "no-op job"), ("orm", "ORM job: insert + 5 ms query")):
            medians = peer_medians([r for r in peers if r.get("job", "noop") == job])
            old = peer_medians([r for r in before if r.get("job", "noop") == job], " (before)")
            medians.update({p: v for p, v in old.items() if p.startswith("djap")})
            if medians:
                panels.append((f"Side by side, {title} (benchmarks/peers)", medians))

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels, strict=True):
        if title == "djap":
            djap_panel(ax, data)
        else:
            peer_panel(ax, data, title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
