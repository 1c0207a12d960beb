"""The windowed NDCG@10 plot of a sampler comparison."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
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
        axes.plot(*_series(run.curve), label=run.sampler, linewidth=1.4)
    if runs and runs[0].reference_curve:
        axes.plot(
            *_series(runs[0].reference_curve),
            label="most popular (no model)",
            linestyle="--",
            color="grey",
            linewidth=1.2,
        )
    axes.set_xlabel("event time (UTC)")
    axes.set_ylabel(f"NDCG@10 over the last {window:,} events")
    axes.set_title(title)
    # Concise dates read well whether the stream spans hours or years.
    locator = mdates.AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)


def _series(curve: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    # Unix seconds as datetime64 give the time axis real dates, in UTC.
    times = np.array([round(t) for t, _ in curve], dtype="datetime64[s]")
    return times, np.array([value for _, value in curve])
