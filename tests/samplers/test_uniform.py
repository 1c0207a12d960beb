"""Tests of the uniform sampler against the uniform distribution it promises."""

from __future__ import annotations

import pytest
from worlds import chi_square_pvalue, first_picks, make_world

from icpns_stream.samplers.uniform import UniformSampler

__all__: list[str] = []


@pytest.mark.parametrize("clicked", [0, 10, 38])
def test_first_negative_is_uniform_over_unclicked_items(clicked: int) -> None:
    # 38 of 45 clicked leaves under a quarter eligible: the exact draw serves.
    world = make_world(seed=1)
    catalog = world.context.catalog
    history = set(catalog.ids[:clicked])
    eligible = [item for item in catalog.ids if item not in history]

    draws = 4_000
    seen, reported, fallbacks = first_picks(
        UniformSampler(seed=2), world, history, 0, draws
    )
    assert set(seen) <= set(eligible) and fallbacks == {None: draws}
    assert reported == {item: 1.0 / len(eligible) for item in seen}
    expected = {item: 1.0 / len(eligible) for item in eligible}
    assert chi_square_pvalue(seen, expected, draws) > 1e-3

    # The same test rejects a distribution that leans to early items.
    tilted = {
        item: (2.0 if i < len(eligible) // 2 else 1.0)
        for i, item in enumerate(eligible)
    }
    mass = sum(tilted.values())
    assert (
        chi_square_pvalue(seen, {i: w / mass for i, w in tilted.items()}, draws) < 1e-3
    )


def test_explanations_follow_each_pick() -> None:
    world = make_world(seed=3)
    catalog = world.context.catalog
    history = set(catalog.ids[:5])
    negatives = UniformSampler(seed=0).sample(
        world.context, "u", catalog.ids[0], world.now, 2, history, 4
    )
    eligible = len(catalog) - 5

    # Without replacement: each pick is one among those still eligible.
    assert [n.probability for n in negatives] == [
        1.0 / (eligible - position) for position in range(4)
    ]
    for negative in negatives:
        assert negative.popularity == pytest.approx(world.count(negative.item_id))
        assert (negative.user_id, negative.community) == ("u", 2)
        assert negative.positive_item_id == catalog.ids[0]
        assert negative.timestamp == world.now


def test_unclicked_items_come_with_zero_popularity() -> None:
    world = make_world(seed=3, unclicked=30)
    history = set(world.context.catalog.ids[:-30])
    negatives = UniformSampler(seed=0).sample(
        world.context, "u", "i0", world.now, None, history, 4
    )
    assert {n.item_id for n in negatives} <= set(world.extra)
    assert [n.popularity for n in negatives] == [0.0] * 4


def test_rejects_a_bad_seed() -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        UniformSampler(seed=-1)
