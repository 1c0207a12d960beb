"""Tests of the tie-aware ranking metrics and the prequential evaluator."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest

from icpns_stream.prequential import (
    PrequentialEvaluator,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    rank_counts,
)

Metrics = tuple[float, float, float]


def permutation_oracle(
    scores: np.ndarray, target: int, exclude: np.ndarray, k: int
) -> Metrics:
    """Average HR, NDCG and MRR at k over every tie-breaking order."""
    banned = set(exclude.tolist()) - {target}
    candidates = [j for j in range(len(scores)) if j not in banned]
    totals = [0.0, 0.0, 0.0]
    orders = list(itertools.permutations(candidates))
    for order in orders:
        # Sort by score, breaking ties by the place in this order.
        tiebreak = {item: place for place, item in enumerate(order)}
        ranking = sorted(candidates, key=lambda j: (-scores[j], tiebreak[j]))
        position = ranking.index(target) + 1
        if position <= k:
            totals[0] += 1.0
            totals[1] += 1.0 / math.log2(position + 1)
            totals[2] += 1.0 / position
    return totals[0] / len(orders), totals[1] / len(orders), totals[2] / len(orders)


def loop_counts(
    scores: np.ndarray, target: int, exclude: np.ndarray
) -> tuple[int, int]:
    """Count greater and tied candidates with a plain loop."""
    banned = set(exclude.tolist())
    greater = ties = 0
    for j, score in enumerate(scores.tolist()):
        if j == target or j in banned:
            continue
        greater += score > scores[target]
        ties += score == scores[target]
    return greater, ties


def metrics(scores: np.ndarray, target: int, exclude: np.ndarray, k: int) -> Metrics:
    greater, ties = rank_counts(scores, target, exclude)
    return (
        hit_rate_at_k(greater, ties, k),
        ndcg_at_k(greater, ties, k),
        mrr_at_k(greater, ties, k),
    )


def test_metrics_match_every_tie_break_order() -> None:
    rng = np.random.default_rng(0)
    cases = 0
    for _ in range(150):
        # Few distinct integer scores make ties common.
        n_items = int(rng.integers(1, 7))
        scores = rng.integers(0, 3, n_items).astype(float)
        target = int(rng.integers(n_items))
        exclude = rng.integers(0, n_items, int(rng.integers(0, 4)))
        k = int(rng.integers(1, 5))
        expected = permutation_oracle(scores, target, exclude, k)
        assert metrics(scores, target, exclude, k) == pytest.approx(expected, abs=1e-12)
        cases += expected[0] not in (0.0, 1.0)
    # Partial hits (ties straddling k) were among the cases.
    assert cases > 10


def test_rank_counts_match_a_loop_on_larger_vectors() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n_items = int(rng.integers(1, 300))
        scores = np.round(rng.normal(size=n_items), 1)
        target = int(rng.integers(n_items))
        # Duplicates, and sometimes the target itself, among the exclusions.
        exclude = rng.integers(0, n_items, int(rng.integers(0, 40)))
        if rng.random() < 0.3:
            exclude = np.append(exclude, target)
        assert rank_counts(scores, target, exclude) == loop_counts(
            scores, target, exclude
        )


def test_hand_computed_values() -> None:
    # Alone at the top, and the last place inside and outside the cut-off.
    top = (hit_rate_at_k(0, 0, 10), ndcg_at_k(0, 0, 10), mrr_at_k(0, 0, 10))
    assert top == (1.0, 1.0, 1.0)
    assert ndcg_at_k(9, 0, 10) == 1 / math.log2(11)
    assert mrr_at_k(9, 0, 10) == 0.1
    out = (hit_rate_at_k(10, 0, 10), ndcg_at_k(10, 0, 10), mrr_at_k(10, 0, 10))
    assert out == (0.0, 0.0, 0.0)

    # Four tied at positions 9 to 12: two of them within the top 10.
    assert hit_rate_at_k(8, 3, 10) == 0.5
    assert ndcg_at_k(8, 3, 10) == pytest.approx(
        (1 / math.log2(10) + 1 / math.log2(11)) / 4
    )
    assert mrr_at_k(8, 3, 10) == pytest.approx((1 / 9 + 1 / 10) / 4)

    # All 100 candidates alike: a random ranking's worth, not a hit.
    scores = np.zeros(100)
    greater, ties = rank_counts(scores, 5, np.array([], dtype=np.intp))
    assert (greater, ties) == (0, 99)
    assert hit_rate_at_k(greater, ties, 10) == 0.1
    assert mrr_at_k(0, 1, 2) == 0.75


def test_bad_arguments_raise() -> None:
    scores = np.array([0.3, 0.1, 0.2])
    with pytest.raises(ValueError, match=r"target must lie in \[0, 3\), got 3"):
        rank_counts(scores, 3)
    with pytest.raises(ValueError, match=r"exclude must lie in \[0, 3\)"):
        rank_counts(scores, 0, np.array([1, 5]))
    with pytest.raises(ValueError, match="scores must not contain NaN"):
        rank_counts(np.array([0.3, np.nan]), 0)
    with pytest.raises(ValueError, match="k must be positive, got 0"):
        hit_rate_at_k(0, 0, 0)
    with pytest.raises(ValueError, match="got -1 and 0"):
        ndcg_at_k(-1, 0, 10)
    for kwargs, message in [
        ({"k": 0}, "k must be positive, got 0"),
        ({"window": -2}, "window must be positive, got -2"),
        ({"k": 2.5}, "k must be an integer, got 2.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            PrequentialEvaluator(**kwargs)  # type: ignore[arg-type]


def test_evaluator_matches_oracle_over_run_and_window() -> None:
    rng = np.random.default_rng(2)
    evaluator = PrequentialEvaluator(k=3, window=7)
    history: list[Metrics] = []
    unseen = 0
    for _ in range(120):
        if rng.random() < 0.2:
            evaluator.update_unseen()
            history.append((0.0, 0.0, 0.0))
            unseen += 1
        else:
            n_items = int(rng.integers(2, 7))
            scores = rng.integers(0, 4, n_items).astype(float)
            target = int(rng.integers(n_items))
            exclude = rng.choice(n_items, int(rng.integers(0, n_items)), replace=False)
            evaluator.update(scores, target, exclude)
            history.append(permutation_oracle(scores, target, exclude, 3))
        evaluator._check()

        # Compare every figure after every event.
        result = evaluator.result()
        run = np.mean(history, axis=0)
        window = np.mean(history[-7:], axis=0)
        for j, name in enumerate(("hr", "ndcg", "mrr")):
            assert result[f"{name}@3"] == pytest.approx(run[j], abs=1e-12)
            assert result[f"window_{name}@3"] == pytest.approx(window[j], abs=1e-12)
        assert result["evaluated"] == len(history)
        assert result["unseen_items"] == unseen
    assert 0.0 < result["hr@3"] < 1.0


def test_result_keys_follow_k_and_start_at_zero() -> None:
    result = PrequentialEvaluator(k=5, window=2).result()
    assert result == {
        "hr@5": 0.0,
        "ndcg@5": 0.0,
        "mrr@5": 0.0,
        "window_hr@5": 0.0,
        "window_ndcg@5": 0.0,
        "window_mrr@5": 0.0,
        "evaluated": 0,
        "unseen_items": 0,
    }


def test_window_sums_do_not_drift_over_a_long_run() -> None:
    rng = np.random.default_rng(3)
    evaluator = PrequentialEvaluator(k=10, window=3)
    scores = rng.random(50)
    for step in range(5000):
        evaluator.update(scores, step % 50)
    evaluator._check()
    last = [
        metrics(scores, step % 50, np.array([], dtype=np.intp), 10)
        for step in (4997, 4998, 4999)
    ]
    result = evaluator.result()
    assert result["window_ndcg@10"] == pytest.approx(
        math.fsum(m[1] for m in last) / 3, abs=1e-15
    )


def test_inputs_unchanged_and_pickle_continues_identically() -> None:
    rng = np.random.default_rng(4)
    evaluator = PrequentialEvaluator(k=4, window=5)
    scores = rng.random(30)
    exclude = np.array([3, 1, 3])
    frozen_scores, frozen_exclude = scores.copy(), exclude.copy()
    evaluator.update(scores, 1, exclude)
    assert np.array_equal(scores, frozen_scores)
    assert np.array_equal(exclude, frozen_exclude)

    copy = pickle.loads(pickle.dumps(evaluator))
    for step in range(20):
        for each in (evaluator, copy):
            each.update(scores, step, exclude)
            each.update_unseen()
    copy._check()
    assert copy.result() == evaluator.result()
