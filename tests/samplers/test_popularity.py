"""Tests of the popularity sampler against decayed counts recomputed from clicks."""

from __future__ import annotations

import pytest
from worlds import chi_square_pvalue, first_picks, make_world

from icpns_stream.samplers.popularity import PopularitySampler

__all__: list[str] = []


@pytest.mark.parametrize("alpha", [0.1, 0.8])
@pytest.mark.parametrize("clicked", [0, 3, 25])
def test_first_negative_follows_global_popularity(alpha: float, clicked: int) -> None:
    world = make_world(seed=4, alpha=alpha)

    # The history takes the most clicked items first, the hardest exclusion.
    by_count = sorted(world.distribution(()), key=world.count, reverse=True)
    history = set(by_count[:clicked])
    expected = world.distribution(history)

    draws = 5_000
    seen, reported, fallbacks = first_picks(
        PopularitySampler(seed=5), world, history, 1, draws
    )
    assert fallbacks == {None: draws}
    for item, probability in reported.items():
        assert probability == pytest.approx(expected[item], rel=1e-9)
    assert chi_square_pvalue(seen, expected, draws) > 1e-3

    # The same test rejects a sharper exponent over the same items.
    sharper = {item: world.count(item) ** (alpha + 1.0) for item in expected}
    mass = sum(sharper.values())
    wrong = {item: weight / mass for item, weight in sharper.items()}
    assert chi_square_pvalue(seen, wrong, draws) < 1e-3


def test_explanations_follow_each_pick() -> None:
    world = make_world(seed=6)
    history = {"i0", "i1"}
    negatives = PopularitySampler(seed=0).sample(
        world.context, "u", "i0", world.now, None, history, 4
    )
    left = world.distribution(history)
    for negative in negatives:
        # Without replacement: the weight over what is still eligible.
        assert negative.probability == pytest.approx(
            left[negative.item_id] / sum(left.values()), rel=1e-9
        )
        assert negative.popularity == pytest.approx(world.count(negative.item_id))
        del left[negative.item_id]


def test_falls_back_to_uniform_when_no_counted_item_is_left() -> None:
    world = make_world(seed=7, unclicked=6)
    clicked = set(world.distribution(()))
    negatives = PopularitySampler(seed=0).sample(
        world.context, "u", "i0", world.now, None, clicked - {"i3"}, 4
    )
    assert negatives[0].item_id == "i3" and negatives[0].fallback is None
    assert negatives[0].probability == 1.0
    assert [n.fallback for n in negatives[1:]] == ["uniform"] * 3
    assert {n.item_id for n in negatives[1:]} <= set(world.extra)
    assert [n.probability for n in negatives[1:]] == [1 / 6, 1 / 5, 1 / 4]
