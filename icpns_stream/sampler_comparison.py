"""Side-by-side runs of several samplers over one stream, and what tells them apart."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent
from icpns_stream.ground_truth import GroundTruth
from icpns_stream.partition_metrics import normalized_mutual_info
from icpns_stream.samplers.base import Negative
from icpns_stream.types import ItemId, UserId

__all__ = ["FalseNegativeCounter", "SamplerRun", "compare_samplers"]

logger = logging.getLogger(__name__)

#: Called now and then with (sampler name, events done, events in all).
ComparisonProgress = Callable[[str, int, int], None]


class FalseNegativeCounter:
    """Counts sampled negatives that their user clicks later in the stream.

    A negative is never an item its user clicked before it was drawn, so any
    click of that (user, item) pair anywhere in the stream comes later: the pair
    set of the whole stream is the oracle. The share of such negatives measures
    how often a sampler hands the model a "negative" the user actually wanted.

    Parameters
    ----------
    events
        The whole stream the negatives are drawn from.

    Examples
    --------
    >>> from icpns_stream.events import ClickEvent
    >>> counter = FalseNegativeCounter([ClickEvent("u", "a", 1.0)])
    >>> counter.update([_negative("u", "a"), _negative("u", "b")])
    >>> counter.rate
    0.5
    """

    def __init__(self, events: Iterable[ClickEvent]) -> None:
        self._clicked: dict[UserId, set[ItemId]] = {}
        for event in events:
            self._clicked.setdefault(event.user_id, set()).add(event.item_id)
        self.negatives = 0
        self.false_negatives = 0

    def update(self, negatives: Sequence[Negative]) -> None:
        """Count one event's negatives."""
        self.negatives += len(negatives)
        for negative in negatives:
            if negative.item_id in self._clicked.get(negative.user_id, ()):
                self.false_negatives += 1

    @property
    def rate(self) -> float:
        """Share of negatives clicked later by their user (0 before any)."""
        return self.false_negatives / self.negatives if self.negatives else 0.0


def _negative(user_id: UserId, item_id: ItemId) -> Negative:
    return Negative(user_id, item_id, "", 0.0, None, 0.0, 0.0, None)


@dataclass
class SamplerRun:
    """One sampler's run: its report and its windowed NDCG@10 over stream time.

    Attributes
    ----------
    sampler
        The sampler's name.
    report
        The engine's report plus ``seconds``, ``events_per_second`` and
        ``false_negative_rate``.
    curve
        ``(event timestamp, windowed NDCG@10)`` points along the stream.
    reference_curve
        The same for the most-popular reference ranker.
    engine
        The engine at the end of the run.
    """

    sampler: str
    report: dict[str, Any]
    curve: list[tuple[float, float]]
    reference_curve: list[tuple[float, float]]
    engine: Engine


def compare_samplers(
    events: Sequence[ClickEvent],
    samplers: Sequence[str],
    config: EngineConfig,
    *,
    truth: GroundTruth | None = None,
    curve_every: int = 1_000,
    on_progress: ComparisonProgress | None = None,
) -> list[SamplerRun]:
    """Run the same events through one engine per sampler and report each.

    Every engine gets ``config`` with only its sampler changed, so each trains
    its own copy of the same model from the same seed on the same events.

    With the ``truth`` of a synthetic stream, each report also gives
    ``true_negative_precision`` (share of negatives the user was really shown
    and skipped) and ``community_nmi`` (final communities against the planted
    ones).
    """
    if curve_every < 1:
        raise ValueError(f"curve_every must be positive, got {curve_every}")
    runs = []
    for name in samplers:
        engine = Engine(dataclasses.replace(config, sampler=name))
        counter = FalseNegativeCounter(events)
        true_negatives = 0
        curve: list[tuple[float, float]] = []
        reference: list[tuple[float, float]] = []
        logger.info("evaluating sampler %s on %d events", name, len(events))

        start = time.perf_counter()
        for done, event in enumerate(events, start=1):
            negatives = engine.process(event).negatives
            counter.update(negatives)
            if truth is not None:
                true_negatives += sum(
                    truth.is_skipped(n.user_id, n.item_id) for n in negatives
                )
            if done % curve_every == 0 or done == len(events):
                ndcg = engine.evaluator.result()["window_ndcg@10"]
                curve.append((event.timestamp, ndcg))
                popular = engine.most_popular_evaluator.result()["window_ndcg@10"]
                reference.append((event.timestamp, popular))
                if on_progress is not None:
                    on_progress(name, done, len(events))
        seconds = time.perf_counter() - start

        report = engine.report()
        report["seconds"] = seconds
        report["events_per_second"] = len(events) / seconds if seconds > 0 else 0.0
        report["false_negative_rate"] = counter.rate
        if truth is not None:
            drawn = counter.negatives
            report["true_negative_precision"] = true_negatives / drawn if drawn else 0.0
            report["community_nmi"] = normalized_mutual_info(
                engine.communities.partition(), truth.communities
            )
        runs.append(SamplerRun(name, report, curve, reference, engine))
    return runs
