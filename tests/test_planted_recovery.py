"""Streaming communities recover the communities planted in a simulated stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from icpns_stream.communities import Communities
from icpns_stream.ground_truth import GroundTruth
from icpns_stream.partition_metrics import normalized_mutual_info
from icpns_stream.readers import load_replay
from icpns_stream.simulator import PlantedCommunitySimulator


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_communities_are_recovered(tmp_path: Path, seed: int) -> None:
    # 30,000 clicks of 1,000 users on 500 items in 4 planted communities.
    path = tmp_path / "planted.jsonl"
    PlantedCommunitySimulator(1_000, 500, 4, seed=seed).write(path, 30_000)
    truth = GroundTruth.load(GroundTruth.path_for(path))

    communities = Communities(refresh_every=5_000, seed=0)
    for event in load_replay(path).events:
        communities.update(event.user_id, event.item_id, event.timestamp)
    communities._check()

    nmi = normalized_mutual_info(communities.partition(), truth.communities)
    assert nmi >= 0.8
    assert communities.n_communities >= 3
