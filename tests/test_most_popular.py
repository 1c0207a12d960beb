"""Tests of the decayed most-popular ranker against counts recomputed from scratch."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from icpns_stream.most_popular import MostPopularRanker

Click = tuple[int, float]


def oracle(clicks: list[Click], n_items: int, half_life: float) -> np.ndarray:
    """Decay every click from its own time to the latest one, then sum."""
    now = max(timestamp for _, timestamp in clicks)
    counts = np.zeros(n_items)
    for index, timestamp in clicks:
        if index < n_items:
            counts[index] += 2.0 ** (-(now - timestamp) / half_life)
    return counts


def random_clicks(
    rng: np.random.Generator, n_clicks: int, n_items: int, span: float
) -> list[Click]:
    """Clicks in rising time with some jitter backwards, on Zipf-like items."""
    times = np.sort(rng.uniform(0.0, span, n_clicks))
    times -= rng.uniform(0.0, span / 200, n_clicks) * (rng.random(n_clicks) < 0.1)
    items = np.minimum(rng.zipf(1.5, n_clicks) - 1, n_items - 1)
    return [(int(i), float(t)) for i, t in zip(items, times, strict=True)]


@pytest.mark.parametrize("half_life", [0.5, 7.0, 1000.0, math.inf])
def test_scores_match_counts_decayed_from_scratch(half_life: float) -> None:
    rng = np.random.default_rng(int(half_life) if math.isfinite(half_life) else 99)
    # 300 items push the counts through two doublings.
    clicks = random_clicks(rng, 600, n_items=300, span=400.0)
    ranker = MostPopularRanker(half_life)
    for seen, (index, timestamp) in enumerate(clicks, start=1):
        ranker.update(index, timestamp)
        ranker._check()
        if seen % 10 == 0:
            expected = oracle(clicks[:seen], 310, half_life)
            np.testing.assert_allclose(
                ranker.scores(310), expected, rtol=1e-9, atol=1e-300
            )


def test_plain_counts_with_infinite_half_life() -> None:
    ranker = MostPopularRanker(math.inf)
    for index, timestamp in [(2, 5.0), (0, 1e9), (2, 3.0), (2, 2e9)]:
        ranker.update(index, timestamp)
    assert ranker.scores(4).tolist() == [1.0, 0.0, 3.0, 0.0]


def test_rescale_keeps_counts_finite_and_exact() -> None:
    # 5,000 half-lives: a factor 2**5000 would overflow without rescaling.
    ranker = MostPopularRanker(half_life=1.0)
    clicks = [(j % 3, float(j)) for j in range(5001)]
    origins = set()
    for index, timestamp in clicks:
        ranker.update(index, timestamp)
        origins.add(ranker._origin)
    ranker._check()
    assert len(origins) > 10
    scores = ranker.scores(3)
    np.testing.assert_allclose(scores, oracle(clicks, 3, 1.0), rtol=1e-12)
    # The last click (index 5000 % 3 == 2) weighs 1, the one before it 1/2...
    assert scores.tolist() == pytest.approx([2 / 7, 4 / 7, 8 / 7])


def test_equal_histories_tie_exactly_and_order_follows_recency() -> None:
    ranker = MostPopularRanker(half_life=3.0)
    for index, timestamp in [(0, 1.0), (1, 1.0), (0, 4.0), (1, 4.0), (2, 0.5)]:
        ranker.update(index, timestamp)
    ranker.update(3, 4.0)
    scores = ranker.scores(5)
    assert scores[0] == scores[1]
    assert scores[0] > scores[3] > scores[2] > scores[4] == 0.0


def test_scores_beyond_known_items_and_inputs() -> None:
    ranker = MostPopularRanker(half_life=10.0)
    assert ranker.scores(4).tolist() == [0.0, 0.0, 0.0, 0.0]
    ranker.update(np.int64(5), 0.0)
    assert ranker.scores(3).tolist() == [0.0, 0.0, 0.0]
    assert ranker.scores(7).tolist() == [0.0] * 5 + [1.0, 0.0]
    assert ranker.scores(0).shape == (0,)
    # A returned array is a copy: writing to it changes nothing.
    ranker.scores(7)[5] = 42.0
    assert ranker.scores(7)[5] == 1.0


def test_bad_arguments_raise() -> None:
    for half_life in (0.0, -3.0, math.nan):
        with pytest.raises(ValueError, match="half_life must be positive, got"):
            MostPopularRanker(half_life)
    ranker = MostPopularRanker(half_life=1.0)
    with pytest.raises(ValueError, match="index must be non-negative, got -1"):
        ranker.update(-1, 0.0)
    with pytest.raises(TypeError):
        ranker.update(1.5, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timestamp must be finite, got inf"):
        ranker.update(0, math.inf)
    with pytest.raises(ValueError, match="n_items must be non-negative, got -1"):
        ranker.scores(-1)
    ranker._check()
    assert ranker.scores(1).tolist() == [0.0]


def test_pickle_continues_identically() -> None:
    rng = np.random.default_rng(5)
    clicks = random_clicks(rng, 400, n_items=80, span=100.0)
    ranker = MostPopularRanker(half_life=2.0)
    for index, timestamp in clicks[:200]:
        ranker.update(index, timestamp)
    copy = pickle.loads(pickle.dumps(ranker))
    for index, timestamp in clicks[200:]:
        ranker.update(index, timestamp)
        copy.update(index, timestamp)
    copy._check()
    assert np.array_equal(copy.scores(80), ranker.scores(80))
