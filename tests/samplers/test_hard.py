"""Tests of the hard sampler against the order statistics of uniform candidates."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from worlds import FakeScorer, World, chi_square_pvalue, make_world

from icpns_stream.samplers.base import SamplingContext
from icpns_stream.samplers.hard import HardSampler

__all__: list[str] = []


def scored_world(unclicked: int = 5) -> tuple[World, FakeScorer]:
    """A world whose stand-in model scores catalog index ``i`` as ``(i * 7) % 45``."""
    scorer = FakeScorer([(index * 7) % 45 for index in range(40 + unclicked)])
    world = make_world(seed=16, unclicked=unclicked, scorer=scorer)
    assert len(world.context.catalog) == 40 + unclicked
    return world, scorer


@pytest.mark.parametrize("candidates", [1, 3, 10])
def test_winner_follows_the_best_of_uniform_candidates(candidates: int) -> None:
    world, scorer = scored_world()
    catalog = world.context.catalog
    history = set(catalog.ids[:10])
    eligible = [item for item in catalog.ids if item not in history]
    by_score = sorted(eligible, key=lambda item: -scorer.scores[catalog.index_of(item)])

    # The r-th best of E wins when it is drawn and the r better ones are not.
    size = len(eligible)
    expected = {
        item: math.comb(size - 1 - rank, candidates - 1) / math.comb(size, candidates)
        for rank, item in enumerate(by_score)
    }
    expected = {item: p for item, p in expected.items() if p > 0}

    sampler = HardSampler(seed=4, candidates=candidates)
    draws = 4_000
    seen: Counter[str] = Counter()
    for _ in range(draws):
        [negative] = sampler.sample(world.context, "u", "i0", world.now, 0, history, 1)
        assert negative.probability == candidates / size
        assert negative.popularity == pytest.approx(world.count(negative.item_id))
        seen[negative.item_id] += 1
    assert chi_square_pvalue(seen, expected, draws) > 1e-3
    assert scorer.calls == draws


def test_groups_shrink_the_eligible_set_in_turn() -> None:
    world, scorer = scored_world()
    catalog = world.context.catalog
    negatives = HardSampler(seed=0, candidates=5).sample(
        world.context, "u", "i0", world.now, 0, {"i0"}, 3
    )
    size = len(catalog) - 1
    assert [n.probability for n in negatives] == [
        5 / size,
        5 / (size - 5),
        5 / (size - 10),
    ]
    assert len({n.item_id for n in negatives}) == 3 and scorer.calls == 1


def test_candidates_covering_the_catalog_return_the_best_items() -> None:
    world, scorer = scored_world()
    catalog = world.context.catalog
    history = set(catalog.ids[5:])
    eligible = sorted(
        catalog.ids[:5], key=lambda item: -scorer.scores[catalog.index_of(item)]
    )

    # Five eligible, four negatives: groups of 2, 1, 1, 1 share them out.
    negatives = HardSampler(seed=0, candidates=10).sample(
        world.context, "u", "i0", world.now, 0, history, 4
    )
    assert [n.probability for n in negatives] == [2 / 5, 1 / 3, 1 / 2, 1.0]
    assert len({n.item_id for n in negatives}) == 4
    assert set(eligible[:1]) <= {n.item_id for n in negatives}

    [best] = HardSampler(seed=0, candidates=10).sample(
        world.context, "u", "i0", world.now, 0, history, 1
    )
    assert best.item_id == eligible[0] and best.probability == 1.0


def test_needs_a_model_with_one_score_per_candidate() -> None:
    world = make_world(seed=17)
    context = world.context
    sampler = HardSampler(seed=0)
    with pytest.raises(ValueError, match=r"context\.model must be set"):
        sampler.sample(context, "u", "i0", world.now, 0, {"i0"}, 2)

    bad = FakeScorer([0.0])
    bad.score_items = lambda user_id, indices: bad.scores  # type: ignore[method-assign]
    broken = SamplingContext(context.catalog, context.popularity, model=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_items must return 20 scores"):
        sampler.sample(broken, "u", "i0", world.now, 0, {"i0"}, 2)


@pytest.mark.parametrize("candidates", [0, 2.5])
def test_rejects_bad_candidates(candidates: float) -> None:
    with pytest.raises(ValueError, match="candidates must be a positive integer"):
        HardSampler(candidates=candidates)  # type: ignore[arg-type]
