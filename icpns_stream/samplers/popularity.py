"""Popularity negatives: items drawn by global decayed click count."""

from __future__ import annotations

from collections.abc import Collection

from icpns_stream.samplers._draws import NegativeDraws, SeededSampler
from icpns_stream.samplers.base import Negative, SamplingContext
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["PopularitySampler"]


class PopularitySampler(SeededSampler):
    """Draws negatives with probability ~ global decayed count ** alpha.

    ``alpha`` is the one the context's counters were built with. Items outside
    the user's history and outside the negatives already picked for the click
    share the draw (without replacement), and ``probability`` is the item's
    weight over theirs; ``popularity`` is its global decayed count at the stream
    clock. When no such counted item is left (counters decayed away, or every
    counted item clicked), the rest come uniformly from the catalog with
    ``fallback="uniform"``.

    Parameters
    ----------
    seed
        Seed of the sampler's own numpy generator.

    Notes
    -----
    A call costs O(min(|history|, n)) to weigh the excluded items among the
    ``n`` counted ones, then O(log n) per negative while the eligible items
    hold at least a quarter of the weight; otherwise O(n) once.

    References
    ----------
    T. Mikolov, I. Sutskever, K. Chen, G. Corrado and J. Dean, "Distributed
    representations of words and phrases and their compositionality", NeurIPS
    2013 (negatives drawn by frequency raised to a power).

    Examples
    --------
    >>> from icpns_stream.community_popularity import CommunityPopularity
    >>> from icpns_stream.item_catalog import ItemCatalog
    >>> catalog, popularity = ItemCatalog(), CommunityPopularity(half_life=3600.0)
    >>> for item in "aaabbc":
    ...     _ = catalog.add(item)
    ...     popularity.update(None, item, 0.0)
    >>> _ = catalog.add("d")
    >>> context = SamplingContext(catalog, popularity)
    >>> sampler = PopularitySampler(seed=0)
    >>> negatives = sampler.sample(context, "u1", "a", 0.0, None, {"a"}, 3)
    >>> [(n.item_id, n.popularity, round(n.probability, 3), n.fallback)
    ...  for n in negatives]
    [('b', 2.0, 0.667, None), ('c', 1.0, 1.0, None), ('d', 0.0, 1.0, 'uniform')]
    """

    name = "popularity"

    def sample(
        self,
        context: SamplingContext,
        user_id: UserId,
        positive_item_id: ItemId,
        timestamp: float,
        community: CommunityId | None,
        history: Collection[ItemId],
        k: int,
        *,
        clock: float | None = None,
    ) -> list[Negative]:
        """Return up to ``k`` distinct popularity negatives outside ``history``."""
        draws = NegativeDraws(
            context, user_id, positive_item_id, timestamp, community, history, k, clock
        )
        global_popularity = context.popularity.global_popularity
        draws.add_popular(self._rng, global_popularity, k, fallback=None)
        draws.add_uniform(self._rng, draws.missing, fallback="uniform")
        return draws.negatives
