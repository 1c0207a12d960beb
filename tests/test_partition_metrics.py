"""Tests of the normalised mutual information against its definition."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Hashable, Mapping
from typing import TypeVar

import pytest

from icpns_stream.partition_metrics import normalized_mutual_info

__all__: list[str] = []

_Key = TypeVar("_Key", bound=Hashable)


def oracle_nmi(a: Mapping[_Key, Hashable], b: Mapping[_Key, Hashable]) -> float:
    """NMI straight from the definition, one probability at a time."""
    keys = [key for key in a if key in b]
    n = len(keys)
    count_a = Counter(a[key] for key in keys)
    count_b = Counter(b[key] for key in keys)
    count_ab = Counter((a[key], b[key]) for key in keys)
    if len(count_a) == 1 and len(count_b) == 1:
        return 1.0
    mutual = 0.0
    for label_a, na in count_a.items():
        for label_b, nb in count_b.items():
            nab = count_ab.get((label_a, label_b), 0)
            if nab:
                p = nab / n
                mutual += p * math.log(p / ((na / n) * (nb / n)))
    if mutual <= 1e-15:
        return 0.0
    h_a = -sum(c / n * math.log(c / n) for c in count_a.values())
    h_b = -sum(c / n * math.log(c / n) for c in count_b.values())
    return mutual / ((h_a + h_b) / 2)


@pytest.mark.parametrize("seed", range(40))
def test_matches_oracle_on_random_partitions(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    blocks_a = rng.randint(1, 6)
    blocks_b = rng.randint(1, 6)
    a = {f"u{i}": rng.randrange(blocks_a) for i in range(n)}

    # Half the runs correlate b with a, so high scores are exercised too.
    if seed % 2:
        b = {
            key: (label if rng.random() < 0.7 else rng.randrange(blocks_b))
            for key, label in a.items()
        }
    else:
        b = {f"u{i}": rng.randrange(blocks_b) for i in range(n)}
    assert normalized_mutual_info(a, b) == pytest.approx(oracle_nmi(a, b), abs=1e-12)


def test_identical_partitions_score_one() -> None:
    a = {i: i % 5 for i in range(100)}
    assert normalized_mutual_info(a, a) == pytest.approx(1.0, abs=1e-12)


def test_label_names_do_not_matter() -> None:
    rng = random.Random(3)
    a = {i: rng.randrange(4) for i in range(200)}
    b = {i: rng.randrange(3) for i in range(200)}
    renamed = {i: ["x", "y", "z"][2 - label] for i, label in b.items()}
    base = normalized_mutual_info(a, b)
    assert 0.0 < base < 1.0
    assert normalized_mutual_info(a, renamed) == pytest.approx(base, abs=1e-12)
    assert normalized_mutual_info(renamed, a) == pytest.approx(base, abs=1e-12)


def test_same_partition_under_other_names_scores_one() -> None:
    a = {i: i % 3 for i in range(30)}
    b = {i: ("red", "green", "blue")[(i + 1) % 3] for i in range(30)}
    assert normalized_mutual_info(a, b) == pytest.approx(1.0, abs=1e-12)


def test_independent_partitions_score_near_zero() -> None:
    rng = random.Random(11)
    a = {i: rng.randrange(5) for i in range(20_000)}
    b = {i: rng.randrange(5) for i in range(20_000)}
    assert normalized_mutual_info(a, b) < 0.002


def test_exactly_independent_grid_scores_zero() -> None:
    # Every (row, column) pair once: the joint is the product of the marginals.
    a = {(r, c): r for r in range(4) for c in range(3)}
    b = {(r, c): c for r in range(4) for c in range(3)}
    assert normalized_mutual_info(a, b) == 0.0


def test_only_shared_keys_are_compared() -> None:
    a = {"u1": 0, "u2": 0, "u3": 1, "u4": 1, "only_a": 0}
    b = {"u1": 7, "u2": 7, "u3": 8, "u4": 8, "only_b": 8}
    assert normalized_mutual_info(a, b) == pytest.approx(1.0, abs=1e-12)


def test_limit_cases_follow_scikit_learn() -> None:
    one_block = {i: 0 for i in range(10)}
    split = {i: i % 2 for i in range(10)}
    assert normalized_mutual_info(one_block, {i: "z" for i in range(10)}) == 1.0
    assert normalized_mutual_info(one_block, split) == 0.0
    assert normalized_mutual_info({"k": 1}, {"k": 2}) == 1.0


def test_known_value() -> None:
    # I = 0.2158, H(A) = ln 2, H(B) = 0.5623, so NMI = 0.2158 / 0.6277.
    a = {"u1": 0, "u2": 0, "u3": 1, "u4": 1}
    b = {"u1": 0, "u2": 0, "u3": 0, "u4": 1}
    h_b = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mutual = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    expected = mutual / ((math.log(2) + h_b) / 2)
    assert normalized_mutual_info(a, b) == pytest.approx(expected, abs=1e-12)
    assert normalized_mutual_info(a, b) == pytest.approx(0.34375, abs=1e-4)


def test_symmetric() -> None:
    rng = random.Random(5)
    a = {i: rng.randrange(4) for i in range(300)}
    b = {i: (a[i] + rng.randrange(2)) % 4 for i in range(300)}
    assert normalized_mutual_info(a, b) == pytest.approx(
        normalized_mutual_info(b, a), abs=1e-12
    )


def test_no_shared_key_raises() -> None:
    with pytest.raises(ValueError, match="share no key"):
        normalized_mutual_info({"a": 1}, {"b": 1})
    with pytest.raises(ValueError, match="share no key"):
        normalized_mutual_info({}, {})


def test_inputs_left_unchanged() -> None:
    a = {"u1": 0, "u2": 1, "u3": 1}
    b = {"u1": 0, "u2": 0, "u3": 1, "u9": 2}
    a_copy, b_copy = dict(a), dict(b)
    normalized_mutual_info(a, b)
    assert a == a_copy and b == b_copy
