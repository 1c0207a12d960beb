"""Worlds of clicks for the sampler tests, with counts recomputed from scratch."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy.stats import chisquare

from icpns_stream.community_popularity import CommunityPopularity
from icpns_stream.item_catalog import ItemCatalog
from icpns_stream.samplers.base import Sampler, SamplingContext
from icpns_stream.types import CommunityId, ItemId

if TYPE_CHECKING:
    from icpns_stream.model import OnlineModel

__all__ = ["FakeScorer", "World", "chi_square_pvalue", "first_picks", "make_world"]

#: Half-life of every world, in seconds.
HALF_LIFE = 300.0


class FakeScorer:
    """A model stand-in: item ``index`` scores ``scores[index]`` for every user."""

    def __init__(self, scores: Sequence[float]) -> None:
        self.scores = np.asarray(scores, dtype=float)
        self.calls = 0

    def score_items(self, user_id: str, indices: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.scores[np.asarray(indices, dtype=np.intp)]


@dataclass
class World:
    """A context built from known clicks, and those clicks."""

    context: SamplingContext
    clicks: list[tuple[CommunityId | None, ItemId, float]]
    now: float
    alpha: float
    floor: float = 1e-3
    extra: list[ItemId] = field(default_factory=list)

    def count(self, item: ItemId, community: CommunityId | None = None) -> float:
        """Decayed clicks on ``item`` at ``now`` (in ``community`` if given).

        The worlds are short and dense enough that no counter reaches the floor,
        so the plain sum is the held value.
        """
        return sum(
            2.0 ** ((at - self.now) / HALF_LIFE)
            for where, clicked, at in self.clicks
            if clicked == item and (community is None or where == community)
        )

    def distribution(
        self, exclude: Collection[ItemId], community: CommunityId | None = None
    ) -> dict[ItemId, float]:
        """Counts ** alpha over clicked items outside ``exclude``, normalised."""
        items = sorted(
            {
                item
                for where, item, _ in self.clicks
                if community is None or where == community
            }
            - set(exclude)
        )
        weights = {item: self.count(item, community) ** self.alpha for item in items}
        mass = sum(weights.values())
        return {item: weight / mass for item, weight in weights.items()}


def make_world(
    seed: int = 0,
    alpha: float = 0.8,
    n_items: int = 40,
    communities: int = 3,
    clicks: int = 1_500,
    unclicked: int = 5,
    scorer: FakeScorer | None = None,
) -> World:
    """Clicks whose popularity differs by community, some by unplaced users.

    ``unclicked`` more items join the catalog without any click, so only a
    uniform draw can return them.
    """
    rng = random.Random(seed)
    popularity = CommunityPopularity(half_life=HALF_LIFE, alpha=alpha)
    catalog = ItemCatalog()
    log: list[tuple[CommunityId | None, ItemId, float]] = []
    now = 0.0
    for _ in range(clicks):
        now += rng.expovariate(5.0)
        community: CommunityId | None = rng.choice([*range(communities), None])

        # Each community favours its own slice of the items (Zipf-like).
        offset = 0 if community is None else community * n_items // communities
        rank = min(int(rng.paretovariate(1.0)) - 1, n_items - 1)
        item = f"i{(offset + rank) % n_items}"
        catalog.add(item)
        popularity.update(community, item, now)
        log.append((community, item, now))
    extra = [f"x{index}" for index in range(unclicked)]
    for item in extra:
        catalog.add(item)
    # The samplers only call ``score_items``, which the stand-in provides.
    model = cast("OnlineModel | None", scorer)
    context = SamplingContext(catalog, popularity, model=model)
    return World(context, log, now, alpha, extra=extra)


def first_picks(
    sampler: Sampler,
    world: World,
    history: set[ItemId],
    community: CommunityId | None,
    draws: int,
    k: int = 1,
) -> tuple[Counter[ItemId], dict[ItemId, float], Counter[str | None]]:
    """Items of many calls' first negatives, their probabilities, and fallbacks."""
    seen: Counter[ItemId] = Counter()
    reported: dict[ItemId, float] = {}
    fallbacks: Counter[str | None] = Counter()
    positive = next(iter(sorted(history)), "none")
    for _ in range(draws):
        negatives = sampler.sample(
            world.context, "u", positive, world.now, community, history, k
        )
        first = negatives[0]
        seen[first.item_id] += 1
        reported[first.item_id] = first.probability
        fallbacks.update(negative.fallback for negative in negatives)
    return seen, reported, fallbacks


def chi_square_pvalue(
    seen: Counter[ItemId], expected: dict[ItemId, float], draws: int
) -> float:
    """p-value of the observed counts against ``expected`` probabilities."""
    assert set(seen) <= set(expected)
    observed = [seen[item] for item in expected]
    return float(chisquare(observed, [draws * p for p in expected.values()]).pvalue)
