"""Tests of the truth file reader and of scoring negatives against it."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from icpns_stream.events import decode_event
from icpns_stream.exceptions import InputFormatError
from icpns_stream.ground_truth import TRUTH_FORMAT, TRUTH_VERSION, GroundTruth
from icpns_stream.samplers.base import Negative
from icpns_stream.simulator import PlantedCommunitySimulator

__all__: list[str] = []

HEADER = {"format": TRUTH_FORMAT, "version": TRUTH_VERSION, "seed": 1}


def write_truth(path: Path, header: object, *records: object) -> Path:
    lines = [json.dumps(header)] + [json.dumps(record) for record in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def negative(user_id: str, item_id: str) -> Negative:
    return Negative(
        user_id=user_id,
        item_id=item_id,
        positive_item_id="i0",
        timestamp=1.0,
        community=0,
        popularity=1.0,
        probability=0.5,
        fallback=None,
    )


@pytest.mark.parametrize(
    ("events", "truth"),
    [
        ("run/events.jsonl", "run/events.truth.jsonl"),
        ("events", "events.truth.jsonl"),
        ("a.b.json", "a.b.json.truth.jsonl"),
        ("/tmp/x.jsonl", "/tmp/x.truth.jsonl"),
    ],
)
def test_path_for(events: str, truth: str) -> None:
    assert GroundTruth.path_for(events) == Path(truth)


def test_load_hand_written_file(tmp_path: Path) -> None:
    path = write_truth(
        tmp_path / "t.jsonl",
        HEADER,
        {"user_id": "u1", "community": 0, "skipped": ["i3", "i5", "i3"]},
        {"user_id": "u2", "community": 1, "skipped": []},
        {"user_id": "u3", "community": 1, "skipped": ["i5"]},
    )
    truth = GroundTruth.load(path)
    truth._check()
    assert truth.communities == {"u1": 0, "u2": 1, "u3": 1}
    assert truth.metadata == HEADER
    assert truth.n_skipped == 3
    assert truth.skipped_items("u1") == ["i3", "i5"]
    assert truth.skipped_items("u2") == [] and truth.skipped_items("nobody") == []
    assert truth.is_skipped("u3", "i5") and not truth.is_skipped("u3", "i3")
    assert not truth.is_skipped("u9", "i5") and not truth.is_skipped("u1", "i99")


def test_precision_counts_pairs_and_negatives(tmp_path: Path) -> None:
    truth = GroundTruth({"u1": 0, "u2": 1}, {"u1": ["i3", "i5"], "u2": ["i7"]})
    truth._check()
    pairs = [("u1", "i3"), ("u1", "i4"), ("u2", "i7"), ("u2", "i3"), ("u8", "i3")]
    assert truth.true_negative_precision(pairs) == pytest.approx(2 / 5)
    mixed: list[tuple[str, str] | Negative] = [
        negative("u1", "i5"),
        ("u2", "i7"),
        negative("u2", "i5"),
    ]
    assert truth.true_negative_precision(iter(mixed)) == pytest.approx(2 / 3)


def test_precision_of_nothing_is_an_error() -> None:
    truth = GroundTruth({"u1": 0}, {})
    with pytest.raises(ValueError, match="negatives is empty"):
        truth.true_negative_precision([])


@pytest.mark.parametrize("seed", range(10))
def test_precision_matches_a_set_of_pairs(seed: int) -> None:
    rng = random.Random(seed)
    users = [f"u{u}" for u in range(12)]
    items = [f"i{i}" for i in range(30)]
    skipped = {user: rng.sample(items, rng.randint(0, 10)) for user in users}
    truth = GroundTruth({user: rng.randrange(3) for user in users}, skipped)
    truth._check()
    pairs = {(user, item) for user, chosen in skipped.items() for item in chosen}
    queries = [(rng.choice(users), rng.choice(items)) for _ in range(200)]
    expected = sum(query in pairs for query in queries) / len(queries)
    assert truth.true_negative_precision(queries) == pytest.approx(expected)
    assert truth.n_skipped == len(pairs)
    for user, item in queries:
        assert truth.is_skipped(user, item) == ((user, item) in pairs)


def test_skips_of_a_user_without_community_are_refused() -> None:
    with pytest.raises(ValueError, match="user 'u2', which has no community"):
        GroundTruth({"u1": 0}, {"u2": ["i1"]})


def test_round_trip_with_the_simulator(tmp_path: Path) -> None:
    simulator = PlantedCommunitySimulator(80, 60, 3, seed=2)
    summary = simulator.write(tmp_path / "e.jsonl", 800)
    truth = GroundTruth.load(summary.truth_path)
    truth._check()
    assert truth.communities == simulator.communities()
    assert truth.n_skipped == summary.skipped_pairs
    assert truth.metadata["params"]["slate_size"] == 10

    # The clicked pairs score zero: they are never skips.
    clicked = [
        (event.user_id, event.item_id)
        for event in map(decode_event, (tmp_path / "e.jsonl").open())
    ]
    assert truth.true_negative_precision(clicked) == 0.0


def test_in_community_popular_negatives_are_truer_than_uniform(tmp_path: Path) -> None:
    # The sampler's premise, checked on the simulator: items popular in the
    # user's community that the user did not click were more often shown and
    # skipped than items drawn uniformly.
    simulator = PlantedCommunitySimulator(400, 600, 5, seed=11)
    summary = simulator.write(tmp_path / "e.jsonl", 8000)
    truth = GroundTruth.load(summary.truth_path)
    events = [decode_event(line) for line in (tmp_path / "e.jsonl").open()]
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    history: dict[str, set[str]] = defaultdict(set)
    for event in events:
        counts[truth.communities[event.user_id]][event.item_id] += 1
        history[event.user_id].add(event.item_id)

    rng = np.random.default_rng(0)
    all_items = [f"i{i}" for i in range(600)]
    popular: list[tuple[str, str]] = []
    uniform: list[tuple[str, str]] = []
    for event in events[::4]:
        user = event.user_id
        ranked = counts[truth.communities[user]]
        candidates = [item for item in ranked if item not in history[user]]
        weights = np.array([ranked[item] for item in candidates], dtype=float)
        popular.append(
            (user, candidates[rng.choice(len(candidates), p=weights / weights.sum())])
        )
        others = [item for item in all_items if item not in history[user]]
        uniform.append((user, others[rng.integers(len(others))]))
    popular_precision = truth.true_negative_precision(popular)
    uniform_precision = truth.true_negative_precision(uniform)
    assert popular_precision > 1.3 * uniform_precision
    assert uniform_precision > 0.0


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("", "line 1 is not JSON"),
        ("[1, 2]\n", "line 1 is not a JSON object"),
        ('{"format": "other", "version": 1}\n', "line 1 is not a truth header"),
        (json.dumps({**HEADER, "version": 99}) + "\n", "version 99 is not supported"),
        (json.dumps(HEADER) + "\n{oops\n", "line 2 is not JSON"),
        (json.dumps(HEADER) + '\n{"community": 1}\n', "line 2: bad user_id"),
        (
            json.dumps(HEADER) + '\n{"user_id": "u1", "community": "1"}\n',
            "line 2: community must be an integer, got '1'",
        ),
        (
            json.dumps(HEADER) + '\n{"user_id": "u1", "community": true}\n',
            "community must be an integer, got True",
        ),
        (
            json.dumps(HEADER)
            + '\n{"user_id": "u1", "community": 1, "skipped": [3]}\n',
            "line 2: skipped must be a list of item ids",
        ),
        (
            json.dumps(HEADER)
            + '\n{"user_id": "u1", "community": 1}\n'
            + '\n{"user_id": "u1", "community": 2}\n',
            "line 4: user 'u1' appears twice",
        ),
    ],
)
def test_bad_files_name_the_line(tmp_path: Path, lines: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(lines, encoding="utf-8")
    with pytest.raises(InputFormatError, match=message):
        GroundTruth.load(path)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="cannot read truth file"):
        GroundTruth.load(tmp_path / "missing.jsonl")
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps(HEADER).encode() + b'\n{"user_id": "\xe9"}\n')
    with pytest.raises(InputFormatError, match="not UTF-8"):
        GroundTruth.load(path)


def test_header_only_file_has_no_users(tmp_path: Path) -> None:
    truth = GroundTruth.load(write_truth(tmp_path / "t.jsonl", HEADER))
    truth._check()
    assert truth.communities == {} and truth.n_skipped == 0
