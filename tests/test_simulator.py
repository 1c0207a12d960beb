"""Tests of the planted-community click simulator and the files it writes."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

from icpns_stream import simulator as simulator_module
from icpns_stream.events import decode_event
from icpns_stream.ground_truth import GroundTruth
from icpns_stream.partition_metrics import normalized_mutual_info
from icpns_stream.simulator import PlantedCommunitySimulator, _first_distinct

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[1]


def small(seed: int = 3, **options: Any) -> PlantedCommunitySimulator:
    simulator = PlantedCommunitySimulator(300, 500, 4, seed=seed, **options)
    simulator._check()
    return simulator


def clicked_items(path: Path) -> dict[str, set[str]]:
    items: dict[str, set[str]] = defaultdict(set)
    for line in path.read_text().splitlines():
        event = decode_event(line)
        items[event.user_id].add(event.item_id)
    return items


def reference_stream(
    simulator: PlantedCommunitySimulator, n_events: int
) -> tuple[list[str], dict[str, set[str]], int]:
    """Replay the simulator's own draws one slot at a time, in plain Python.

    Returns the event lines, the skipped items per user and the slate count.
    """
    rng = np.random.default_rng(simulator._stream_seed)
    lines: list[str] = []
    shown: set[tuple[int, int]] = set()
    clicked: set[tuple[int, int]] = set()
    clock = simulator.start_time
    slates = 0
    while len(lines) < n_events:
        users, items, shown_mask, clicks, gaps = simulator._draw_batch(rng)

        # Times are the batch's start plus a running sum of the batch's gaps.
        batch_start = clock
        offset = 0.0
        for row in range(len(users)):
            if len(lines) == n_events:
                break
            slates += 1
            for col in range(items.shape[1]):
                if not shown_mask[row, col]:
                    continue
                pair = (int(users[row]), int(items[row, col]))
                if clicks[row, col]:
                    # Clicks after the last event never happen, and are not skips.
                    if len(lines) == n_events:
                        continue
                    if pair not in clicked:
                        clicked.add(pair)
                        offset += float(gaps[row, col])
                        clock = batch_start + offset
                        lines.append(
                            f'{{"user_id":"u{pair[0]}","item_id":"i{pair[1]}",'
                            f'"timestamp":{clock:.3f},"event_id":"e{len(lines)}"}}'
                        )
                shown.add(pair)
    skipped: dict[str, set[str]] = defaultdict(set)
    for user, item in shown - clicked:
        skipped[f"u{user}"].add(f"i{item}")
    return lines, skipped, slates


@pytest.mark.parametrize(("seed", "n_events"), [(0, 1), (1, 777), (2, 5000), (3, 0)])
def test_files_match_slot_by_slot_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, n_events: int
) -> None:
    # A tiny merge threshold makes the shown-pair merging run many times.
    monkeypatch.setattr(simulator_module, "_COMPACT_AT", 500)
    simulator = small(seed)
    summary = simulator.write(tmp_path / "e.jsonl", n_events)
    lines, skipped, slates = reference_stream(simulator, n_events)

    assert (tmp_path / "e.jsonl").read_text().splitlines() == lines
    truth = GroundTruth.load(tmp_path / "e.truth.jsonl")
    truth._check()
    assert summary.slates == slates == truth.metadata["slates"]
    assert summary.skipped_pairs == sum(len(s) for s in skipped.values())
    for user in truth.communities:
        assert set(truth.skipped_items(user)) == skipped.get(user, set())


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    paths = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        small(seed).write(tmp_path / f"{name}.jsonl", 3000)
        paths.append(tmp_path / f"{name}.jsonl")
    a, b, c = (p.read_bytes() for p in paths)
    truth_a, truth_b, truth_c = (GroundTruth.path_for(p).read_bytes() for p in paths)
    assert a == b and truth_a == truth_b
    assert a != c and truth_a != truth_c


def test_writing_twice_and_after_pickling_gives_same_bytes(tmp_path: Path) -> None:
    simulator = small(8)
    copy = pickle.loads(pickle.dumps(simulator))
    simulator.write(tmp_path / "one.jsonl", 2000)
    simulator.write(tmp_path / "two.jsonl", 2000)
    copy.write(tmp_path / "three.jsonl", 2000)
    one = (tmp_path / "one.jsonl").read_bytes()
    assert one == (tmp_path / "two.jsonl").read_bytes()
    assert one == (tmp_path / "three.jsonl").read_bytes()


def test_bytes_do_not_depend_on_hash_seed(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from icpns_stream.simulator import PlantedCommunitySimulator as P\n"
        "P(200, 300, 3, seed=4).write(sys.argv[1], 1500)\n"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"h{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        outputs.append(out.read_bytes() + GroundTruth.path_for(out).read_bytes())
    assert outputs[0] == outputs[1]


def test_shorter_stream_is_a_prefix(tmp_path: Path) -> None:
    simulator = small(9)
    simulator.write(tmp_path / "short.jsonl", 1234)
    simulator.write(tmp_path / "long.jsonl", 4321)
    short = (tmp_path / "short.jsonl").read_text().splitlines()
    long = (tmp_path / "long.jsonl").read_text().splitlines()
    assert len(short) == 1234 and long[:1234] == short


def test_every_line_honours_the_event_contract(tmp_path: Path) -> None:
    simulator = small(1)
    summary = simulator.write(tmp_path / "e.jsonl", 4000)
    events = [decode_event(line) for line in (tmp_path / "e.jsonl").open("rb")]

    assert len(events) == summary.events == 4000
    assert [e.event_id for e in events] == [f"e{n}" for n in range(4000)]
    times = [e.timestamp for e in events]
    assert all(later >= earlier for earlier, later in itertools.pairwise(times))
    assert times[0] > simulator.start_time
    assert (summary.first_timestamp, summary.last_timestamp) == (times[0], times[-1])
    assert {e.user_id for e in events} <= {f"u{u}" for u in range(300)}
    assert {e.item_id for e in events} <= {f"i{i}" for i in range(500)}

    # A user clicks an item at most once.
    pairs = Counter((e.user_id, e.item_id) for e in events)
    assert max(pairs.values()) == 1
    assert summary.active_users == len({e.user_id for e in events})


def test_event_gaps_average_mean_gap(tmp_path: Path) -> None:
    small(2, mean_gap=30.0).write(tmp_path / "e.jsonl", 5000)
    times = [decode_event(line).timestamp for line in (tmp_path / "e.jsonl").open()]
    mean_gap = (times[-1] - 1_700_000_000.0) / len(times)
    assert 27.0 < mean_gap < 33.0


def test_truth_agrees_with_events(tmp_path: Path) -> None:
    simulator = small(4)
    summary = simulator.write(tmp_path / "e.jsonl", 5000)
    truth = GroundTruth.load(summary.truth_path)
    truth._check()
    clicked = clicked_items(tmp_path / "e.jsonl")

    # No pair is both clicked and skipped, and every user keeps its community.
    for user, items in clicked.items():
        assert not items & set(truth.skipped_items(user))
    assert truth.communities == simulator.communities()
    assert truth.n_skipped == summary.skipped_pairs > 0
    header = truth.metadata
    assert (header["users"], header["items"], header["communities"]) == (300, 500, 4)
    assert header["events"] == 5000 and header["seed"] == 4
    assert header["shown_pairs"] == summary.shown_pairs
    assert summary.shown_pairs == summary.skipped_pairs + 5000


def test_users_share_far_more_items_inside_their_community(tmp_path: Path) -> None:
    simulator = small(3)
    simulator.write(tmp_path / "e.jsonl", 6000)
    items = clicked_items(tmp_path / "e.jsonl")
    community = simulator.communities()
    inside: list[float] = []
    across: list[float] = []
    for u, v in itertools.combinations(sorted(items), 2):
        jaccard = len(items[u] & items[v]) / len(items[u] | items[v])
        (inside if community[u] == community[v] else across).append(jaccard)
    assert np.mean(inside) > 2.5 * np.mean(across)


def test_louvain_recovers_the_planted_communities(tmp_path: Path) -> None:
    simulator = small(2)
    simulator.write(tmp_path / "e.jsonl", 6000)
    graph = nx.Graph()
    for user, items in clicked_items(tmp_path / "e.jsonl").items():
        graph.add_edges_from((user, "item:" + item) for item in items)
    blocks = nx.community.louvain_communities(graph, seed=0)
    found = {
        node: label
        for label, block in enumerate(blocks)
        for node in block
        if not node.startswith("item:")
    }
    planted = simulator.communities()
    assert normalized_mutual_info(planted, found) > 0.6

    # The same blocks against a shuffled planting agree hardly at all.
    rng = np.random.default_rng(0)
    shuffled = dict(zip(planted, rng.permutation(list(planted.values())), strict=True))
    assert normalized_mutual_info(shuffled, found) < 0.1


def test_community_sizes_vary_and_activity_is_skewed(tmp_path: Path) -> None:
    simulator = PlantedCommunitySimulator(2000, 800, 6, seed=1)
    sizes = simulator.community_sizes()
    assert sizes.sum() == 2000 and sizes.min() >= 1
    assert sizes.max() > 1.5 * sizes.min()

    simulator.write(tmp_path / "e.jsonl", 20_000)
    per_user = Counter(
        decode_event(line).user_id for line in (tmp_path / "e.jsonl").open()
    )
    counts = sorted(per_user.values(), reverse=True)
    assert sum(counts[:200]) > 0.3 * sum(counts)


def test_every_community_gets_a_user_even_when_sizes_are_extreme() -> None:
    simulator = PlantedCommunitySimulator(10, 5, 10, seed=0, size_concentration=0.01)
    simulator._check()
    assert simulator.slate_size == 5
    assert simulator.community_sizes().tolist() == [1] * 10


def test_slates_follow_the_community_zipf_law() -> None:
    # With no global or random share, a slate's first candidate is a Zipf draw
    # over the user's community ranking.
    simulator = small(6, global_share=0.0, random_share=0.0)
    rng = np.random.default_rng(0)
    ranks: list[int] = []
    for _ in range(5):
        users, items, shown, _, _ = simulator._draw_batch(rng)
        assert shown[:, 0].all()
        order = simulator._community_order[simulator.community_of[users]]
        ranks.extend(np.argmax(order == items[:, :1], axis=1).tolist())
    weights = 1.0 / np.arange(1, 501)
    expected = weights / weights.sum()
    observed = np.bincount(ranks, minlength=500) / len(ranks)
    assert np.abs(observed[:5] - expected[:5]).max() < 0.015


def test_random_share_one_shows_items_uniformly() -> None:
    simulator = small(6, random_share=1.0)
    _, items, _, _, _ = simulator._draw_batch(np.random.default_rng(1))
    counts = np.bincount(items.ravel(), minlength=500)
    assert counts.max() < 3 * counts.mean()


def test_slates_hold_distinct_items_up_to_slate_size() -> None:
    simulator = small(7, slate_size=6)
    users, items, shown, clicks, gaps = simulator._draw_batch(np.random.default_rng(2))
    assert (shown.sum(axis=1) <= 6).all() and shown.sum(axis=1).mean() > 5.9
    assert not (clicks & ~shown).any()
    assert (gaps > 0).all()
    for row in range(len(users)):
        row_items = items[row][shown[row]]
        assert len(set(row_items.tolist())) == len(row_items)


@pytest.mark.parametrize("seed", range(5))
def test_first_distinct_matches_a_python_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items = rng.integers(0, 6, (40, 12))
    limit = int(rng.integers(1, 8))
    expected = np.zeros(items.shape, dtype=bool)
    for row in range(items.shape[0]):
        seen: set[int] = set()
        for col in range(items.shape[1]):
            value = int(items[row, col])
            if value not in seen and len(seen) < limit:
                expected[row, col] = True
            seen.add(value)
    assert np.array_equal(_first_distinct(items, limit), expected)


def test_progress_reaches_the_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    small(1).write(
        tmp_path / "e.jsonl", 9000, on_progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (9000, 9000)
    assert len(calls) > 2
    done = [d for d, _ in calls]
    assert done == sorted(done) and all(t == 9000 for _, t in calls)


def test_zero_events_writes_every_user_with_no_skip(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    summary = small(1).write(
        tmp_path / "e.jsonl", 0, on_progress=lambda d, t: calls.append((d, t))
    )
    assert (tmp_path / "e.jsonl").read_bytes() == b""
    truth = GroundTruth.load(summary.truth_path)
    assert len(truth.communities) == 300 and truth.n_skipped == 0
    assert summary.slates == 0 and calls == [(0, 0)]


def test_explicit_truth_path(tmp_path: Path) -> None:
    summary = small(1).write(tmp_path / "e.jsonl", 50, truth_path=tmp_path / "t.json")
    assert summary.truth_path == tmp_path / "t.json"
    assert GroundTruth.load(tmp_path / "t.json").n_skipped == summary.skipped_pairs
    assert not (tmp_path / "e.truth.jsonl").exists()


def test_summary_is_json_ready(tmp_path: Path) -> None:
    summary = small(1).write(tmp_path / "e.jsonl", 50)
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["events"] == 50 and data["truth_path"] == str(summary.truth_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_users": 0}, "n_users must be at least 1, got 0"),
        ({"n_items": 2.5}, "n_items must be an integer, got 2.5"),
        ({"n_communities": 400}, "n_communities must be at most n_users"),
        ({"n_communities": True}, "n_communities must be an integer"),
        ({"seed": -1}, "seed must be at least 0, got -1"),
        ({"slate_size": 501}, "slate_size must be at most n_items"),
        ({"zipf_exponent": -1.0}, "zipf_exponent must be in"),
        ({"global_share": 1.5}, "global_share must be in"),
        ({"random_share": float("nan")}, "random_share must be in"),
        ({"size_concentration": 0.0}, "size_concentration must be positive"),
        ({"activity_sigma": -0.1}, "activity_sigma must be in"),
        ({"latent_dim": 0}, "latent_dim must be at least 1"),
        ({"click_bias": float("inf")}, "click_bias must be in"),
        ({"mean_gap": 0.0}, "mean_gap must be positive, got 0.0"),
        ({"start_time": -5.0}, "start_time must be a Unix time in seconds from 0"),
        # The event contract rejects clicks ahead of the clock.
        ({"start_time": 4_000_000_000.0}, "start_time must be a Unix time in"),
        ({"start_time": time.time() + 3_600}, "from 0 to now, got"),
    ],
)
def test_bad_parameters_are_named(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"n_users": 300, "n_items": 500, "n_communities": 4}
    arguments.update(options)
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        PlantedCommunitySimulator(**arguments)


def test_bad_event_counts_are_named(tmp_path: Path) -> None:
    simulator = PlantedCommunitySimulator(3, 2, 1, seed=0, slate_size=2)
    with pytest.raises(ValueError, match="n_events must be at least 0, got -1"):
        simulator.write(tmp_path / "e.jsonl", -1)
    with pytest.raises(ValueError, match=r"n_events must be at most .* \(6\), got 7"):
        simulator.write(tmp_path / "e.jsonl", 7)


def test_a_stream_expected_to_end_in_the_future_is_refused(tmp_path: Path) -> None:
    # 50 events 100 s apart from 1,000 s ago would end an hour from now.
    simulator = small(start_time=time.time() - 1_000, mean_gap=100.0)
    with pytest.raises(ValueError, match="n_events must be at most 10 for clicks"):
        simulator.write(tmp_path / "e.jsonl", 50)
    assert not (tmp_path / "e.jsonl").exists()

    # As many as fit end in the past, and every line decodes.
    simulator.write(tmp_path / "e.jsonl", 5)
    lines = (tmp_path / "e.jsonl").read_text().splitlines()
    assert all(decode_event(line).timestamp < time.time() for line in lines)


def test_a_stream_carried_into_the_future_by_chance_stops(tmp_path: Path) -> None:
    # One event, expected to land now, ten days after the start: seed 9 draws
    # a gap of 0.40 mean gaps, seed 0 one of 1.53, five days in the future.
    ten_days = 864_000.0
    path = tmp_path / "e.jsonl"

    def one_event_world(seed: int) -> PlantedCommunitySimulator:
        start_time = time.time() - ten_days
        return PlantedCommunitySimulator(
            30, 20, 2, seed=seed, mean_gap=ten_days, start_time=start_time
        )

    one_event_world(9).write(path, 1)
    assert decode_event(path.read_text()).timestamp < time.time()
    with pytest.raises(ValueError, match="into the future by event 1 of 1"):
        one_event_world(0).write(path, 1)


def test_a_tiny_world_can_be_clicked_out(tmp_path: Path) -> None:
    # Every (user, item) pair clicked once: nothing is left to skip.
    simulator = PlantedCommunitySimulator(3, 2, 1, seed=0, slate_size=2, click_bias=3.0)
    summary = simulator.write(tmp_path / "e.jsonl", 6)
    assert summary.skipped_pairs == 0 and summary.shown_pairs == 6
    assert len(set(clicked_items(tmp_path / "e.jsonl")["u0"])) == 2
