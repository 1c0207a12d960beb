"""Tests of side-by-side sampler runs: false negatives, truth scoring, fairness."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent
from icpns_stream.ground_truth import GroundTruth
from icpns_stream.partition_metrics import normalized_mutual_info
from icpns_stream.readers import load_replay
from icpns_stream.sampler_comparison import FalseNegativeCounter, compare_samplers
from icpns_stream.simulator import PlantedCommunitySimulator


def _random_stream(seed: int, n: int = 400) -> list[ClickEvent]:
    rng = random.Random(seed)
    return [
        ClickEvent(f"u{rng.randrange(12)}", f"i{rng.randrange(40)}", float(t))
        for t in range(n)
    ]


def test_false_negative_rate_matches_a_positional_oracle() -> None:
    events = _random_stream(3)
    engine = Engine(EngineConfig(sampler="uniform", negatives=3, refresh_every=50))
    counter = FalseNegativeCounter(events)
    later_hits = drawn = 0
    for position, event in enumerate(events):
        negatives = engine.process(event).negatives
        counter.update(negatives)
        # Oracle: look for the same user clicking the item after this position.
        for negative in negatives:
            drawn += 1
            later_hits += any(
                e.user_id == negative.user_id and e.item_id == negative.item_id
                for e in events[position + 1 :]
            )
    assert counter.negatives == drawn
    assert counter.false_negatives == later_hits
    assert counter.rate == later_hits / drawn
    assert 0 < later_hits < drawn


def test_each_sampler_gets_the_same_model_and_events() -> None:
    events = load_replay(
        Path(__file__).resolve().parents[1] / "icpns_stream" / "data" / "ml-100k.inter"
    ).events[:600]
    config = EngineConfig(seed=5, refresh_every=200)
    runs = compare_samplers(events, ["uniform", "uniform"], config, curve_every=100)
    first, second = (run.report for run in runs)
    for timing in ("seconds", "events_per_second"):
        first.pop(timing), second.pop(timing)
    assert first == second
    assert [t for t, _ in runs[0].curve] == [
        events[i].timestamp for i in range(99, 600, 100)
    ]
    assert runs[0].curve == runs[1].curve


def test_truth_scores_negatives_and_communities(tmp_path: Path) -> None:
    path = tmp_path / "planted.jsonl"
    PlantedCommunitySimulator(300, 200, 3, seed=2).write(path, 6_000)
    truth = GroundTruth.load(GroundTruth.path_for(path))
    events = load_replay(path).events
    config = EngineConfig(refresh_every=1_000)
    runs = compare_samplers(events, ["icpns", "uniform"], config, truth=truth)
    for run in runs:
        report = run.report
        # A separate engine with the same seed draws the same negatives.
        twin = Engine(replace(config, sampler=run.sampler))
        negatives = [n for event in events for n in twin.process(event).negatives]
        assert report["true_negative_precision"] == pytest.approx(
            truth.true_negative_precision(negatives)
        )
        # Recompute both figures from the run's own state, independently.
        expected_nmi = normalized_mutual_info(
            run.engine.communities.partition(), truth.communities
        )
        assert report["community_nmi"] == pytest.approx(expected_nmi)


def test_curve_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="curve_every must be positive, got 0"):
        compare_samplers([], ["uniform"], EngineConfig(), curve_every=0)
