"""ICPNS negatives: items popular in the user's community that the user skipped."""

from __future__ import annotations

import math
from collections.abc import Collection

from icpns_stream.samplers._draws import NegativeDraws, SeededSampler
from icpns_stream.samplers.base import Negative, SamplingContext
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["IcpnsSampler"]


class IcpnsSampler(SeededSampler):
    """In-community popularity negative sampling on decayed counters.

    A negative is drawn with probability ~ decayed count ** alpha in the user's
    community, among the items outside the user's history and outside the
    negatives already picked for the click (without replacement); its
    ``probability`` is the item's weight over theirs, and ``popularity`` its
    decayed count in the community at the stream clock. When the community has
    no such item left, or the user is in no community, the rest come from the
    global counters (``fallback="global"``, global count and probability), and
    after them uniformly from the catalog (``fallback="uniform"``). So a user
    always gets ``k`` negatives while the catalog has ``k`` unclicked items,
    and an empty list once every item is clicked.

    Parameters
    ----------
    seed
        Seed of the sampler's own numpy generator.
    mix
        Expected share in ``[0, 1]`` of the negatives drawn uniformly instead
        (``fallback="mix"``): each of the ``k`` negatives is uniform with
        probability ``mix``; the uniform ones are drawn after the others.

    Notes
    -----
    A call costs O(min(|history|, n)) to weigh the excluded items among the
    ``n`` items counted in the community, then O(log n) per negative while the
    eligible items hold at least a quarter of the weight; otherwise O(n) once.
    Each fallback adds the cost of its own draw.

    References
    ----------
    Chen, Lin and Xu (2026), In-Community Popularity Negative Sampling (ICPNS),
    in batch form: communities by k-means, in-community counts ** alpha.

    Examples
    --------
    >>> from icpns_stream.community_popularity import CommunityPopularity
    >>> from icpns_stream.item_catalog import ItemCatalog
    >>> catalog, popularity = ItemCatalog(), CommunityPopularity(half_life=3600.0)
    >>> for community, item in [(0, "a"), (0, "a"), (0, "b"), (1, "c"), (1, "d")]:
    ...     _ = catalog.add(item)
    ...     popularity.update(community, item, 0.0)
    >>> context = SamplingContext(catalog, popularity)
    >>> sampler = IcpnsSampler(seed=0)
    >>> negatives = sampler.sample(context, "u1", "b", 0.0, 0, {"b"}, 3)
    >>> [(n.item_id, n.popularity, round(n.probability, 3), n.fallback)
    ...  for n in negatives]
    [('a', 2.0, 1.0, None), ('c', 1.0, 0.5, 'global'), ('d', 1.0, 1.0, 'global')]
    """

    name = "icpns"

    def __init__(self, seed: int = 0, mix: float = 0.0) -> None:
        super().__init__(seed)
        if not (math.isfinite(mix) and 0.0 <= mix <= 1.0):
            raise ValueError(f"mix must be in [0, 1], got {mix}")
        self.mix = mix

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
        """Return up to ``k`` distinct in-community negatives outside ``history``."""
        draws = NegativeDraws(
            context, user_id, positive_item_id, timestamp, community, history, k, clock
        )
        rng = self._rng

        # The uniform share is drawn per click, so its mean is ``mix`` of k.
        uniform = k if self.mix == 1.0 else 0
        if 0.0 < self.mix < 1.0 and k > 0:
            uniform = int(rng.binomial(k, self.mix))
        popular = k - uniform

        # Community first, then each fallback fills what the one before left.
        if community is not None:
            counters = context.popularity.community(community)
            if counters is not None:
                draws.add_popular(rng, counters, popular, fallback=None)
        global_popularity = context.popularity.global_popularity
        draws.add_popular(
            rng, global_popularity, popular - len(draws.negatives), fallback="global"
        )
        draws.add_uniform(rng, popular - len(draws.negatives), fallback="uniform")
        draws.add_uniform(rng, draws.missing, fallback="mix")
        return draws.negatives
