"""Decayed click counters over the whole stream and inside each community."""

from __future__ import annotations

import operator
from typing import Any

from icpns_stream.decayed_popularity import DecayedPopularity
from icpns_stream.types import CommunityId, ItemId

__all__ = ["CommunityPopularity"]


class CommunityPopularity:
    """One global :class:`DecayedPopularity` plus one per community.

    Every click counts globally and, when the user is placed in a community,
    inside it. All counters share ``half_life``, ``alpha`` and ``floor``, and
    every click moves every counter's clock, so a community that stops getting
    clicks still sees its counters decay below ``floor`` and go; a community
    whose counters have all gone is forgotten until its next click.

    Parameters
    ----------
    half_life
        Half-life of a click, in seconds of event time (positive).
    alpha
        Smoothing exponent in ``[0, 4]`` of the sampling weights.
    floor
        Decayed value below which a counter is dropped (positive).
    sweep_every
        Clicks between two sweeps that decay and prune the counters of every
        community, not only the clicked one. A community that stops getting
        clicks is freed at a sweep once all its counters fell below ``floor``.

    Attributes
    ----------
    global_popularity
        Counters over every click.

    Notes
    -----
    ``update`` costs O(log n + c) amortised with ``n`` items held and ``c``
    communities with counters; ``community`` O(1); ``totals`` O(c).

    References
    ----------
    Chen, Lin and Xu (2026), In-Community Popularity Negative Sampling (ICPNS):
    in-community click counts raised to a power as the negative distribution,
    computed once in batch; here made streaming with time decay.

    Examples
    --------
    >>> popularity = CommunityPopularity(half_life=10.0, alpha=0.5)
    >>> popularity.update(0, "a", 0.0)
    >>> popularity.update(1, "a", 10.0)
    >>> popularity.update(None, "b", 10.0)
    >>> popularity.global_popularity.value("a", 10.0)
    1.5
    >>> popularity.communities, popularity.community(0).value("a", 10.0)
    ([0, 1], 0.5)
    >>> popularity.totals(10.0)
    {'global': 2.5, 'communities': {0: 0.5, 1: 1.0}}
    """

    def __init__(
        self,
        half_life: float,
        alpha: float = 1.0,
        floor: float = 1e-3,
        *,
        sweep_every: int = 1_024,
    ) -> None:
        if sweep_every < 1:
            raise ValueError(f"sweep_every must be positive, got {sweep_every}")
        self.global_popularity = DecayedPopularity(half_life, alpha, floor)
        self._communities: dict[CommunityId, DecayedPopularity] = {}
        self._sweep_every = sweep_every
        self._clicks = 0

    @property
    def half_life(self) -> float:
        """Half-life in seconds of event time."""
        return self.global_popularity.half_life

    @property
    def alpha(self) -> float:
        """Smoothing exponent of the sampling weights."""
        return self.global_popularity.alpha

    @property
    def floor(self) -> float:
        """Decayed value below which a counter is dropped."""
        return self.global_popularity.floor

    @property
    def communities(self) -> list[CommunityId]:
        """Communities that hold counters, in increasing order."""
        return sorted(self._communities)

    def community(self, community: CommunityId) -> DecayedPopularity | None:
        """Return the counters of ``community``, or None if it holds none."""
        return self._communities.get(community)

    def update(
        self, community: CommunityId | None, item_id: ItemId, timestamp: float
    ) -> None:
        """Count a click on ``item_id`` at ``timestamp`` by a user of ``community``.

        ``community`` is None for a user not placed in any community yet.
        """
        # Check the community before any counter changes; numpy integers are
        # stored as plain ints so checkpoints and reports stay portable.
        if community is not None:
            given = community
            try:
                community = operator.index(community)
            except TypeError:
                community = -1
            if community < 0:
                raise ValueError(
                    f"community must be a non-negative integer or None, got {given!r}"
                )

        self.global_popularity.update(item_id, timestamp)
        if community is not None:
            counters = self._communities.get(community)
            if counters is None:
                # A new community starts on the shared clock, which a late
                # click must not move back.
                counters = DecayedPopularity(self.half_life, self.alpha, self.floor)
                if self.global_popularity.clock is not None:
                    counters.advance(self.global_popularity.clock)
                self._communities[community] = counters
            counters.update(item_id, timestamp)

        # Other communities decay too, and those left empty free their memory.
        # Sweeping them all costs O(communities), so it runs once per
        # sweep_every clicks; a counter not yet swept still answers exactly,
        # since values and draws are computed at the time asked for.
        self._clicks += 1
        if self._clicks % self._sweep_every:
            return
        emptied = []
        for other, counters in self._communities.items():
            counters.advance(timestamp)
            if not counters:
                emptied.append(other)
        for other in emptied:
            del self._communities[other]

    def totals(self, timestamp: float) -> dict[str, Any]:
        """Return the summed decayed counts at ``timestamp``, global and per community.

        The result, ``{"global": total, "communities": {community: total}}``
        with communities in increasing order, is JSON-ready and lets two runs
        over one stream be compared.
        """
        return {
            "global": self.global_popularity.total(timestamp),
            "communities": {
                community: self._communities[community].total(timestamp)
                for community in self.communities
            },
        }

    def _check(self) -> None:
        """Assert every invariant of the counters (for tests)."""
        self.global_popularity._check()
        clock = self.global_popularity.clock
        if clock is None:
            assert not self._communities
            return
        for counters in self._communities.values():
            counters._check()
            assert len(counters) > 0
            assert counters.clock is not None and counters.clock <= clock
            assert (counters.half_life, counters.alpha, counters.floor) == (
                self.half_life,
                self.alpha,
                self.floor,
            )

            # A community's clicks are global clicks too (an unswept counter
            # may still hold what the global one already dropped below floor).
            for item_id, value in counters.top(len(counters), clock):
                assert item_id in self.global_popularity or value < self.floor
