"""Tests of the in-community sampler and its fallbacks against recomputed counts."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binomtest
from worlds import HALF_LIFE, chi_square_pvalue, first_picks, make_world

from icpns_stream.samplers.icpns import IcpnsSampler

__all__: list[str] = []


@pytest.mark.parametrize("alpha", [0.1, 0.8])
@pytest.mark.parametrize("clicked", [0, 4, 19])
def test_first_negative_follows_community_popularity(
    alpha: float, clicked: int
) -> None:
    world = make_world(seed=8, alpha=alpha)
    community = 1

    # The history takes the community's favourites first; 19 of its 23 items
    # leave under a quarter of its weight, where the exact draw serves.
    favourites = sorted(
        world.distribution((), community),
        key=lambda item: world.count(item, community),
        reverse=True,
    )
    history = set(favourites[:clicked])
    expected = world.distribution(history, community)

    draws = 5_000
    seen, reported, fallbacks = first_picks(
        IcpnsSampler(seed=9), world, history, community, draws
    )
    assert fallbacks == {None: draws}
    for item, probability in reported.items():
        assert probability == pytest.approx(expected[item], rel=1e-9)
    assert chi_square_pvalue(seen, expected, draws) > 1e-3

    # The same test rejects the global distribution over the same items.
    global_weights = {item: world.count(item) ** alpha for item in expected}
    mass = sum(global_weights.values())
    wrong = {item: weight / mass for item, weight in global_weights.items()}
    assert chi_square_pvalue(seen, wrong, draws) < 1e-3


def test_explanations_follow_each_pick() -> None:
    world = make_world(seed=10)
    history = {"i13", "i14"}
    negatives = IcpnsSampler(seed=0).sample(
        world.context, "u", "i13", world.now, 1, history, 4
    )
    left = world.distribution(history, 1)
    for negative in negatives:
        assert negative.fallback is None and negative.community == 1
        assert negative.probability == pytest.approx(
            left[negative.item_id] / sum(left.values()), rel=1e-9
        )
        assert negative.popularity == pytest.approx(world.count(negative.item_id, 1))
        del left[negative.item_id]


@pytest.mark.parametrize("community", [None, 7])
def test_unplaced_or_uncounted_community_draws_globally(community: int | None) -> None:
    world = make_world(seed=11)
    history = {"i0"}
    expected = world.distribution(history)
    draws = 3_000
    seen, reported, fallbacks = first_picks(
        IcpnsSampler(seed=1), world, history, community, draws
    )
    assert fallbacks == {"global": draws}
    for item, probability in reported.items():
        assert probability == pytest.approx(expected[item], rel=1e-9)
    assert chi_square_pvalue(seen, expected, draws) > 1e-3


def test_an_exhausted_community_hands_over_to_global() -> None:
    world = make_world(seed=12)
    in_community = set(world.distribution((), 2))
    kept = sorted(in_community)[:2]
    history = in_community - set(kept)
    negatives = IcpnsSampler(seed=0).sample(
        world.context, "u", "x", world.now, 2, history, 4
    )
    assert [n.fallback for n in negatives] == [None, None, "global", "global"]
    assert {n.item_id for n in negatives[:2]} == set(kept)

    # The global draws exclude the history and the community's picks.
    left = world.distribution(history | set(kept))
    for negative in negatives[2:]:
        assert negative.probability == pytest.approx(
            left[negative.item_id] / sum(left.values()), rel=1e-9
        )
        assert negative.popularity == pytest.approx(world.count(negative.item_id))
        del left[negative.item_id]


def test_decayed_counters_hand_over_to_uniform() -> None:
    # A click long after the others decays every other counter away.
    world = make_world(seed=13, unclicked=0)
    later = world.now + 40 * HALF_LIFE
    world.context.popularity.update(0, "i0", later)
    assert len(world.context.popularity.global_popularity) == 1

    catalog = world.context.catalog
    negatives = IcpnsSampler(seed=0).sample(
        world.context, "u", "i0", later, 0, {"i0"}, 4
    )
    eligible = len(catalog) - 1
    assert [n.fallback for n in negatives] == ["uniform"] * 4
    assert [n.probability for n in negatives] == [
        1.0 / (eligible - position) for position in range(4)
    ]
    assert [n.popularity for n in negatives] == [0.0] * 4


@pytest.mark.parametrize("mix", [0.0, 0.5, 1.0])
def test_a_user_who_clicked_everything_gets_no_negatives(mix: float) -> None:
    world = make_world(seed=14)
    everything = set(world.context.catalog.ids)
    sampler = IcpnsSampler(seed=0, mix=mix)
    assert sampler.sample(world.context, "u", "i0", world.now, 0, everything, 4) == []
    assert (
        sampler.sample(world.context, "u", "i0", world.now, None, everything, 4) == []
    )


def test_mix_draws_that_share_uniformly() -> None:
    world = make_world(seed=15)
    sampler = IcpnsSampler(seed=3, mix=0.3)
    calls, k = 1_000, 4
    fallbacks = []
    for _ in range(calls):
        negatives = sampler.sample(world.context, "u", "i0", world.now, 0, {"i0"}, k)
        assert len(negatives) == k

        # Uniform negatives come after the community's, one over the eligible.
        kinds = [n.fallback for n in negatives]
        assert kinds == sorted(kinds, key=lambda kind: kind == "mix")
        mixed = [n for n in negatives if n.fallback == "mix"]
        eligible = len(world.context.catalog) - 1 - (k - len(mixed))
        assert [n.probability for n in mixed] == [
            1.0 / (eligible - position) for position in range(len(mixed))
        ]
        fallbacks.extend(kinds)
    share = binomtest(fallbacks.count("mix"), calls * k, 0.3)
    assert share.pvalue > 1e-3
    assert set(fallbacks) == {None, "mix"}

    only_uniform = IcpnsSampler(seed=3, mix=1.0)
    negatives = only_uniform.sample(world.context, "u", "i0", world.now, 0, {"i0"}, k)
    assert [n.fallback for n in negatives] == ["mix"] * k


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_reported_probabilities_stay_within_0_and_1(seed: int) -> None:
    # Random histories leave now and then a single item with most of a
    # community's weight, whose probability rounding once put above 1; the
    # community, global and uniform draws all report one.
    world = make_world(seed=seed)
    rng = random.Random(seed)
    sampler = IcpnsSampler(seed=seed, mix=0.3)
    ids = sorted(world.context.catalog.ids)
    fallbacks: set[str | None] = set()
    for _ in range(2_000):
        community = rng.choice([0, 1, 2, None])
        positive = rng.choice(ids)
        history = {positive, *rng.sample(ids, rng.randrange(len(ids)))}
        negatives = sampler.sample(
            world.context, "u", positive, world.now, community, history, 4
        )
        for negative in negatives:
            assert 0.0 < negative.probability <= 1.0, negative
            fallbacks.add(negative.fallback)
    assert fallbacks == {None, "global", "uniform", "mix"}


@pytest.mark.parametrize("mix", [-0.1, 1.5, float("nan")])
def test_rejects_a_bad_mix(mix: float) -> None:
    with pytest.raises(ValueError, match="mix must be in"):
        IcpnsSampler(mix=mix)
