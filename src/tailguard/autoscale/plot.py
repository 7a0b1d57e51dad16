"""PNG of a simulation run: arrival rate, replicas (target and ready) and P99 over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import numpy as np

from tailguard.autoscale.sim import SimResult

__all__ = ["plot_results"]


def plot_results(results: list[SimResult], path: str | Path, title: str = "") -> Path:
    """Plot one or more runs on the same trace, one colour per policy; returns the path."""
    if not results:
        raise ValueError("nothing to plot")
    fig, (ax_rate, ax_rep, ax_lat) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    first = results[0].timeline
    ax_rate.plot(first.t_s, first.arrival_rps, color="black", linewidth=0.8)
    ax_rate.set_ylabel("arrivals (req/s)")
    for res in results:
        tl = res.timeline
        label = f"{res.policy}: {res.slo_attainment:.3%} in SLO, {res.replica_seconds:,.0f} rep-s"
        (line,) = ax_rep.step(tl.t_s, tl.target, where="post", linewidth=1.0, label=label)
        ax_rep.plot(tl.t_s, tl.ready, color=line.get_color(), linewidth=0.6, linestyle=":")
        ax_lat.plot(tl.t_s, np.asarray(tl.p99_s) * 1e3, color=line.get_color(), linewidth=0.8)
    ax_rep.set_ylabel("replicas (target, ready dotted)")
    ax_rep.legend(loc="upper left", fontsize="small")
    slo_ms = results[0].slo_s * 1e3
    ax_lat.axhline(slo_ms, color="red", linestyle="--", linewidth=0.8, label=f"SLO {slo_ms:g} ms")
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("window P99 (ms)")
    ax_lat.set_xlabel("time (s)")
    ax_lat.legend(loc="upper left", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
