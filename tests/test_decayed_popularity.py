"""Tests of the decayed counters against decay recomputed from the raw clicks."""

from __future__ import annotations

import math
import pickle
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from icpns_stream.decayed_popularity import DecayedPopularity, PopularityDraw

__all__: list[str] = []


class OracleCounts:
    """Every click kept; each decayed value summed from scratch when asked."""

    def __init__(self, half_life: float, alpha: float, floor: float) -> None:
        self.half_life = half_life
        self.alpha = alpha
        self.floor = floor
        self.clicks: dict[str, list[tuple[float, float]]] = {}
        self.clock: float | None = None

    def value(self, item: str, timestamp: float) -> float:
        return sum(
            weight * 2.0 ** ((at - timestamp) / self.half_life)
            for at, weight in self.clicks.get(item, [])
        )

    def update(self, item: str, timestamp: float, weight: float = 1.0) -> None:
        # A counter is dropped as soon as the newest time finds it below the
        # floor, before the click that moved the clock is counted.
        if self.clock is None or timestamp > self.clock:
            self.clock = timestamp
            for held in list(self.clicks):
                if self.value(held, timestamp) < self.floor:
                    del self.clicks[held]
        self.clicks.setdefault(item, []).append((timestamp, weight))
        if self.value(item, self.clock) < self.floor:
            del self.clicks[item]

    def weights(
        self, exclude: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, float]:
        assert self.clock is not None
        return {
            item: self.value(item, self.clock) ** self.alpha
            for item in sorted(self.clicks)
            if item not in exclude
        }


def assert_matches(counts: DecayedPopularity, oracle: OracleCounts, at: float) -> None:
    """Same held items, values and total as the oracle, at time ``at``."""
    counts._check()
    assert len(counts) == len(oracle.clicks)
    assert counts.clock == oracle.clock
    for item in oracle.clicks:
        assert item in counts
        assert counts.value(item, at) == pytest.approx(oracle.value(item, at), 1e-9)
    expected_total = sum(oracle.value(item, at) for item in oracle.clicks)
    assert counts.total(at) == pytest.approx(expected_total, rel=1e-9)


def random_stream(
    seed: int, n_events: int, n_items: int, step: float, late: float
) -> list[tuple[str, float, float]]:
    """Clicks with mostly increasing times, some of them late by up to ``late``."""
    rng = random.Random(seed)
    now = 1_000.0
    stream = []
    for _ in range(n_events):
        now += rng.expovariate(1.0 / step)
        at = now - rng.uniform(0.0, late) if rng.random() < 0.2 else now
        item = f"i{min(int(rng.paretovariate(1.2)), n_items)}"
        stream.append((item, at, rng.choice([1.0, 0.5, 2.0, 0.01])))
    return stream


@pytest.mark.parametrize(
    ("seed", "half_life", "alpha", "floor", "step", "late"),
    [
        (0, 100.0, 1.0, 1e-3, 10.0, 50.0),
        (1, 10.0, 0.8, 1e-2, 8.0, 30.0),
        (2, 5.0, 0.1, 0.3, 3.0, 20.0),
        (3, 1.0, 4.0, 1e-3, 0.6, 2.0),
        (4, 1e6, 0.0, 1e-3, 1.0, 100.0),
    ],
)
def test_matches_oracle_on_random_streams(
    seed: int, half_life: float, alpha: float, floor: float, step: float, late: float
) -> None:
    counts = DecayedPopularity(half_life, alpha=alpha, floor=floor)
    oracle = OracleCounts(half_life, alpha, floor)
    for item, at, weight in random_stream(seed, 400, 40, step, late):
        counts.update(item, at, weight)
        oracle.update(item, at, weight)
        assert oracle.clock is not None
        assert_matches(counts, oracle, oracle.clock)

    # Values are continuous in time, before the newest click too.
    assert oracle.clock is not None
    for at in (oracle.clock - half_life, oracle.clock + 3 * half_life):
        assert_matches(counts, oracle, at)


def test_pruning_bounds_memory_and_drops_exactly_the_decayed() -> None:
    counts = DecayedPopularity(half_life=10.0, floor=0.1)
    oracle = OracleCounts(10.0, 1.0, 0.1)
    for step in range(200):
        # Each item is clicked once: after log2(1 / 0.1) = 3.3 half-lives it goes.
        counts.update(f"i{step}", step * 5.0)
        oracle.update(f"i{step}", step * 5.0)
        assert_matches(counts, oracle, step * 5.0)
        assert len(counts) <= 7
    assert sorted(oracle.clicks) == sorted(item for item, _ in counts.top(100, 995.0))


def test_late_click_counts_with_its_own_decay() -> None:
    counts = DecayedPopularity(half_life=10.0)
    counts.update("a", 100.0)
    counts.update("b", 90.0)
    assert counts.clock == 100.0
    assert counts.value("b", 100.0) == 0.5
    assert counts.value("b", 90.0) == 1.0

    # A click too old to reach the floor is never held.
    counts.update("c", 100.0 - 10.0 * 20)
    assert "c" not in counts and len(counts) == 2
    counts._check()


def test_rescaling_matches_oracle() -> None:
    # With alpha 4 the reference moves every 32 half-lives: 300 half-lives
    # cross it nine times.
    counts = DecayedPopularity(half_life=1.0, alpha=4.0, floor=1e-3)
    oracle = OracleCounts(1.0, 4.0, 1e-3)
    references = set()
    for step in range(600):
        at = step * 0.5
        item = f"i{step % 7}"
        counts.update(item, at)
        oracle.update(item, at)
        references.add(counts._t_ref)
        assert_matches(counts, oracle, at)
    assert len(references) >= 9


def test_sums_stay_exact_over_many_edits_without_rescaling() -> None:
    # 2,100 clicks (two rebuilds of the sums) within two half-lives: no
    # rescaling, so only the periodic rebuild keeps the running sums honest.
    counts = DecayedPopularity(half_life=1_000.0, alpha=0.8, floor=1e-3)
    oracle = OracleCounts(1_000.0, 0.8, 1e-3)
    rng = random.Random(8)
    for step in range(2_100):
        item, weight = f"i{rng.randrange(20)}", rng.choice([1.0, 0.5])
        counts.update(item, step * 0.6, weight)
        oracle.update(item, step * 0.6, weight)
        if step % 100 == 99:
            assert_matches(counts, oracle, step * 0.6)
    assert counts._t_ref == 0.0


def test_thousands_of_half_lives_stay_finite() -> None:
    # Three items clicked in turn, one click per half-life: at its click an
    # item's count is the geometric sum 1 / (1 - 2**-3).
    counts = DecayedPopularity(half_life=1.0, alpha=4.0, floor=1e-3)
    for step in range(5_000):
        counts.update(f"i{step % 3}", float(step))
    steady = 1.0 / (1.0 - 2.0**-3)
    # 4,999 is i1's turn; i0 clicked one half-life before, i2 two.
    assert counts.value("i1", 4_999.0) == pytest.approx(steady, rel=1e-12)
    assert counts.value("i2", 4_999.0) == pytest.approx(steady / 4, rel=1e-12)
    assert counts.total(4_999.0) == pytest.approx(steady * (1 + 0.5 + 0.25), rel=1e-12)
    assert math.isfinite(counts._mass)
    counts._check()


def test_a_long_silence_empties_the_counters() -> None:
    counts = DecayedPopularity(half_life=1.0, floor=1e-3)
    for step in range(50):
        counts.update(f"i{step % 5}", float(step))
    counts.update("late", 1e6)
    assert len(counts) == 1 and counts.value("late", 1e6) == 1.0
    assert counts.value("i0", 1e6) == 0.0
    counts._check()

    # Advancing alone also drops everything that decayed away.
    counts.advance(2e6)
    assert len(counts) == 0 and counts.total(2e6) == 0.0
    counts._check()


@settings(max_examples=60, deadline=None)
@given(
    clicks=st.lists(
        st.tuples(
            st.integers(0, 8),
            st.floats(-30.0, 60.0, allow_nan=False),
            st.sampled_from([1.0, 0.25, 3.0]),
        ),
        min_size=1,
        max_size=60,
    ),
    alpha=st.sampled_from([0.0, 0.1, 0.8, 1.0, 2.0]),
    floor=st.sampled_from([1e-3, 0.2, 0.9]),
)
def test_matches_oracle_on_generated_clicks(
    clicks: list[tuple[int, float, float]], alpha: float, floor: float
) -> None:
    # Steps may be negative: the clicks come in any order.
    counts = DecayedPopularity(half_life=7.0, alpha=alpha, floor=floor)
    oracle = OracleCounts(7.0, alpha, floor)
    now = 0.0
    for item, step, weight in clicks:
        now += step
        counts.update(f"i{item}", now, weight)
        oracle.update(f"i{item}", now, weight)
        assert oracle.clock is not None
        assert_matches(counts, oracle, oracle.clock)


def test_top_orders_by_decayed_count() -> None:
    counts = DecayedPopularity(half_life=10.0)
    oracle = OracleCounts(10.0, 1.0, 1e-3)
    for item, at, weight in random_stream(5, 300, 30, 2.0, 5.0):
        counts.update(item, at, weight)
        oracle.update(item, at, weight)
    at = 700.0
    top = counts.top(10, at)
    expected = sorted(oracle.clicks, key=lambda item: -oracle.value(item, at))[:10]
    assert [item for item, _ in top] == expected
    for item, value in top:
        assert value == pytest.approx(oracle.value(item, at), rel=1e-9)
    assert counts.top(0, at) == []
    assert len(counts.top(1_000, at)) == len(counts)


def filled(alpha: float) -> tuple[DecayedPopularity, OracleCounts]:
    counts = DecayedPopularity(half_life=50.0, alpha=alpha)
    oracle = OracleCounts(50.0, alpha, 1e-3)
    for item, at, weight in random_stream(11, 500, 25, 1.0, 10.0):
        counts.update(item, at, weight)
        oracle.update(item, at, weight)
    return counts, oracle


def frequencies(
    counts: DecayedPopularity, exclude: set[str], draws: int, seed: int
) -> tuple[Counter[str], dict[str, float]]:
    """Items drawn one per call, and each item's reported probability."""
    rng = np.random.default_rng(seed)
    assert counts.clock is not None
    seen: Counter[str] = Counter()
    reported: dict[str, float] = {}
    for _ in range(draws):
        [draw] = counts.sample(rng, counts.clock, exclude=exclude)
        seen[draw.item_id] += 1
        reported[draw.item_id] = draw.probability
    return seen, reported


@pytest.mark.parametrize("alpha", [0.1, 0.8, 1.0])
@pytest.mark.parametrize("excluded_share", [0.0, 0.3, 0.9])
def test_draws_follow_the_restricted_distribution(
    alpha: float, excluded_share: float
) -> None:
    counts, oracle = filled(alpha)

    # Exclude the most popular items up to the share of the mass: at 0.9 the
    # exact draw serves, below it rejection does.
    weights = oracle.weights()
    mass = sum(weights.values())
    exclude: set[str] = set()
    for item in sorted(weights, key=lambda item: -weights[item]):
        if (
            sum(weights[held] for held in exclude) + weights[item]
            > excluded_share * mass
        ):
            break
        exclude.add(item)
    eligible = oracle.weights(exclude)
    eligible_mass = sum(eligible.values())
    expected = {item: weight / eligible_mass for item, weight in eligible.items()}

    draws = 6_000
    seen, reported = frequencies(counts, exclude, draws, seed=1)
    assert not set(seen) & exclude
    for item, probability in reported.items():
        assert probability == pytest.approx(expected[item], rel=1e-9)
    observed = [seen[item] for item in expected]
    assert chisquare(observed, [draws * p for p in expected.values()]).pvalue > 1e-3

    # The same test tells a different alpha apart.
    assert oracle.clock is not None
    wrong = [oracle.value(item, oracle.clock) ** 0.45 for item in expected]
    wrong_expected = [draws * weight / sum(wrong) for weight in wrong]
    assert chisquare(observed, wrong_expected).pvalue < 1e-3


def test_exact_path_and_rejection_path_agree_on_probability() -> None:
    counts, oracle = filled(0.8)
    assert counts.clock is not None
    weights = oracle.weights()
    by_weight = sorted(weights, key=lambda item: -weights[item])
    rng = np.random.default_rng(3)
    for exclude in (set(), set(by_weight[:1]), set(by_weight[: len(by_weight) - 2])):
        draws = counts.sample(rng, counts.clock, n=len(weights), exclude=exclude)

        # Without replacement: each pick is weighed against what is left.
        left = {item: w for item, w in weights.items() if item not in exclude}
        assert sorted(draw.item_id for draw in draws) == sorted(left)
        for draw in draws:
            assert draw.probability == pytest.approx(
                left[draw.item_id] / sum(left.values()), rel=1e-9
            )
            assert draw.popularity == pytest.approx(
                oracle.value(draw.item_id, counts.clock), rel=1e-9
            )
            del left[draw.item_id]


def test_probability_of_the_last_eligible_item_is_exactly_1() -> None:
    # 1.4 - 0.4 rounds to 0.9999999999999999: the weight left for "a" after
    # "b" is excluded would make a probability just above 1.
    counts = DecayedPopularity(half_life=10.0)
    counts.update("a", 0.0, weight=1.0)
    counts.update("b", 0.0, weight=0.4)
    assert (1.0 + 0.4) - 0.4 < 1.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        [draw] = counts.sample(rng, 0.0, n=2, exclude={"b"})
        assert draw == PopularityDraw("a", 1.0, 1.0)
    counts._check()


def test_sampling_stops_when_nothing_is_eligible() -> None:
    counts = DecayedPopularity(half_life=10.0)
    rng = np.random.default_rng(0)
    assert counts.sample(rng, 0.0, n=3) == []
    counts.update("a", 0.0)
    counts.update("b", 0.0)
    assert counts.sample(rng, 0.0, n=3, exclude={"a", "b", "z"}) == []
    [draw] = counts.sample(rng, 0.0, n=3, exclude={"a", "z"})
    assert draw == PopularityDraw("b", 1.0, 1.0)
    assert counts.sample(rng, 0.0, n=0) == []


def test_sampling_does_not_depend_on_exclusion_set_order() -> None:
    counts, _ = filled(0.8)
    assert counts.clock is not None
    items = [item for item, _ in counts.top(25, counts.clock)]
    forward, backward = set(items[:12]), set(reversed(items[:12]))
    first = counts.sample(np.random.default_rng(9), counts.clock, 5, forward)
    second = counts.sample(np.random.default_rng(9), counts.clock, 5, backward)
    assert first == second


def test_pickle_round_trip_keeps_state() -> None:
    counts, _ = filled(0.8)
    copy = pickle.loads(pickle.dumps(counts))
    copy._check()
    for item, at, weight in random_stream(12, 100, 25, 1.0, 10.0):
        copy.update(item, at + 600.0, weight)
        counts.update(item, at + 600.0, weight)
    assert counts.top(30, 800.0) == copy.top(30, 800.0)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert counts.sample(rng_a, 800.0, 4) == copy.sample(rng_b, 800.0, 4)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"half_life": -3.0}, "half_life must be positive, got -3.0"),
        ({"half_life": math.inf}, "half_life must be positive, got inf"),
        ({"half_life": 1.0, "alpha": -0.5}, r"alpha must be in \[0, 4\], got -0.5"),
        ({"half_life": 1.0, "floor": 0.0}, "floor must be positive, got 0.0"),
    ],
)
def test_rejects_bad_parameters(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecayedPopularity(**arguments)


def test_rejects_bad_clicks_without_changing_state() -> None:
    counts = DecayedPopularity(half_life=1.0)
    counts.update("a", 5.0)
    with pytest.raises(ValueError, match=r"weight must be positive, got -1\.0"):
        counts.update("a", 6.0, -1.0)
    with pytest.raises(ValueError, match="timestamp must be finite, got nan"):
        counts.update("a", math.nan)
    with pytest.raises(ValueError, match="n must be non-negative, got -1"):
        counts.sample(np.random.default_rng(0), 5.0, n=-1)
    assert counts.clock == 5.0 and counts.value("a", 5.0) == 1.0
    counts._check()
