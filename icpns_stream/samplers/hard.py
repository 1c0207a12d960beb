"""Hard negatives: the best-scored of a few uniform candidates."""

from __future__ import annotations

import operator
from collections.abc import Collection

import numpy as np

from icpns_stream.samplers._draws import NegativeDraws, SeededSampler, uniform_draws
from icpns_stream.samplers.base import Negative, SamplingContext
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["HardSampler"]


class HardSampler(SeededSampler):
    """Keeps, of ``candidates`` uniform items, the one the model scores highest.

    For a click, ``k * candidates`` distinct items outside the user's history
    are drawn uniformly and cut, in draw order, into ``k`` groups of
    ``candidates`` (fewer items in all when the catalog runs short, shared out
    evenly); one call to ``context.model.score_items`` scores them all, and
    each group gives its best-scored item (the earliest drawn on ties).

    A negative's ``probability`` is the chance its group's uniform draw had of
    including it: the group size over the number of eligible items outside the
    history and the earlier groups. Whether it then wins its group depends on
    the model, so this is not the chance of being returned. ``popularity`` is
    the item's global decayed count at the stream clock; ``fallback`` is None.

    Parameters
    ----------
    seed
        Seed of the sampler's own numpy generator.
    candidates
        Uniform candidates scored per negative (positive).

    Notes
    -----
    A call costs O(|history|) to count the excluded items, O(k * candidates)
    to draw the candidates, and one scoring of ``k * candidates`` items.

    References
    ----------
    W. Zhang, T. Chen, J. Wang and Y. Yu, "Optimizing top-n collaborative
    filtering via dynamic negative item sampling", SIGIR 2013.

    Examples
    --------
    >>> import numpy as np
    >>> from icpns_stream.community_popularity import CommunityPopularity
    >>> from icpns_stream.item_catalog import ItemCatalog
    >>> class ByIndex:  # scores later-seen items higher
    ...     def score_items(self, user_id, indices):
    ...         return np.asarray(indices, dtype=float)
    >>> catalog, popularity = ItemCatalog(), CommunityPopularity(half_life=3600.0)
    >>> for item in "abcdef":
    ...     _ = catalog.add(item)
    ...     popularity.update(None, item, 0.0)
    >>> context = SamplingContext(catalog, popularity, model=ByIndex())
    >>> sampler = HardSampler(seed=0, candidates=2)
    >>> negatives = sampler.sample(context, "u1", "a", 0.0, None, {"a"}, 2)
    >>> [(n.item_id, n.probability) for n in negatives]
    [('e', 0.4), ('f', 0.6666666666666666)]
    """

    name = "hard"

    def __init__(self, seed: int = 0, candidates: int = 10) -> None:
        super().__init__(seed)
        try:
            valid = operator.index(candidates) >= 1
        except TypeError:
            valid = False
        if not valid:
            raise ValueError(
                f"candidates must be a positive integer, got {candidates!r}"
            )
        self.candidates = candidates

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
        """Return up to ``k`` distinct hard negatives outside ``history``."""
        model = context.model
        if model is None:
            raise ValueError("context.model must be set for the hard sampler, got None")
        draws = NegativeDraws(
            context, user_id, positive_item_id, timestamp, community, history, k, clock
        )
        pool = uniform_draws(self._rng, context.catalog, k * self.candidates, history)
        if not pool:
            return draws.negatives

        # One scoring call for every group keeps the model's overhead per click.
        catalog = context.catalog
        indices = np.array([catalog.index_of(item) for item, _ in pool], dtype=np.intp)
        scores = np.asarray(model.score_items(user_id, indices), dtype=float)
        if scores.shape != indices.shape:
            raise ValueError(
                f"score_items must return {len(indices)} scores, got shape "
                f"{scores.shape}"
            )

        # Groups share the pool evenly; a group is a uniform draw from the
        # items its first member was chosen from.
        groups = min(k, len(pool))
        start = 0
        for group in range(groups):
            size = len(pool) // groups + (group < len(pool) % groups)
            best = start + int(np.argmax(scores[start : start + size]))
            item_id = pool[best][0]
            probability = size / pool[start][1]
            draws.add(item_id, draws.global_value(item_id), probability, None)
            start += size
        return draws.negatives
