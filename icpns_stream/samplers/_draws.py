"""Steps the samplers share: a seeded base, uniform draws, one click's negatives."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Collection, Iterator

import numpy as np

# Uniform draws reject and fall back on the same terms as weighted ones.
from icpns_stream.decayed_popularity import (
    _BATCH,
    _MAX_TRIES,
    _MIN_ACCEPT_SHARE,
    DecayedPopularity,
)
from icpns_stream.item_catalog import ItemCatalog
from icpns_stream.samplers.base import Negative, Sampler, SamplingContext
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["NegativeDraws", "SeededSampler", "uniform_draws"]


class SeededSampler(Sampler):
    """A sampler that owns a numpy generator seeded from ``seed``."""

    def __init__(self, seed: int = 0) -> None:
        try:
            valid = operator.index(seed) >= 0
        except TypeError:
            valid = False
        if not valid:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self._rng = np.random.default_rng(seed)


def uniform_draws(
    rng: np.random.Generator,
    catalog: ItemCatalog,
    n: int,
    exclude: Collection[ItemId],
) -> list[tuple[ItemId, int]]:
    """Draw up to ``n`` distinct catalog items uniformly, none in ``exclude``.

    Each comes with the number of items the draw that picked it chose from
    (its probability is one over that): the catalog items outside ``exclude``
    and outside the earlier picks.
    ``exclude`` must answer ``in`` in O(1) and hold no item twice. Picks cost
    O(1) each by rejection while a quarter of the catalog is eligible (after
    one O(|exclude|) count); below that, or after 32 rejected tries, the rest
    come exactly from the eligible indices in O(catalog).
    """
    if n <= 0:
        return []
    ids = catalog.ids
    size = len(ids)
    eligible = size - sum(map(catalog.__contains__, exclude))
    draws: list[tuple[ItemId, int]] = []
    picked: set[ItemId] = set()
    uniforms: list[float] = []
    while len(draws) < n and eligible > 0:
        # Rejection is exact and O(1) per try while many items are eligible.
        item_id = None
        if eligible >= _MIN_ACCEPT_SHARE * size:
            item_id = _rejection_pick(rng, uniforms, ids, exclude, picked)

        # Otherwise the rest come at once from the eligible indices.
        if item_id is None:
            draws.extend(_exact_uniform(rng, catalog, n - len(draws), exclude, picked))
            break
        draws.append((item_id, eligible))
        picked.add(item_id)
        eligible -= 1
    return draws


def _rejection_pick(
    rng: np.random.Generator,
    uniforms: list[float],
    ids: list[ItemId],
    exclude: Collection[ItemId],
    picked: set[ItemId],
) -> ItemId | None:
    """Return a uniform catalog item outside both sets, or None if none came."""
    size = len(ids)
    for _ in range(_MAX_TRIES):
        if not uniforms:
            uniforms.extend(rng.random(_BATCH).tolist())

        # Rounding could make the product reach ``size`` itself.
        item_id = ids[min(int(uniforms.pop() * size), size - 1)]
        if item_id not in exclude and item_id not in picked:
            return item_id
    return None


def _exact_uniform(
    rng: np.random.Generator,
    catalog: ItemCatalog,
    n: int,
    exclude: Collection[ItemId],
    picked: Collection[ItemId],
) -> list[tuple[ItemId, int]]:
    """Draw up to ``n`` items without replacement from the eligible indices."""
    eligible_mask = np.ones(len(catalog), dtype=bool)
    for item_id in itertools.chain(exclude, picked):
        index = catalog.index_of(item_id)
        if index is not None:
            eligible_mask[index] = False
    eligible = np.flatnonzero(eligible_mask)

    # A random ordered sample: each position is uniform over what is left.
    chosen = rng.choice(eligible, size=min(n, len(eligible)), replace=False)
    return [
        (catalog.ids[index], len(eligible) - position)
        for position, index in enumerate(chosen.tolist())
    ]


class _Excluded(Collection[ItemId]):
    """The user's history and the negatives already picked, seen as one set."""

    def __init__(self, history: Collection[ItemId], picked: list[ItemId]) -> None:
        self._history = history
        self._picked = picked

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._history or item_id in self._picked

    def __len__(self) -> int:
        return len(self._history) + len(self._picked)

    def __iter__(self) -> Iterator[ItemId]:
        return itertools.chain(self._history, self._picked)


class NegativeDraws:
    """The negatives of one click, each new draw excluding the earlier ones.

    Negatives are drawn without replacement: a draw excludes the user's
    history and every negative already picked for this click, and its
    reported probability is taken after both exclusions. Decayed counts are
    read at ``clock`` (``timestamp`` when None), as `Sampler.sample` says.
    """

    def __init__(
        self,
        context: SamplingContext,
        user_id: UserId,
        positive_item_id: ItemId,
        timestamp: float,
        community: CommunityId | None,
        history: Collection[ItemId],
        k: int,
        clock: float | None = None,
    ) -> None:
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        self.context = context
        self.user_id = user_id
        self.positive_item_id = positive_item_id
        self.timestamp = timestamp

        # Counts are read at the stream clock; negatives carry the click's time.
        self.clock = timestamp if clock is None else clock
        self.community = community
        self.history = history
        self.k = k
        self.negatives: list[Negative] = []
        self._picked: list[ItemId] = []
        self._excluded = _Excluded(history, self._picked)

    @property
    def missing(self) -> int:
        """How many negatives are still to draw."""
        return self.k - len(self.negatives)

    @property
    def excluded(self) -> Collection[ItemId]:
        """Items no draw may return: the history and the picks so far."""
        # The bare history answers ``in`` faster while nothing is picked.
        return self._excluded if self._picked else self.history

    def add_popular(
        self,
        rng: np.random.Generator,
        counters: DecayedPopularity,
        n: int,
        fallback: str | None,
    ) -> None:
        """Draw up to ``n`` negatives by decayed popularity in ``counters``."""
        for draw in counters.sample(rng, self.clock, n, self.excluded):
            self.add(draw.item_id, draw.popularity, draw.probability, fallback)

    def add_uniform(
        self, rng: np.random.Generator, n: int, fallback: str | None
    ) -> None:
        """Draw up to ``n`` negatives uniformly from the catalog."""
        for item_id, choices in uniform_draws(
            rng, self.context.catalog, n, self.excluded
        ):
            self.add(item_id, self.global_value(item_id), 1.0 / choices, fallback)

    def global_value(self, item_id: ItemId) -> float:
        """Return the item's global decayed count at the stream clock."""
        counters = self.context.popularity.global_popularity
        return counters.value(item_id, self.clock)

    def add(
        self,
        item_id: ItemId,
        popularity: float,
        probability: float,
        fallback: str | None,
    ) -> None:
        """Record one negative with its explanation."""
        self._picked.append(item_id)
        self.negatives.append(
            Negative(
                user_id=self.user_id,
                item_id=item_id,
                positive_item_id=self.positive_item_id,
                timestamp=self.timestamp,
                community=self.community,
                popularity=popularity,
                probability=probability,
                fallback=fallback,
            )
        )
