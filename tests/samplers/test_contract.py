"""The contract every sampler keeps, run on each of them."""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
from worlds import HALF_LIFE, FakeScorer, World, make_world

from icpns_stream.samplers import SAMPLERS, Sampler, make_sampler
from icpns_stream.samplers.base import Negative

__all__: list[str] = []

#: Every sampler, the in-community one blended with uniform draws, and the
#: hard one with few candidates.
KINDS = (*SAMPLERS, "icpns-mix", "hard-3")


def build(kind: str, seed: int) -> Sampler:
    if kind == "icpns-mix":
        return make_sampler("icpns", seed=seed, mix=0.4)
    if kind == "hard-3":
        return make_sampler("hard", seed=seed, candidates=3)
    return make_sampler(kind, seed=seed)


#: The fallbacks each sampler may name.
FALLBACKS: dict[str, set[str | None]] = {
    "uniform": {None},
    "popularity": {None, "uniform"},
    "icpns": {None, "global", "uniform", "mix"},
    "hard": {None},
}

#: A click: user, community, history, k.
Request = tuple[str, int | None, frozenset[str], int]


@pytest.fixture(scope="module")
def world() -> World:
    scorer = FakeScorer([((index * 13) % 17) / 17 for index in range(48)])
    return make_world(seed=20, unclicked=8, scorer=scorer)


def requests(world: World, count: int, seed: int) -> list[Request]:
    """Clicks by users of every kind: placed or not, light or heavy histories."""
    rng = random.Random(seed)
    ids = world.context.catalog.ids
    clicks = []
    for index in range(count):
        size = rng.choice([1, 5, 20, 40, len(ids) - 2, len(ids)])
        history = frozenset(rng.sample(ids, size))
        community = rng.choice([0, 1, 2, None, 9])
        clicks.append((f"u{index}", community, history, rng.choice([0, 1, 4, 6])))
    return clicks


def run(sampler: Sampler, world: World, clicks: list[Request]) -> list[list[Negative]]:
    return [
        sampler.sample(
            world.context, user, min(history), world.now, community, history, k
        )
        for user, community, history, k in clicks
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_negatives_are_distinct_unclicked_and_explained(
    kind: str, world: World
) -> None:
    sampler = build(kind, 0)
    clicks = requests(world, 300, seed=1)
    catalog = world.context.catalog
    for (user, community, history, k), negatives in zip(
        clicks, run(sampler, world, clicks), strict=True
    ):
        items = [negative.item_id for negative in negatives]
        assert len(items) == min(k, len(catalog) - len(history))
        assert len(set(items)) == len(items)
        assert not set(items) & history and set(items) <= set(catalog.ids)
        for negative in negatives:
            assert (negative.user_id, negative.community) == (user, community)
            assert negative.positive_item_id == min(history)
            assert negative.timestamp == world.now
            assert 0.0 < negative.probability <= 1.0
            assert negative.popularity >= 0.0
            assert negative.fallback in FALLBACKS[sampler.name]


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output(kind: str, world: World) -> None:
    clicks = requests(world, 60, seed=2)
    first = run(build(kind, 5), world, clicks)
    assert run(build(kind, 5), world, clicks) == first
    assert run(build(kind, 6), world, clicks) != first


@pytest.mark.parametrize("kind", KINDS)
def test_pickling_continues_the_same_draws(kind: str, world: World) -> None:
    clicks = requests(world, 80, seed=3)
    sampler = build(kind, 7)
    run(sampler, world, clicks[:40])
    copy = pickle.loads(pickle.dumps(sampler))
    assert type(copy) is type(sampler)
    assert run(copy, world, clicks[40:]) == run(sampler, world, clicks[40:])


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_left_unchanged(kind: str, world: World) -> None:
    clicks = requests(world, 40, seed=4)
    # The stand-in model has nothing a scoring call could change but its
    # call count, so the catalog, the counters and the scores are compared.
    scorer = world.context.model
    assert isinstance(scorer, FakeScorer)
    state = pickle.dumps((world.context.catalog, world.context.popularity))
    scores = scorer.scores.copy()
    histories = [set(history) for _, _, history, _ in clicks]

    # Plain mutable sets, as the engine passes them.
    sampler = build(kind, 8)
    for (user, community, _, k), history in zip(clicks, histories, strict=True):
        before = set(history)
        sampler.sample(world.context, user, "i0", world.now, community, history, k)
        assert history == before
    assert pickle.dumps((world.context.catalog, world.context.popularity)) == state
    assert (scorer.scores == scores).all()


@pytest.mark.parametrize("kind", KINDS)
def test_counts_are_read_at_the_clock_and_negatives_keep_the_click_time(
    kind: str, world: World
) -> None:
    # A click 1,000 half-lives before the clock, sampled as of the clock, gets
    # what a click at the clock gets, but with its own timestamp.
    clicks = requests(world, 60, seed=5)
    late = world.now - 1_000 * HALF_LIFE
    sampler = build(kind, 9)
    got = [
        sampler.sample(
            world.context,
            user,
            min(history),
            late,
            community,
            history,
            k,
            clock=world.now,
        )
        for user, community, history, k in clicks
    ]
    on_time = run(build(kind, 9), world, clicks)
    assert got == [
        [dataclasses.replace(negative, timestamp=late) for negative in negatives]
        for negatives in on_time
    ]
    assert any(got)


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_to_give_gives_nothing(kind: str, world: World) -> None:
    sampler = build(kind, 0)
    everything = set(world.context.catalog.ids)
    assert sampler.sample(world.context, "u", "i0", world.now, 0, everything, 4) == []
    assert sampler.sample(world.context, "u", "i0", world.now, 0, {"i0"}, 0) == []
    with pytest.raises(ValueError, match="k must be non-negative, got -1"):
        sampler.sample(world.context, "u", "i0", world.now, 0, {"i0"}, -1)


def test_output_does_not_depend_on_the_hash_seed() -> None:
    # Histories are sets of strings, whose order changes with the hash seed.
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from worlds import FakeScorer, make_world\n"
        "from icpns_stream.samplers import SAMPLERS, make_sampler\n"
        "world = make_world(seed=21, scorer=FakeScorer(range(45)))\n"
        "ids = world.context.catalog.ids\n"
        "for name in SAMPLERS:\n"
        "    sampler = make_sampler(name, seed=1, mix=0.3)\n"
        "    for size in (3, 36, 44):\n"
        "        history = set(ids[:size])\n"
        "        for negative in sampler.sample(\n"
        "            world.context, 'u', 'i0', world.now, 1, history, 4\n"
        "        ):\n"
        "            print(name, negative)\n"
    )
    here = Path(__file__).parent
    outputs = set()
    for hash_seed in ("0", "1", "2"):
        environment = {
            **os.environ,
            "PYTHONHASHSEED": hash_seed,
            "PYTHONPATH": str(here.parent.parent),
        }
        result = subprocess.run(
            [sys.executable, "-c", script, str(here)],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(result.stdout)
    # Four negatives each, but one when a single item is left unclicked.
    [output] = outputs
    assert len(output.splitlines()) == len(SAMPLERS) * (4 + 4 + 1)


def test_make_sampler_builds_each_by_name() -> None:
    assert SAMPLERS == ("icpns", "uniform", "popularity", "hard")
    for name in SAMPLERS:
        assert make_sampler(name, seed=3).name == name
    assert make_sampler("icpns", mix=0.25).mix == 0.25  # type: ignore[attr-defined]
    assert make_sampler("hard", candidates=4).candidates == 4  # type: ignore[attr-defined]
    with pytest.raises(
        ValueError,
        match="name must be one of icpns, uniform, popularity, hard, got 'nope'",
    ):
        make_sampler("nope")
