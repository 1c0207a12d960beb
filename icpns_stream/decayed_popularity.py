"""Time-decayed click counters that sample items by popularity in O(log n)."""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Collection
from typing import NamedTuple

import numpy as np
from sortedcontainers import SortedList

from icpns_stream.types import ItemId

__all__ = ["DecayedPopularity", "PopularityDraw"]

#: Sampling weights may grow by at most this many powers of two through the
#: reference-time scaling before every counter is rescaled, which keeps them far
#: from the float range (2**1024) whatever the stream's length.
_MAX_SCALE_BITS = 128.0

#: Largest smoothing exponent: counts**alpha must stay finite for any realistic
#: count on top of the scaling above.
_MAX_ALPHA = 4.0

#: Rejection is used while at least this share of the mass is eligible, so a
#: draw expects at most 4 tries.
_MIN_ACCEPT_SHARE = 0.25

#: Rejection tries per pick before the exact draw takes over; at the worst
#: accepted share (1/4) all of them fail with probability 0.75**32 (1e-4).
_MAX_TRIES = 32

#: Uniform numbers drawn from the generator at a time (one call per batch is
#: far cheaper than one call per number).
_BATCH = 8


class PopularityDraw(NamedTuple):
    """One item drawn by :meth:`DecayedPopularity.sample`.

    Attributes
    ----------
    item_id
        The drawn item.
    popularity
        Its decayed count at the draw's timestamp.
    probability
        The chance it had in the draw that picked it: its weight over the weight
        of every item not excluded and not picked earlier in the same call (at
        most 1, whatever the rounding of the sums).
    """

    item_id: ItemId
    popularity: float
    probability: float


@functools.cache
def _descent_steps(size: int) -> tuple[int, ...]:
    """Return the strides of a Fenwick descent in a tree of ``size`` slots."""
    return tuple(size >> level for level in range(1, size.bit_length()))


def _cumulative_pick(
    rng: np.random.Generator, weights: np.ndarray
) -> tuple[int, float]:
    """Return a slot drawn by ``weights`` and their sum, or ``(-1, 0.0)`` if none."""
    cumulative = np.cumsum(weights)
    available = float(cumulative[-1])
    if available <= 0.0:
        return -1, 0.0

    # The first slot whose running sum passes the point; rounding can put the
    # point at the very end, so step back to the last slot with weight.
    point = rng.random() * available
    slot = min(int(np.searchsorted(cumulative, point, side="right")), len(weights) - 1)
    while weights[slot] == 0.0:
        slot -= 1
    return slot, available


class DecayedPopularity:
    """Click counts that halve every ``half_life`` seconds, sampled by weight.

    The decayed count of an item at time ``t`` is the sum, over the clicks on it
    at times ``t_e`` with weights ``w_e``, of ``w_e * 2 ** ((t_e - t) / half_life)``.
    Counters are stored scaled to a reference time ``t_ref`` (the forward-decay
    landmark), so a click costs one addition instead of decaying every counter;
    all counters share the factor ``2 ** ((t_ref - t) / half_life)``, so an item's
    sampling weight ``scaled ** alpha`` needs no decay at all. When the scaled
    values have grown by ``2 ** (128 / max(alpha, 1))`` the reference moves to
    the newest event and every counter is rescaled once.

    Parameters
    ----------
    half_life
        Half-life of a click, in seconds of event time (positive).
    alpha
        Smoothing exponent in ``[0, 4]`` applied to decayed counts to get the
        sampling weights: 1 samples in proportion to popularity, 0 uniformly
        over the counted items.
    floor
        Counters whose decayed value at the newest event time falls below this
        (positive) are dropped, which bounds memory on an endless stream: at most
        ``total / floor`` items are ever held.

    Attributes
    ----------
    clock
        The newest event time seen (Unix seconds), or None before the first.

    Notes
    -----
    With ``n`` items held: ``update`` costs O(log n) amortised (a sorted-list
    move, a Fenwick tree update, and the pruning of counters that decayed
    below ``floor``); ``value`` costs O(1); ``total`` O(1); ``top(m)`` O(log n
    + m); ``sample`` of ``m`` items excluding a set ``E`` costs O(min(|E|, n))
    to weigh the excluded items plus O(log n) per pick while the eligible items
    hold at least a quarter of the mass; below that, or after 32 rejected tries,
    it draws exactly from a cumulative sum over all slots, O(n).

    Events may arrive out of order: a late click counts with its own decay, so
    it adds less than a fresh one. ``value`` and ``total`` are continuous in
    time and also answer for times before some held clicks (those count with a
    factor above 1). Pruning always uses the newest event time.

    References
    ----------
    G. Cormode, V. Shkapenyuk, D. Srivastava and B. Xu, "Forward decay: a
    practical time decay model for streaming systems", ICDE 2009.
    P. M. Fenwick, "A new data structure for cumulative frequency tables",
    Software: Practice and Experience 24(3), 1994.

    Examples
    --------
    >>> import numpy as np
    >>> popularity = DecayedPopularity(half_life=10.0)
    >>> popularity.update("a", 0.0)
    >>> popularity.update("a", 10.0)
    >>> popularity.update("b", 10.0)
    >>> popularity.value("a", 10.0), popularity.value("b", 20.0)
    (1.5, 0.5)
    >>> popularity.total(10.0), popularity.top(1, 10.0)
    (2.5, [('a', 1.5)])
    >>> rng = np.random.default_rng(0)
    >>> popularity.sample(rng, 10.0, n=2, exclude={"b"})
    [PopularityDraw(item_id='a', popularity=1.5, probability=1.0)]
    """

    def __init__(
        self, half_life: float, alpha: float = 1.0, floor: float = 1e-3
    ) -> None:
        if not (math.isfinite(half_life) and half_life > 0):
            raise ValueError(f"half_life must be positive, got {half_life}")
        if not (0.0 <= alpha <= _MAX_ALPHA):
            raise ValueError(f"alpha must be in [0, {_MAX_ALPHA:g}], got {alpha}")
        if not (math.isfinite(floor) and floor > 0):
            raise ValueError(f"floor must be positive, got {floor}")
        self._half_life = float(half_life)
        self._alpha = float(alpha)
        self._floor = float(floor)

        # The reference time may trail the newest event by this many seconds.
        self._max_age = _MAX_SCALE_BITS / max(self._alpha, 1.0) * self._half_life
        self.clock: float | None = None
        self._reset(0.0)

    @property
    def half_life(self) -> float:
        """Half-life in seconds of event time."""
        return self._half_life

    @property
    def alpha(self) -> float:
        """Smoothing exponent of the sampling weights."""
        return self._alpha

    @property
    def floor(self) -> float:
        """Decayed value below which a counter is dropped."""
        return self._floor

    def update(self, item_id: ItemId, timestamp: float, weight: float = 1.0) -> None:
        """Count a click of ``weight`` on ``item_id`` at ``timestamp`` (seconds)."""
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"weight must be positive, got {weight}")

        # Move the clock first: the click may rescale or prune the others.
        self.advance(timestamp)

        # A late click is stored with its own decay relative to the reference.
        added = weight * self._factor(timestamp - self._t_ref)
        slot = self._slot.get(item_id)
        if slot is None:
            # A click already below the floor would be pruned at once.
            if added < self._threshold:
                return
            slot = self._allocate(item_id)
            old = 0.0
        else:
            old = self._scaled[slot]
            self._order.remove((old, item_id))
        self._store(slot, item_id, old + added)
        self._scaled_total += added
        self._settle()

    def advance(self, timestamp: float) -> None:
        """Move the clock to ``timestamp`` if later, dropping decayed counters.

        An earlier timestamp leaves everything as it is.
        """
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite, got {timestamp}")

        # The first event sets the reference time.
        if self.clock is None:
            self.clock = self._t_ref = float(timestamp)
            return
        if timestamp <= self.clock:
            return

        # Rescale before the scaled weights could grow past the safe range.
        self.clock = float(timestamp)
        if timestamp - self._t_ref > self._max_age:
            self._rescale(self.clock)
            return

        # Counters are pruned smallest first; each costs O(log n) once.
        self._threshold = self._floor * self._factor(self.clock - self._t_ref)
        order = self._order
        while order and order[0][0] < self._threshold:
            scaled, item_id = order.pop(0)
            self._release(item_id, scaled)
        if not order:
            self._reset(self.clock)
        self._settle()

    def value(self, item_id: ItemId, timestamp: float) -> float:
        """Return the decayed count of ``item_id`` at ``timestamp`` (0 if unheld)."""
        slot = self._slot.get(item_id)
        if slot is None:
            return 0.0
        return self._scaled[slot] * self._factor(self._t_ref - timestamp)

    def total(self, timestamp: float) -> float:
        """Return the sum of every held decayed count at ``timestamp``."""
        if not self._slot:
            return 0.0
        return self._scaled_total * self._factor(self._t_ref - timestamp)

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._slot

    def top(self, n: int, timestamp: float) -> list[tuple[ItemId, float]]:
        """Return the ``n`` largest ``(item, decayed count)`` pairs at ``timestamp``.

        Largest first; equal counts come in descending item-id order.
        """
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        if n == 0:
            return []
        decay = self._factor(self._t_ref - timestamp)
        return [(item, scaled * decay) for scaled, item in reversed(self._order[-n:])]

    def sample(
        self,
        rng: np.random.Generator,
        timestamp: float,
        n: int = 1,
        exclude: Collection[ItemId] = (),
    ) -> list[PopularityDraw]:
        """Draw up to ``n`` distinct items with probability ~ decayed count**alpha.

        Items in ``exclude`` (which should answer ``in`` in O(1), like a set) are
        never drawn: each pick follows the distribution restricted to the held
        items outside ``exclude`` and outside the earlier picks of this call,
        exactly. Fewer than ``n`` come back only when no such item is left.
        ``popularity`` is the item's decayed count at ``timestamp``.
        """
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        if n == 0 or not self._slot:
            return []

        # The excluded weight is summed exactly so the result does not depend
        # on the iteration order of the exclusion set.
        excluded_slots = self._slots_of(exclude)
        excluded = math.fsum(map(self._weights.__getitem__, excluded_slots))
        eligible = len(self._slot) - len(excluded_slots)
        decay = self._factor(self._t_ref - timestamp)

        draws: list[PopularityDraw] = []
        picked: set[ItemId] = set()
        uniforms: list[float] = []
        weights: np.ndarray | None = None
        while len(draws) < n and eligible > 0:
            # Rejection from the whole tree is exact and O(log n) per try while
            # the excluded items hold little of the mass.
            available = self._mass - excluded
            slot = -1
            if weights is None and available >= _MIN_ACCEPT_SHARE * self._mass:
                slot = self._rejection_pick(rng, uniforms, exclude, picked)

            # Otherwise draw exactly from the weights of the eligible slots only.
            if slot < 0:
                if weights is None:
                    weights = np.array(self._weights, dtype=float)
                    weights[excluded_slots] = 0.0
                    weights[[self._slot[item] for item in picked]] = 0.0
                slot, available = _cumulative_pick(rng, weights)
                if slot < 0:
                    break
                weights[slot] = 0.0

            item_id = self._items[slot]
            assert item_id is not None
            weight = self._weights[slot]

            # The mass left is a difference of rounded sums: for an item that
            # holds nearly all of it, the quotient can pass 1 by an ulp or two.
            probability = min(1.0, weight / available)
            draws.append(
                PopularityDraw(item_id, self._scaled[slot] * decay, probability)
            )
            picked.add(item_id)
            excluded += weight
            eligible -= 1
        return draws

    def _rejection_pick(
        self,
        rng: np.random.Generator,
        uniforms: list[float],
        exclude: Collection[ItemId],
        picked: set[ItemId],
    ) -> int:
        """Return a slot drawn by weight among eligible items, or -1 if none came."""
        tree, size, mass, items = self._tree, self._size, self._mass, self._items
        steps = _descent_steps(size)
        for _ in range(_MAX_TRIES):
            if not uniforms:
                uniforms.extend(rng.random(_BATCH).tolist())
            point = uniforms.pop() * mass

            # Rounding may put the point past the tree's own total.
            if point >= tree[size]:
                continue

            # Fenwick descent: the last slot whose prefix sum is <= point.
            slot = 0
            for step in steps:
                node = tree[slot + step]
                if node <= point:
                    slot += step
                    point -= node

            # A drifted sum may still land on a free slot or past the held ones.
            if slot >= len(items):
                continue
            item_id = items[slot]
            if item_id is None or item_id in exclude or item_id in picked:
                continue
            return slot
        return -1

    def _slots_of(self, exclude: Collection[ItemId]) -> list[int]:
        """Return the slots of the held items in ``exclude``."""
        slot_of = self._slot
        if len(exclude) <= len(slot_of):
            return [slot for slot in map(slot_of.get, exclude) if slot is not None]
        return [slot for item, slot in slot_of.items() if item in exclude]

    def _factor(self, seconds: float) -> float:
        """Return ``2 ** (seconds / half_life)``, infinite past the float range."""
        exponent = seconds / self._half_life
        return math.inf if exponent > 1023.0 else 2.0**exponent

    def _reset(self, t_ref: float) -> None:
        """Empty every structure, with ``t_ref`` as the reference time."""
        self._t_ref = t_ref
        self._threshold = self._floor
        self._slot: dict[ItemId, int] = {}
        self._items: list[ItemId | None] = []
        self._scaled = array("d")
        self._weights = array("d")
        self._free: list[int] = []
        self._order = SortedList()
        self._size = 1
        self._tree = array("d", [0.0, 0.0])
        self._mass = 0.0
        self._scaled_total = 0.0
        self._edits = 0

    def _allocate(self, item_id: ItemId) -> int:
        """Give ``item_id`` a free slot, growing the tree if none is left."""
        if self._free:
            slot = self._free.pop()
            self._items[slot] = item_id
        else:
            slot = len(self._items)
            self._items.append(item_id)
            self._scaled.append(0.0)
            self._weights.append(0.0)
            if slot >= self._size:
                self._size *= 2
                self._rebuild_tree()
        self._slot[item_id] = slot
        return slot

    def _store(self, slot: int, item_id: ItemId, scaled: float) -> None:
        """Set the scaled count of a held slot and its sampling weight."""
        self._scaled[slot] = scaled
        self._order.add((scaled, item_id))
        weight = scaled**self._alpha
        self._tree_add(slot, weight - self._weights[slot])
        self._weights[slot] = weight

    def _release(self, item_id: ItemId, scaled: float) -> None:
        """Free the slot of a pruned item (already out of the sorted order)."""
        slot = self._slot.pop(item_id)
        weight = self._weights[slot]
        self._items[slot] = None
        self._scaled[slot] = 0.0
        self._weights[slot] = 0.0
        self._free.append(slot)
        self._scaled_total -= scaled
        self._tree_add(slot, -weight)

    def _tree_add(self, slot: int, delta: float) -> None:
        """Add ``delta`` to the tree's and the total's view of a slot's weight."""
        self._mass += delta
        tree, size = self._tree, self._size
        index = slot + 1
        while index <= size:
            tree[index] += delta
            index += index & -index
        self._edits += 1

    def _settle(self) -> None:
        """Rebuild the sums if many edits have gone into them since the last time."""
        # Sums built by additions drift; an O(n) rebuild every O(n) edits
        # keeps them exact to a few ulps at O(1) amortised cost.
        if self._edits > max(1024, 8 * self._size):
            self._rebuild_tree()

    def _rebuild_tree(self) -> None:
        """Recompute the Fenwick tree and both totals from the slots."""
        size = self._size
        tree = array("d", bytes(8 * (size + 1)))
        tree[1 : len(self._weights) + 1] = self._weights
        for index in range(1, size + 1):
            parent = index + (index & -index)
            if parent <= size:
                tree[parent] += tree[index]
        self._tree = tree
        self._mass = math.fsum(self._weights)
        self._scaled_total = math.fsum(self._scaled)
        self._edits = 0

    def _rescale(self, t_ref: float) -> None:
        """Move the reference time to ``t_ref`` and drop what decayed away."""
        # Survivors keep their old slot order, compacted into the first slots.
        factor = self._factor(self._t_ref - t_ref)
        items: list[ItemId] = []
        scaled_values: list[float] = []
        for slot, item_id in enumerate(self._items):
            scaled = self._scaled[slot] * factor
            if item_id is not None and scaled >= self._floor:
                items.append(item_id)
                scaled_values.append(scaled)

        self._reset(t_ref)
        self._items = list(items)
        self._slot = {item_id: slot for slot, item_id in enumerate(items)}
        self._scaled = array("d", scaled_values)
        self._weights = array("d", [scaled**self._alpha for scaled in scaled_values])
        self._order = SortedList(zip(scaled_values, items, strict=True))
        while self._size < len(items):
            self._size *= 2
        self._rebuild_tree()

    def _check(self) -> None:
        """Assert every invariant of the counters (for tests)."""
        assert len(self._items) == len(self._scaled) == len(self._weights)
        assert len(self._items) <= self._size and self._size & (self._size - 1) == 0
        assert len(self._tree) == self._size + 1
        assert len(self._order) == len(self._slot)
        assert sorted(self._free) == [
            slot for slot, item in enumerate(self._items) if item is None
        ]
        for slot in self._free:
            assert self._scaled[slot] == 0.0 and self._weights[slot] == 0.0
        for scaled, item_id in self._order:
            slot = self._slot[item_id]
            assert self._items[slot] == item_id and self._scaled[slot] == scaled
            assert self._weights[slot] == scaled**self._alpha
            assert scaled >= self._threshold > 0.0
        if self.clock is None:
            assert not self._slot
            return
        assert self._t_ref <= self.clock <= self._t_ref + self._max_age
        assert self._threshold == self._floor * self._factor(self.clock - self._t_ref)

        # Sums kept by additions match sums recomputed from the slots.
        mass = math.fsum(self._weights)
        assert math.isclose(self._mass, mass, rel_tol=1e-9, abs_tol=1e-300)
        scaled_total = math.fsum(self._scaled)
        assert math.isclose(self._scaled_total, scaled_total, rel_tol=1e-9)
        for index in range(1, self._size + 1):
            low = index - (index & -index)
            expected = math.fsum(self._weights[low:index])
            assert math.isclose(
                self._tree[index], expected, rel_tol=1e-9, abs_tol=1e-9 * mass
            )
