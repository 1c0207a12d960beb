"""Prequential (test-then-train) ranking quality with ties at their expected rank."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = [
    "PrequentialEvaluator",
    "hit_rate_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "rank_counts",
]


def rank_counts(
    scores: np.ndarray, target: int, exclude: np.ndarray | None = None
) -> tuple[int, int]:
    """Return how many candidates score above the target and level with it.

    Candidates are every index of ``scores`` except ``target`` and the indices
    in ``exclude`` (duplicates, and the target itself, are allowed there). The
    result ``(greater, ties)`` places the target, with ties broken uniformly at
    random, at a position from ``greater + 1`` to ``greater + ties + 1``.

    Costs O(len(scores) + len(exclude)).

    Examples
    --------
    >>> rank_counts(np.array([0.9, 0.5, 0.7, 0.5, 0.5]), 1, np.array([3, 3]))
    (2, 1)
    """
    # A NaN compares false with everything and would quietly rank low.
    n_items = len(scores)
    if not 0 <= target < n_items:
        raise ValueError(f"target must lie in [0, {n_items}), got {target}")
    if np.isnan(scores).any():
        raise ValueError("scores must not contain NaN")

    # Count over all items first: two vectorised passes.
    score = scores[target]
    greater = int(np.count_nonzero(scores > score))
    ties = int(np.count_nonzero(scores == score)) - 1

    # Then take back the excluded items, each once, never the target: a mask
    # collapses duplicates in O(items), cheaper than sorting them away.
    if exclude is not None and len(exclude):
        low, high = int(exclude.min()), int(exclude.max())
        if low < 0 or high >= n_items:
            raise ValueError(
                f"exclude must lie in [0, {n_items}), got values from {low} to {high}"
            )
        mask = np.zeros(n_items, dtype=bool)
        mask[exclude] = True
        mask[target] = False
        excluded_scores = scores[mask]
        greater -= int(np.count_nonzero(excluded_scores > score))
        ties -= int(np.count_nonzero(excluded_scores == score))
    return greater, ties


def _positions(greater: int, ties: int, k: int) -> range:
    # The equally likely positions of the target that fall within the top k.
    if greater < 0 or ties < 0:
        raise ValueError(
            f"greater and ties must be non-negative, got {greater} and {ties}"
        )
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    return range(greater + 1, min(greater + ties + 1, k) + 1)


def hit_rate_at_k(greater: int, ties: int, k: int) -> float:
    """Return the expected hit at ``k``: the share of tied positions within it.

    Examples
    --------
    >>> hit_rate_at_k(8, 3, 10)
    0.5
    """
    return len(_positions(greater, ties, k)) / (ties + 1)


def ndcg_at_k(greater: int, ties: int, k: int) -> float:
    """Return the expected NDCG at ``k`` of one relevant item, ``1/log2(pos+1)``.

    Examples
    --------
    >>> round(ndcg_at_k(0, 1, 10), 6)
    0.815465
    """
    gains = sum(
        1.0 / math.log2(position + 1) for position in _positions(greater, ties, k)
    )
    return gains / (ties + 1)


def mrr_at_k(greater: int, ties: int, k: int) -> float:
    """Return the expected reciprocal rank cut at ``k``, ``1/pos``.

    Examples
    --------
    >>> mrr_at_k(0, 1, 10)
    0.75
    """
    gains = sum(1.0 / position for position in _positions(greater, ties, k))
    return gains / (ties + 1)


class PrequentialEvaluator:
    """Running HR@k, NDCG@k and MRR@k over a stream, and over its recent part.

    Each event ranks the clicked item among the candidates (every catalog item
    but the user's earlier clicks) before the model learns from the click
    (test-then-train). Ties are scored at their expected rank: with ``g``
    candidates above the target and ``t`` level with it, each position from
    ``g + 1`` to ``g + t + 1`` counts with weight ``1 / (t + 1)``, so a model
    that scores every item alike earns what a random ranking would, not a hit.
    A clicked item never seen before cannot be ranked and counts as a miss.

    Parameters
    ----------
    k
        Cut-off of the ranking metrics (items).
    window
        Number of most recent evaluated events the ``window_*`` figures cover.

    Attributes
    ----------
    k, window
        The parameters above.
    evaluated
        Events evaluated, unseen items included.
    unseen_items
        Events whose clicked item was new to the catalog (all misses).

    Notes
    -----
    ``update`` costs O(n_items) (two vectorised comparisons) plus O(k);
    ``update_unseen`` and ``result`` O(1). The window keeps running sums and a
    deque of ``window`` entries; the sums are recomputed from the deque once per
    ``window`` events, so rounding cannot drift and the cost stays O(1)
    amortised.

    References
    ----------
    Gama, Sebastiao and Rodrigues (2013), "On evaluating stream learning
    algorithms", Machine Learning 90(3). McSherry and Najork (2008), "Computing
    information retrieval performance measures efficiently in the presence of
    tied scores", ECIR.

    Examples
    --------
    >>> evaluator = PrequentialEvaluator(k=2, window=1)
    >>> scores = np.array([0.9, 0.5, 0.5, 0.1])
    >>> evaluator.update(scores, 1, exclude=np.array([0]))
    >>> evaluator.update_unseen()
    >>> {key: round(value, 4) for key, value in evaluator.result().items()}
    {'hr@2': 0.5, 'ndcg@2': 0.4077, 'mrr@2': 0.375, 'window_hr@2': 0.0, \
'window_ndcg@2': 0.0, 'window_mrr@2': 0.0, 'evaluated': 2, 'unseen_items': 1}
    """

    def __init__(self, k: int = 10, window: int = 1000) -> None:
        # Both are counts of items or events.
        for name, value in (("k", k), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        self.k = k
        self.window = window
        self.evaluated = 0
        self.unseen_items = 0
        self._totals = [0.0, 0.0, 0.0]
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=window)
        self._window_totals = [0.0, 0.0, 0.0]
        self._keys = [f"{name}@{k}" for name in ("hr", "ndcg", "mrr")]

    def update(
        self, scores: np.ndarray, target_index: int, exclude: np.ndarray | None = None
    ) -> None:
        """Rank the clicked item at ``target_index`` among ``scores``.

        ``scores`` holds one score per catalog item; the items at ``exclude``
        (the user's earlier clicks) are not candidates.
        """
        greater, ties = rank_counts(scores, target_index, exclude)
        k = self.k
        self._add(
            (
                hit_rate_at_k(greater, ties, k),
                ndcg_at_k(greater, ties, k),
                mrr_at_k(greater, ties, k),
            )
        )

    def update_unseen(self) -> None:
        """Count a click on an item never seen before: a miss."""
        self.unseen_items += 1
        self._add((0.0, 0.0, 0.0))

    def result(self) -> dict[str, float | int]:
        """Return the metrics over the run and over the window, and the counts."""
        # An empty run or window reports zeros rather than dividing by zero.
        run = max(self.evaluated, 1)
        recent = max(len(self._recent), 1)
        result: dict[str, float | int] = {}
        for key, total in zip(self._keys, self._totals, strict=True):
            result[key] = total / run
        for key, total in zip(self._keys, self._window_totals, strict=True):
            result[f"window_{key}"] = total / recent
        result["evaluated"] = self.evaluated
        result["unseen_items"] = self.unseen_items
        return result

    def _add(self, values: tuple[float, float, float]) -> None:
        # Run totals only grow.
        self.evaluated += 1
        totals, window_totals, recent = self._totals, self._window_totals, self._recent
        for j, value in enumerate(values):
            totals[j] += value

        # The deque drops its oldest entry by itself; the sums follow by hand.
        if len(recent) == self.window:
            oldest = recent[0]
            for j, value in enumerate(oldest):
                window_totals[j] -= value
        recent.append(values)
        for j, value in enumerate(values):
            window_totals[j] += value

        # Recompute once per window so additions and removals cannot drift.
        if self.evaluated % self.window == 0:
            self._window_totals = [
                math.fsum(entry[j] for entry in recent) for j in range(3)
            ]

    def _check(self) -> None:
        assert 0 <= self.unseen_items <= self.evaluated
        assert len(self._recent) == min(self.evaluated, self.window)
        for j in range(3):
            exact = math.fsum(entry[j] for entry in self._recent)
            assert math.isclose(self._window_totals[j], exact, abs_tol=1e-9)
        for total in self._totals:
            assert 0.0 <= total <= self.evaluated + 1e-9
        for entry in self._recent:
            assert all(0.0 <= value <= 1.0 for value in entry)
