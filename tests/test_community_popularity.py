"""Tests of the per-community counters against decay recomputed from the clicks."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from icpns_stream.community_popularity import CommunityPopularity

__all__: list[str] = []


class OracleScope:
    """The clicks one counter set saw, each value summed from scratch."""

    def __init__(self, half_life: float, floor: float) -> None:
        self.half_life = half_life
        self.floor = floor
        self.clicks: dict[str, list[float]] = {}

    def value(self, item: str, timestamp: float) -> float:
        return sum(
            2.0 ** ((at - timestamp) / self.half_life)
            for at in self.clicks.get(item, [])
        )

    def prune(self, clock: float) -> None:
        for item in list(self.clicks):
            if self.value(item, clock) < self.floor:
                del self.clicks[item]

    def add(self, item: str, timestamp: float, clock: float) -> None:
        self.clicks.setdefault(item, []).append(timestamp)
        if self.value(item, clock) < self.floor:
            del self.clicks[item]


def replay(
    seed: int, events: int, half_life: float, floor: float, sweep_every: int = 1
) -> tuple[CommunityPopularity, OracleScope, dict[int, OracleScope], float]:
    """Random clicks by users of 4 communities (or none), some of them late.

    The oracle prunes every community at every click, so by default the
    counters sweep at every click too.
    """
    rng = random.Random(seed)
    popularity = CommunityPopularity(
        half_life, alpha=0.8, floor=floor, sweep_every=sweep_every
    )
    overall = OracleScope(half_life, floor)
    scopes: dict[int, OracleScope] = {}
    clock = now = 0.0
    for _ in range(events):
        now += rng.expovariate(1.0)
        at = now - rng.uniform(0, 5) if rng.random() < 0.2 else now
        community = rng.choice([None, 0, 1, 2, 3, 3, 3])

        # Community 2 goes quiet halfway, so its counters decay away.
        if community == 2 and now > events / 2:
            community = 3
        item = f"i{rng.randrange(30)}"
        popularity.update(community, item, at)

        if at > clock:
            clock = at
            overall.prune(clock)
            for scope in scopes.values():
                scope.prune(clock)
        overall.add(item, at, clock)
        if community is not None:
            scope = scopes.setdefault(community, OracleScope(half_life, floor))
            scope.add(item, at, clock)
        popularity._check()
    return popularity, overall, scopes, clock


@pytest.mark.parametrize("seed", range(4))
def test_matches_oracle_globally_and_per_community(seed: int) -> None:
    popularity, overall, scopes, clock = replay(seed, 300, 4.0, 0.05)
    for at in (clock, clock + 2.0):
        for item in overall.clicks:
            expected = overall.value(item, at)
            assert popularity.global_popularity.value(item, at) == pytest.approx(
                expected, rel=1e-9
            )
        assert len(popularity.global_popularity) == len(overall.clicks)

        live = {c: scope for c, scope in sorted(scopes.items()) if scope.clicks}
        assert popularity.communities == list(live)
        for community, scope in live.items():
            counters = popularity.community(community)
            assert counters is not None and len(counters) == len(scope.clicks)
            for item in scope.clicks:
                assert counters.value(item, at) == pytest.approx(
                    scope.value(item, at), rel=1e-9
                )

        totals = popularity.totals(at)
        assert totals["global"] == pytest.approx(
            sum(overall.value(item, at) for item in overall.clicks), rel=1e-9
        )
        assert list(totals["communities"]) == list(live)
        for community, scope in live.items():
            assert totals["communities"][community] == pytest.approx(
                sum(scope.value(item, at) for item in scope.clicks), rel=1e-9
            )


def test_a_quiet_community_decays_away_and_is_forgotten() -> None:
    popularity, _, scopes, _ = replay(0, 300, 4.0, 0.05)
    assert scopes[2].clicks == {}
    assert popularity.community(2) is None
    assert 2 not in popularity.totals(0.0)["communities"]


@pytest.mark.parametrize("sweep_every", [7, 1_024])
def test_lazy_sweeps_differ_from_eager_ones_only_below_the_floor(
    sweep_every: int,
) -> None:
    eager, _, _, clock = replay(3, 2_048, 4.0, 0.05)
    lazy, _, _, _ = replay(3, 2_048, 4.0, 0.05, sweep_every=sweep_every)
    lazy._check()
    # 2,048 clicks end on a sweep for both: the same communities remain.
    assert lazy.communities == eager.communities
    for community in eager.communities:
        eager_counters, lazy_counters = (
            eager.community(community),
            lazy.community(community),
        )
        assert eager_counters is not None and lazy_counters is not None
        for item in {f"i{n}" for n in range(30)}:
            # A counter a lazy sweep kept a little longer can only carry what
            # was under the floor when the eager one dropped it.
            difference = lazy_counters.value(item, clock) - eager_counters.value(
                item, clock
            )
            assert 0.0 <= difference <= 0.05


def test_unplaced_users_count_only_globally() -> None:
    popularity = CommunityPopularity(half_life=10.0)
    popularity.update(None, "a", 0.0)
    assert popularity.communities == []
    assert popularity.totals(0.0) == {"global": 1.0, "communities": {}}

    # A community first seen through a late click still runs on the newest time.
    popularity.update(np.int64(5), "b", -10.0)  # type: ignore[arg-type]
    assert popularity.communities == [5] and isinstance(popularity.communities[0], int)
    counters = popularity.community(5)
    assert counters is not None and counters.clock == 0.0
    assert counters.value("b", 0.0) == 0.5
    popularity._check()
    assert json.loads(json.dumps(popularity.totals(0.0))) == {
        "global": 1.5,
        "communities": {"5": 0.5},
    }


def test_shares_parameters_with_every_counter() -> None:
    popularity = CommunityPopularity(half_life=3.0, alpha=0.1, floor=0.2)
    popularity.update(1, "a", 0.0)
    counters = popularity.community(1)
    assert counters is not None
    assert (counters.half_life, counters.alpha, counters.floor) == (3.0, 0.1, 0.2)
    assert (popularity.half_life, popularity.alpha, popularity.floor) == (3.0, 0.1, 0.2)


def test_pickle_round_trip_keeps_state() -> None:
    popularity, _, _, clock = replay(1, 200, 4.0, 0.05)
    copy = pickle.loads(pickle.dumps(popularity))
    copy._check()
    assert copy.totals(clock) == popularity.totals(clock)
    for update in (popularity.update, copy.update):
        update(0, "new", clock + 1.0)
    assert copy.totals(clock + 1.0) == popularity.totals(clock + 1.0)


@pytest.mark.parametrize("community", [-1, "3", 2.5])
def test_rejects_bad_communities_without_changing_state(community: object) -> None:
    popularity = CommunityPopularity(half_life=1.0)
    with pytest.raises(ValueError, match="community must be a non-negative integer"):
        popularity.update(community, "a", 0.0)  # type: ignore[arg-type]
    assert len(popularity.global_popularity) == 0
    popularity._check()


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="half_life must be positive, got 0"):
        CommunityPopularity(half_life=0)
