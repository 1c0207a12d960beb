"""Tests of the engine's per-click loop: order, exclusions, dedupe, determinism."""

from __future__ import annotations

import json
import math
import pickle
import random
from collections import Counter
from pathlib import Path

import pytest
from scipy.stats import chisquare

from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent
from icpns_stream.readers import load_replay
from icpns_stream.samplers import SAMPLERS, make_sampler

SAMPLE = Path(__file__).resolve().parents[1] / "icpns_stream" / "data" / "ml-100k.inter"


@pytest.fixture(scope="module")
def stream() -> list[ClickEvent]:
    return load_replay(SAMPLE).events[:3_000]


@pytest.mark.parametrize("sampler", ["icpns", "uniform", "popularity", "hard"])
def test_negatives_are_never_earlier_clicks(
    stream: list[ClickEvent], sampler: str
) -> None:
    engine = Engine(EngineConfig(sampler=sampler, refresh_every=500))
    clicked: dict[str, set[str]] = {}
    for event in stream:
        clicked.setdefault(event.user_id, set()).add(event.item_id)
        outcome = engine.process(event)
        items = [n.item_id for n in outcome.negatives]
        eligible = len(engine.catalog) - len(clicked[event.user_id])
        assert len(items) == len(set(items)) == min(4, eligible)
        for negative in outcome.negatives:
            assert negative.item_id not in clicked[event.user_id]
            assert negative.user_id == event.user_id
            assert negative.positive_item_id == event.item_id
            assert negative.timestamp == event.timestamp
            assert 0.0 < negative.probability <= 1.0
            assert math.isfinite(negative.popularity)
    engine.catalog._check()
    engine.communities._check()
    assert engine.events == len(stream)


def test_redelivered_event_is_learned_once() -> None:
    engine = Engine(EngineConfig(negatives=1))
    first = ClickEvent("u", "a", 10.0, event_id="e1")
    engine.process(ClickEvent("v", "b", 5.0))
    assert not engine.process(first).duplicate
    again = engine.process(first)
    assert again.duplicate and again.negatives == []
    assert (engine.events, engine.duplicates) == (2, 1)


def test_dedupe_window_forgets_the_oldest_ids() -> None:
    engine = Engine(EngineConfig(negatives=0, dedupe_window=2))
    for index in range(3):
        engine.process(ClickEvent("u", f"i{index}", float(index), event_id=str(index)))
    # "0" fell out of the window of two, "2" did not.
    assert not engine.process(ClickEvent("u", "i0", 4.0, event_id="0")).duplicate
    assert engine.process(ClickEvent("u", "i2", 5.0, event_id="2")).duplicate


def test_same_seed_same_negatives_and_report(stream: list[ClickEvent]) -> None:
    def run() -> tuple[list[tuple[str, str]], dict[str, object]]:
        engine = Engine(EngineConfig(seed=7, refresh_every=700))
        drawn = [
            (n.user_id, n.item_id)
            for event in stream[:1_500]
            for n in engine.process(event).negatives
        ]
        return drawn, engine.report()

    assert run() == run()


def test_checkpointed_engine_continues_exactly(stream: list[ClickEvent]) -> None:
    config = EngineConfig(refresh_every=400)
    straight = Engine(config)
    for event in stream[:2_000]:
        straight.process(event)

    # Pickle half-way, as a checkpoint does, then resume from the copy.
    resumed = Engine(config)
    for event in stream[:1_000]:
        resumed.process(event)
    resumed = pickle.loads(pickle.dumps(resumed))
    for event in stream[1_000:2_000]:
        resumed.process(event)

    assert resumed.state_summary() == straight.state_summary()
    assert resumed.report() == straight.report()


def test_report_counts_what_it_saw(stream: list[ClickEvent]) -> None:
    engine = Engine(EngineConfig(sampler="uniform", negatives=3))
    clicked: dict[str, set[str]] = {}
    expected_negatives = starved = 0
    for event in stream[:500]:
        engine.process(event)
        # Early on the catalog is small: a user gets what is left outside history.
        clicked.setdefault(event.user_id, set()).add(event.item_id)
        eligible = len(engine.catalog) - len(clicked[event.user_id])
        expected_negatives += min(3, eligible)
        starved += eligible < 3
    report = engine.report()
    assert report["events"] == 500
    assert report["users"] == len({e.user_id for e in stream[:500]})
    assert report["items"] == len({e.item_id for e in stream[:500]})
    assert report["negatives_per_event"] == expected_negatives / 500
    assert report["sampler"] == "uniform"
    assert report["starved_events"] == starved
    assert 0.0 <= report["hr@10"] <= 1.0
    assert report["ndcg@10"] <= report["hr@10"]


def test_user_who_clicked_everything_gets_no_negatives() -> None:
    engine = Engine(EngineConfig(negatives=2))
    for t, item in enumerate(["a", "b", "c"]):
        engine.process(ClickEvent("u", item, float(t)))
    outcome = engine.process(ClickEvent("u", "a", 9.0))
    assert outcome.negatives == []
    assert engine.report()["starved_events"] >= 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sampler", "best", "sampler must be one of"),
        ("negatives", -1, "negatives must be"),
        ("alpha", 0.0, "alpha must be positive"),
        ("half_life", float("inf"), "half_life must be positive"),
        ("mix", 1.5, "mix must be between 0 and 1"),
    ],
)
def test_config_names_the_bad_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineConfig(**{field: value})  # type: ignore[arg-type]


# Clicks that come late: counted at their own time, sampled as of the clock.

_HOUR = 3_600.0
_DAY = 86_400.0


def _steady_stream(clicks: int, gap: float, users: int, items: int) -> list[ClickEvent]:
    """Clicks ``gap`` s apart from 1998 on, by random users on random items."""
    rng = random.Random(5)
    start = 886_000_000.0
    return [
        ClickEvent(
            f"u{rng.randrange(users)}",
            f"i{rng.randrange(items)}",
            start + gap * t,
        )
        for t in range(clicks)
    ]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_very_late_clicks_get_finite_popularity(sampler: str) -> None:
    # 60 days of clicks with a one-day half-life, then clicks from 1970 and
    # from 59 days back: read at their own times, the counts would be scaled
    # up by 2**10,400 (past the float range) and by 2**59.
    engine = Engine(EngineConfig(sampler=sampler, half_life=_DAY, refresh_every=500))
    for event in _steady_stream(2_880, 1_800.0, users=200, items=60):
        engine.process(event)
    clock = engine.last_timestamp
    counted = engine.events

    for late in (
        ClickEvent("u1", "i1", 1.0),
        ClickEvent("u2", "i2", clock - 59 * _DAY),
        ClickEvent("u3", "new", clock - 59 * _DAY),
    ):
        outcome = engine.process(late)
        assert len(outcome.negatives) == 4
        for negative in outcome.negatives:
            # A decayed count never exceeds the clicks counted.
            assert 0.0 <= negative.popularity <= counted
            assert 0.0 < negative.probability <= 1.0
            assert negative.timestamp == late.timestamp
            json.dumps(negative.to_dict(), allow_nan=False)
        engine.popularity._check()

    # Late clicks are counted, but do not move the clock back.
    assert engine.events == counted + 3
    assert engine.last_timestamp == clock
    assert engine.popularity.global_popularity.clock == clock


def test_a_late_clicks_negatives_follow_the_popularity_at_the_clock() -> None:
    # Five hours of clicks on 30 items (nothing decays below the floor), then a
    # click 60 days late. Popularity sampling, alpha 0.5, K = 3.
    half_life, alpha, k = _HOUR, 0.5, 3
    config = EngineConfig(
        sampler="popularity", negatives=k, alpha=alpha, half_life=half_life
    )
    log = _steady_stream(300, 60.0, users=50, items=30)
    engine = Engine(config)
    for event in log:
        engine.process(event)
    clock = engine.last_timestamp
    late = ClickEvent("late", "i0", clock - 60 * _DAY)
    state = pickle.dumps(engine)

    # Brute force: every click's decayed weight at the clock, the late one too.
    counts: dict[str, float] = {}
    for event in [*log, late]:
        weight = 2.0 ** ((event.timestamp - clock) / half_life)
        counts[event.item_id] = counts.get(event.item_id, 0.0) + weight

    # Many draws for the same late click, each from the same state.
    trials = 2_000
    firsts: Counter[str] = Counter()
    for trial in range(trials):
        copy = pickle.loads(state)
        copy.sampler = make_sampler("popularity", seed=trial)
        negatives = copy.process(late).negatives
        assert len(negatives) == k
        left = {item: count**alpha for item, count in counts.items()}
        del left[late.item_id]
        for negative in negatives:
            assert negative.timestamp == late.timestamp
            assert negative.popularity == pytest.approx(counts[negative.item_id])
            share = left[negative.item_id] / math.fsum(left.values())
            assert negative.probability == pytest.approx(share)
            del left[negative.item_id]
        firsts[negatives[0].item_id] += 1

    # The first negatives are distributed as the weights at the clock say.
    weights = {i: c**alpha for i, c in counts.items() if i != late.item_id}
    total = math.fsum(weights.values())
    observed = [firsts[item] for item in weights]
    expected = [trials * weight / total for weight in weights.values()]
    assert sum(observed) == trials
    assert chisquare(observed, expected).pvalue > 1e-3
