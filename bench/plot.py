"""Latency distribution plot for `cargo xtask bench` (matplotlib).

Reads the JSON the driver writes (per configuration and route: the median round's latency
percentiles) and draws one panel per route, one line per configuration.
Usage: plot.py INPUT.json OUTPUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    with open(src) as f:
        data = json.load(f)
    routes = data["routes"]
    fig, axes = plt.subplots(1, len(routes), figsize=(5 * len(routes), 4.2), squeeze=False)
    for ax, route in zip(axes[0], routes):
        for config in data["configs"]:
            pct = data["latency"].get(config, {}).get(route)
            if not pct:
                continue
            ps = sorted(pct, key=float)
            xs = [float(p) for p in ps]
            ys = [pct[p] / 1000.0 for p in ps]
            ax.plot(xs, ys, marker="o", markersize=3, label=data["labels"][config])
        ax.set_title(f"GET {route}")
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Latency distribution at fixed concurrency (median round)")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
