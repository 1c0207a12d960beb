"""Replaying a logged click stream through the engine, with progress and a report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from icpns_stream.engine import Engine
from icpns_stream.events import ClickEvent
from icpns_stream.readers import ReplayLog
from icpns_stream.samplers.base import Negative

__all__ = ["ProgressCallback", "replay_events", "replay_log"]

logger = logging.getLogger(__name__)

#: Called now and then with (events done, events in all, the engine).
ProgressCallback = Callable[[int, int, Engine], None]


def replay_events(
    engine: Engine,
    events: Sequence[ClickEvent],
    *,
    on_negatives: Callable[[list[Negative]], None] | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every: int = 500,
) -> dict[str, Any]:
    """Run ``events`` in order through ``engine`` and return its report.

    The report adds ``seconds`` (wall time of the loop) and
    ``events_per_second`` to the engine's own figures.
    """
    total = len(events)
    logger.info("replaying %d events with sampler %s", total, engine.config.sampler)
    start = time.perf_counter()
    for done, event in enumerate(events, start=1):
        outcome = engine.process(event)
        if on_negatives is not None and outcome.negatives:
            on_negatives(outcome.negatives)
        if on_progress is not None and (done % progress_every == 0 or done == total):
            on_progress(done, total, engine)
    seconds = time.perf_counter() - start
    report = engine.report()
    report["seconds"] = seconds
    report["events_per_second"] = total / seconds if seconds > 0 else 0.0
    logger.info("replayed %d events in %.1f s", total, seconds)
    return report


def replay_log(
    engine: Engine,
    log: ReplayLog,
    *,
    limit: int | None = None,
    on_negatives: Callable[[list[Negative]], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Replay a loaded log (its first ``limit`` events when given) and report.

    Besides the engine's figures, the report counts what the log set aside:
    ``skipped`` (malformed rows), ``filtered`` (rows under the minimum rating)
    and ``rows`` (data rows read).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    events = log.events if limit is None else log.events[:limit]
    report = replay_events(
        engine, events, on_negatives=on_negatives, on_progress=on_progress
    )
    report["skipped"] = len(log.dead_letters)
    report["filtered"] = log.filtered
    report["rows"] = log.rows
    report["format"] = log.format
    return report
