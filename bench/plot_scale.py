#!/usr/bin/env python3
"""Draws bench/scale.csv (written by `cargo bench --bench scale`) as bench/scale.png: time and
memory against the number of nodes, so the growth is seen at a glance.

Usage: python3 bench/plot_scale.py   (needs matplotlib: pip install matplotlib)
"""
import csv
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def main():
    with open(HERE / "scale.csv", newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    if not rows:
        raise SystemExit("bench/scale.csv holds no rows: run cargo bench --bench scale first")
    nodes = [r["nodes"] for r in rows]
    fig, (times, memory, cpu) = plt.subplots(1, 3, figsize=(15, 4.5))

    for key, label in [
        ("register_s", "every node READY"),
        ("placed_s", "every task placed"),
        ("running_s", "every task running"),
        ("detect_s", "10 % lost: DOWN"),
        ("replace_s", "10 % lost: replaced"),
    ]:
        times.plot(nodes, [r[key] for r in rows], marker="o", label=label)
    times.set_title("time (s)")

    for key, label in [("idle_rss_mb", "idle"), ("loaded_rss_mb", "with the tasks")]:
        memory.plot(nodes, [r[key] for r in rows], marker="o", label=label)
    memory.set_title("manager RSS (MB)")

    cpu.plot(nodes, [100 * r["idle_core_share"] for r in rows], marker="o",
             label="idle, % of one core")
    cpu.plot(nodes, [r["cpu_us_per_task"] for r in rows], marker="o",
             label="per task placed, µs")
    cpu.set_title("manager CPU")

    for ax in (times, memory, cpu):
        ax.set_xscale("log")
        ax.set_xlabel("nodes")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    out = HERE / "scale.png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
