"""The windowed NDCG@10 plot of a sampler comparison."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.dates as mdates
from matplotlib.figure import Figure

from icpns_stream.sampler_comparison import SamplerRun

__all__ = ["plot_ndcg_curves"]


def plot_ndcg_curves(
    runs: Sequence[SamplerRun], path: Path, *, window: int, title: str
) -> None:
    """Write a PNG of windowed NDCG@10 over stream time, one line per sampler.

    The most-popular reference ranker is drawn dashed from the first run (it does
    not depend on the sampler).
    """
    # A bare Figure renders to file without pyplot, so no display is needed.
    figure = Figure(figsize=(9, 5), dpi=120)
    axes = figure.subplots()
    for run in runs:
        times = [datetime.fromtimestamp(t, tz=UTC) for t, _ in run.curve]
        axes.plot(times, [v for _, v in run.curve], label=run.sampler, linewidth=1.4)
    if runs and runs[0].reference_curve:
        reference = runs[0].reference_curve
        axes.plot(
            [datetime.fromtimestamp(t, tz=UTC) for t, _ in reference],
            [v for _, v in reference],
            label="most popular (no model)",
            linestyle="--",
            color="grey",
            linewidth=1.2,
        )
    axes.set_xlabel("event time (UTC)")
    axes.set_ylabel(f"NDCG@10 over the last {window:,} events")
    axes.set_title(title)
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path)
