"""Uniform negatives: any catalog item the user has not clicked, equally likely."""

from __future__ import annotations

from collections.abc import Collection

from icpns_stream.samplers._draws import NegativeDraws, SeededSampler
from icpns_stream.samplers.base import Negative, SamplingContext
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["UniformSampler"]


class UniformSampler(SeededSampler):
    """Draws negatives uniformly from the catalog minus the user's history.

    The ``probability`` of a negative is one over the number of catalog items
    outside the history and outside the negatives already picked for the click
    (negatives are drawn without replacement); its ``popularity`` is the item's
    global decayed count at the stream clock, and ``fallback`` is None.

    Parameters
    ----------
    seed
        Seed of the sampler's own numpy generator.

    Notes
    -----
    A call costs O(|history|) to count the excluded items, then O(1) per
    negative by rejection while at least a quarter of the catalog is eligible;
    otherwise O(catalog) once.

    References
    ----------
    S. Rendle, C. Freudenthaler, Z. Gantner and L. Schmidt-Thieme, "BPR:
    Bayesian personalized ranking from implicit feedback", UAI 2009.

    Examples
    --------
    >>> from icpns_stream.community_popularity import CommunityPopularity
    >>> from icpns_stream.item_catalog import ItemCatalog
    >>> catalog, popularity = ItemCatalog(), CommunityPopularity(half_life=3600.0)
    >>> for item in "abcde":
    ...     _ = catalog.add(item)
    ...     popularity.update(0, item, 0.0)
    >>> context = SamplingContext(catalog, popularity)
    >>> sampler = UniformSampler(seed=0)
    >>> negatives = sampler.sample(context, "u1", "a", 0.0, 0, {"a", "b"}, 2)
    >>> [(n.item_id, round(n.probability, 3), n.fallback) for n in negatives]
    [('d', 0.333, None), ('e', 0.5, None)]
    """

    name = "uniform"

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
        """Return up to ``k`` distinct uniform negatives outside ``history``."""
        draws = NegativeDraws(
            context, user_id, positive_item_id, timestamp, community, history, k, clock
        )
        draws.add_uniform(self._rng, k, fallback=None)
        return draws.negatives
