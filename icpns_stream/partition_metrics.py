"""Agreement between two partitions of the same keys (normalised mutual information)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np

__all__ = ["normalized_mutual_info"]

_Key = TypeVar("_Key", bound=Hashable)


def normalized_mutual_info(
    a: Mapping[_Key, Hashable], b: Mapping[_Key, Hashable]
) -> float:
    """Return the normalised mutual information of two partitions, in ``[0, 1]``.

    Each mapping sends a key (a user, say) to its label (its community). Only the
    keys present in both mappings are compared; labels are opaque, so renaming the
    labels of either side leaves the score unchanged.

    The score is ``I(A; B) / ((H(A) + H(B)) / 2)``: mutual information divided by
    the arithmetic mean of the two entropies, which is scikit-learn's default
    ``normalized_mutual_info_score``. Its limit cases follow scikit-learn too: two
    partitions that both put every shared key in one block score 1.0, and a
    mutual information of zero scores 0.0.

    Parameters
    ----------
    a, b
        Key to label. Keys and labels must be hashable; labels need not be
        comparable with each other.

    Returns
    -------
    float
        1.0 for identical partitions up to label names, about 0 for independent
        ones (on finite samples it is slightly above 0).

    Raises
    ------
    ValueError
        When the two mappings share no key.

    Notes
    -----
    Costs O(n log n) for n shared keys: one pass to code the labels as integers,
    then ``numpy.unique`` over the joint codes, so many small blocks cost no more
    than a few large ones.

    References
    ----------
    Strehl, A. and Ghosh, J. (2002). Cluster ensembles: a knowledge reuse
    framework for combining multiple partitions. JMLR 3, 583-617.

    Examples
    --------
    >>> truth = {"u1": 0, "u2": 0, "u3": 1, "u4": 1}
    >>> normalized_mutual_info(truth, {"u1": "x", "u2": "x", "u3": "y", "u4": "y"})
    1.0
    >>> round(normalized_mutual_info(truth, {"u1": 5, "u2": 6, "u3": 5, "u4": 6}), 6)
    0.0
    >>> round(normalized_mutual_info(truth, {"u1": 0, "u2": 0, "u3": 0, "u4": 1}), 4)
    0.3437
    """
    # Code each side's labels as dense integers in order of first sight, which
    # needs only hashing and keeps the result independent of PYTHONHASHSEED.
    codes_a: dict[Hashable, int] = {}
    codes_b: dict[Hashable, int] = {}
    xs: list[int] = []
    ys: list[int] = []
    for key, label_a in a.items():
        if key not in b:
            continue
        xs.append(codes_a.setdefault(label_a, len(codes_a)))
        ys.append(codes_b.setdefault(b[key], len(codes_b)))
    n = len(xs)
    if n == 0:
        raise ValueError("a and b share no key, so there is nothing to compare")

    # Two one-block partitions agree perfectly though both entropies are 0.
    if len(codes_a) == 1 and len(codes_b) == 1:
        return 1.0

    # Joint block sizes come from the pairs of codes, without a dense table that
    # could be as large as the product of the two block counts.
    width = len(codes_b)
    x = np.asarray(xs, dtype=np.int64)
    y = np.asarray(ys, dtype=np.int64)
    pairs, joint = np.unique(x * width + y, return_counts=True)
    size_a = np.bincount(x).astype(np.float64)
    size_b = np.bincount(y).astype(np.float64)

    # I(A; B) = sum over joint blocks of p_ij log(p_ij / (p_i p_j)).
    outer = size_a[pairs // width] * size_b[pairs % width]
    mutual = float(np.sum(joint / n * np.log(joint * n / outer)))

    # A zero (or rounding-negative) mutual information cannot be a match.
    if mutual <= 0.0:
        return 0.0

    # Entropies of the two sides, then the arithmetic-mean normalisation; the
    # ratio can exceed 1 by a rounding error only.
    mean_entropy = (_entropy(size_a / n) + _entropy(size_b / n)) / 2.0
    return float(min(1.0, mutual / mean_entropy))


def _entropy(probabilities: np.ndarray) -> float:
    return float(-np.sum(probabilities * np.log(probabilities)))
