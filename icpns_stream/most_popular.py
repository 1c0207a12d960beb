"""A reference ranker: items by their time-decayed global click count."""

from __future__ import annotations

import math
import operator
from typing import SupportsIndex

import numpy as np

__all__ = ["MostPopularRanker"]

# Counts are stored scaled by 2**((t - origin) / half_life); once a new click's
# factor would pass 2**256 the origin moves up, far before floats overflow
# (2**1024) even with billions of clicks on one item.
_RESCALE_EXPONENT = 256.0

# Arrays start this large and double when an index outgrows them.
_INITIAL_CAPACITY = 64


class MostPopularRanker:
    """Ranks items by exponentially decayed click counts over all users.

    A click at time ``t`` weighs ``2 ** (-(now - t) / half_life)`` at time
    ``now``. The ranker serves as the no-model baseline the online model must
    beat under the same prequential protocol.

    Parameters
    ----------
    half_life
        Half-life of a click's weight, in seconds of event time; ``math.inf``
        keeps plain counts.

    Attributes
    ----------
    half_life
        The parameter above.

    Notes
    -----
    Decay is lazy: instead of shrinking every count at each click, a click adds
    ``2 ** ((t - origin) / half_life)`` to its item's stored count, which is the
    true decayed count scaled by one factor common to all items (so ranks and
    ties are exact). When that factor nears overflow, every count is rescaled
    once and the origin moves to the current time.

    ``update`` costs O(1) (amortised: the count array doubles when an index
    outgrows it, and a rescale, O(n_items), happens at most once per 256
    half-lives of event time). ``scores`` costs O(n_items). Timestamps may come
    slightly out of order: an older click simply weighs less.

    References
    ----------
    Cormode, Shkapenyuk, Srivastava and Xu (2009), "Forward decay: a practical
    time decay model for streaming systems", ICDE.

    Examples
    --------
    >>> ranker = MostPopularRanker(half_life=10.0)
    >>> ranker.update(0, 0.0)
    >>> ranker.update(1, 10.0)
    >>> ranker.update(1, 20.0)
    >>> ranker.scores(3)
    array([0.25, 1.5 , 0.  ])
    """

    def __init__(self, half_life: float) -> None:
        # NaN fails the comparison too.
        if not half_life > 0.0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.half_life = float(half_life)
        self._counts = np.zeros(_INITIAL_CAPACITY)
        self._size = 0
        self._origin = 0.0
        self._latest = -math.inf

    def update(self, index: SupportsIndex, timestamp: float) -> None:
        """Count a click on the item at catalog ``index`` at ``timestamp``."""
        # Reject what would corrupt every count at once.
        position = operator.index(index)
        if position < 0:
            raise ValueError(f"index must be non-negative, got {position}")
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite, got {timestamp}")

        # The first click sets the origin, so its weight is exactly 1.
        if self._latest == -math.inf:
            self._origin = timestamp
        self._latest = max(self._latest, timestamp)

        # Move the origin forward before the scale factor can overflow.
        exponent = (timestamp - self._origin) / self.half_life
        if exponent > _RESCALE_EXPONENT:
            self._counts[: self._size] *= 2.0**-exponent
            self._origin = timestamp
            exponent = 0.0

        # Grow by doubling so indices stay aligned with the catalog.
        if position >= len(self._counts):
            counts = np.zeros(max(2 * len(self._counts), position + 1))
            counts[: self._size] = self._counts[: self._size]
            self._counts = counts
        self._counts[position] += 2.0**exponent
        self._size = max(self._size, position + 1)

    def scores(self, n_items: int) -> np.ndarray:
        """Return the decayed counts of items ``0 .. n_items - 1`` at the latest click.

        Items never clicked score 0. The result is a new float64 array.
        """
        if n_items < 0:
            raise ValueError(f"n_items must be non-negative, got {n_items}")
        scores = np.zeros(n_items)
        known = min(n_items, self._size)
        if known:
            # Undo the common scale, so the figures are real decayed counts.
            scale = 2.0 ** (-(self._latest - self._origin) / self.half_life)
            np.multiply(self._counts[:known], scale, out=scores[:known])
        return scores

    def _check(self) -> None:
        counts = self._counts
        assert 0 <= self._size <= len(counts)
        assert np.all(np.isfinite(counts)) and np.all(counts >= 0.0)
        assert not counts[self._size :].any()
        if self._size:
            assert self._origin <= self._latest
            span = (self._latest - self._origin) / self.half_life
            assert span <= _RESCALE_EXPONENT
