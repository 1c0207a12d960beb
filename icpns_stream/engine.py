"""The streaming engine: a click in; ranked, learned, explained negatives out."""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from icpns_stream.communities import Communities
from icpns_stream.community_popularity import CommunityPopularity
from icpns_stream.events import ClickEvent
from icpns_stream.item_catalog import ItemCatalog
from icpns_stream.model import OnlineModel
from icpns_stream.most_popular import MostPopularRanker
from icpns_stream.prequential import PrequentialEvaluator
from icpns_stream.samplers import SAMPLERS, make_sampler
from icpns_stream.samplers.base import Negative, SamplingContext
from icpns_stream.types import ItemId, UserId

__all__ = ["Engine", "EngineConfig", "EventOutcome"]

_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Every knob of the engine, with defaults chosen by measurement.

    Parameters
    ----------
    sampler
        Negative sampler: ``"icpns"``, ``"uniform"``, ``"popularity"`` or ``"hard"``.
    negatives
        Negatives drawn per click (K).
    alpha
        Exponent applied to decayed popularity before sampling. Low values flatten
        the distribution; online, 0.1 beat the batch method's 0.8 on ml-100k.
    half_life
        Half-life of popularity counters, in seconds of event time.
    learning_rate
        SGD learning rate of the online model.
    n_factors
        Latent factors of the online model.
    seed
        Seed of every random choice; same seed and input, same output.
    mix
        Share of ICPNS negatives drawn uniformly instead (0 to 1).
    hard_candidates
        Uniform candidates the hard sampler scores to keep the best one.
    refresh_every
        Clicks between two community refreshes.
    window
        Events in the sliding window of the windowed metrics.
    dedupe_window
        Recent event ids remembered to learn a redelivered event once. It must
        cover what a restart can redeliver: the events since the last
        checkpoint, and the batch in flight.
    """

    sampler: str = "icpns"
    negatives: int = 4
    alpha: float = 0.1
    half_life: float = 30 * _DAY
    learning_rate: float = 0.2
    n_factors: int = 32
    seed: int = 0
    mix: float = 0.5
    hard_candidates: int = 10
    refresh_every: int = 10_000
    window: int = 1_000
    dedupe_window: int = 100_000

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}"
            )
        for name in ("negatives", "refresh_every", "window", "dedupe_window"):
            value = getattr(self, name)
            if value < (0 if name == "negatives" else 1):
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("alpha", "half_life", "learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"mix must be between 0 and 1, got {self.mix}")

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-ready object."""
        return asdict(self)


@dataclass(slots=True)
class EventOutcome:
    """What the engine did with one click.

    ``duplicate`` is true when the event id was seen already: nothing was
    evaluated or learned and ``negatives`` is empty.
    """

    event: ClickEvent
    negatives: list[Negative] = field(default_factory=list)
    duplicate: bool = False


class Engine:
    """Evaluates, learns and samples negatives for each click of a stream.

    Per click, in this order: the clicked item is ranked by the model (and by a
    most-popular reference ranker) before anything learns from it; the user's
    community is updated; the item's decayed popularity rises in that community;
    ``negatives`` items are sampled; the model learns the click as a positive and
    each negative as a negative. The whole engine pickles, which is how
    checkpoints save it.

    A click that comes late (older than the newest one seen) counts with its
    own decay, but its negatives are drawn from the popularity as of the stream
    clock, the newest event time; they still carry the click's own timestamp.

    Parameters
    ----------
    config
        The engine's knobs; see `EngineConfig`.

    Attributes
    ----------
    events
        Clicks learned so far (redelivered duplicates excluded).
    duplicates
        Clicks skipped because their event id was seen already.

    Notes
    -----
    One click costs O(items) for ranking (vectorised), O(K log items) for
    sampling, and the community step's cost, which is bounded by the user's
    neighbourhood.

    References
    ----------
    Chen, Lin and Xu (2026), In-Community Popularity Negative Sampling.

    Examples
    --------
    >>> from icpns_stream.events import ClickEvent
    >>> engine = Engine(EngineConfig(negatives=2, seed=1))
    >>> for t, (user, item) in enumerate([("u", "a"), ("v", "b"), ("u", "c")]):
    ...     outcome = engine.process(ClickEvent(user, item, 1_000.0 + t))
    >>> [n.item_id for n in outcome.negatives]
    ['b']
    >>> engine.events
    3
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        self.catalog = ItemCatalog()
        self.communities = Communities(
            refresh_every=config.refresh_every, seed=config.seed
        )
        self.popularity = CommunityPopularity(
            half_life=config.half_life, alpha=config.alpha
        )
        self.model = OnlineModel(
            self.catalog,
            n_factors=config.n_factors,
            learning_rate=config.learning_rate,
            seed=config.seed,
        )
        self.sampler = make_sampler(
            config.sampler,
            seed=config.seed,
            mix=config.mix,
            candidates=config.hard_candidates,
        )
        self.context = SamplingContext(
            catalog=self.catalog, popularity=self.popularity, model=self.model
        )
        self.evaluator = PrequentialEvaluator(k=10, window=config.window)
        self.most_popular = MostPopularRanker(half_life=config.half_life)
        self.most_popular_evaluator = PrequentialEvaluator(k=10, window=config.window)
        self.histories: dict[UserId, set[ItemId]] = {}
        self._history_indices: dict[UserId, list[int]] = {}
        self._recent_event_ids: OrderedDict[str, None] = OrderedDict()
        self.events = 0
        self.last_timestamp = 0.0
        self.duplicates = 0
        self.repeat_clicks = 0
        self.negatives_drawn = 0
        self.starved_events = 0
        self.fallbacks: Counter[str] = Counter()

    def process(self, event: ClickEvent) -> EventOutcome:
        """Evaluate, learn from and sample negatives for one click."""
        # A redelivered event (same id) must not be learned twice.
        if event.event_id is not None and self._seen_before(event.event_id):
            self.duplicates += 1
            return EventOutcome(event, duplicate=True)

        user, item = event.user_id, event.item_id
        history = self.histories.setdefault(user, set())
        indices = self._history_indices.setdefault(user, [])

        # Test before train: rank the click with what was known just before it.
        if item in history:
            self.repeat_clicks += 1
        else:
            self._evaluate(user, item, indices)

        # Update the state the samplers read, the click joining the history first
        # so it can never come back as its own negative.
        index = self.catalog.add(item)
        # Keep the catalog's copy of the id, so histories share one string per
        # item instead of holding every event's own.
        item = self.catalog.ids[index]
        community = self.communities.update(user, item, event.timestamp)
        self.popularity.update(community, item, event.timestamp)
        self.most_popular.update(index, event.timestamp)
        if item not in history:
            history.add(item)
            indices.append(index)

        # Popularity is read at the stream clock: read at a late click's own
        # time, every newer count would be scaled up by 2**(lateness /
        # half_life), to infinity for a click over 1,024 half-lives late.
        negatives = self.sampler.sample(
            self.context,
            user,
            item,
            event.timestamp,
            community,
            history,
            self.config.negatives,
            clock=max(event.timestamp, self.last_timestamp),
        )
        self._count_negatives(negatives)

        # The model learns the click and what the user passed over.
        self.model.learn_one(user, item, 1.0)
        for negative in negatives:
            self.model.learn_one(user, negative.item_id, 0.0)
        self.events += 1
        self.last_timestamp = max(self.last_timestamp, event.timestamp)
        return EventOutcome(event, negatives)

    def report(self) -> dict[str, Any]:
        """Return quality and state figures in the report's key names."""
        quality = self.evaluator.result()
        reference = self.most_popular_evaluator.result()
        sizes = self.communities.sizes()
        users = len(self.histories)
        report: dict[str, Any] = {
            "events": self.events,
            "duplicates": self.duplicates,
            "repeat_clicks": self.repeat_clicks,
            "users": users,
            "items": len(self.catalog),
            "communities": len(sizes),
            "largest_community_share": (
                max(sizes.values()) / sum(sizes.values()) if sizes else 0.0
            ),
            **quality,
            "most_popular_hr@10": reference["hr@10"],
            "most_popular_ndcg@10": reference["ndcg@10"],
            "most_popular_mrr@10": reference["mrr@10"],
            "sampler": self.config.sampler,
            "negatives_requested": self.config.negatives,
            "negatives_per_event": (
                self.negatives_drawn / self.events if self.events else 0.0
            ),
            "starved_events": self.starved_events,
            "fallbacks": dict(sorted(self.fallbacks.items())),
            "config": self.config.to_dict(),
        }
        return report

    def state_summary(self) -> dict[str, Any]:
        """Return the figures two runs over the same events must agree on."""
        return {
            "events": self.events,
            "popularity_totals": self.popularity.totals(self.last_timestamp),
            "community_sizes": dict(sorted(self.communities.sizes().items())),
        }

    def _seen_before(self, event_id: str) -> bool:
        recent = self._recent_event_ids
        if event_id in recent:
            return True
        recent[event_id] = None
        if len(recent) > self.config.dedupe_window:
            recent.popitem(last=False)
        return False

    def _evaluate(self, user: UserId, item: ItemId, history_indices: list[int]) -> None:
        index = self.catalog.index_of(item)
        if index is None:
            # An item nobody clicked before cannot be ranked: a miss for both.
            self.evaluator.update_unseen()
            self.most_popular_evaluator.update_unseen()
            return
        exclude = np.fromiter(
            history_indices, dtype=np.intp, count=len(history_indices)
        )
        scores = self.model.score_items(user, None)
        self.evaluator.update(scores, index, exclude)
        reference = self.most_popular.scores(len(self.catalog))
        self.most_popular_evaluator.update(reference, index, exclude)

    def _count_negatives(self, negatives: list[Negative]) -> None:
        self.negatives_drawn += len(negatives)
        if len(negatives) < self.config.negatives:
            self.starved_events += 1
        for negative in negatives:
            if negative.fallback is not None:
                self.fallbacks[negative.fallback] += 1
