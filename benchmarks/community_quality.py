"""Quality and cost of the streaming communities against batch Louvain.

Run: PYTHONPATH=. python benchmarks/community_quality.py [--data FILE --truth FILE]

Streams the bundled ml-100k sample (every rating a click, stable time order)
through `Communities`, then prints the modularity of the final partition on the
whole user-user co-click graph next to that of batch Louvain (networkx, seeded)
on the same graph, the largest community's share of users, the number of
communities with 10 or more users, and the cost per update (wall clock and CPU,
refreshes included).

``--data`` streams another logged file. With ``--truth``, the truth file of a
stream written by ``icpns-stream generate``, the reference is the modularity of
the planted partition instead of batch Louvain, which is out of reach on large
streams (a 1,000,000-click stream of 100,000 users has billions of co-click
pairs). The scale check:

    icpns-stream generate --users 100000 --items 20000 --communities 20 \
        --events 1000000 --out /tmp/clicks.jsonl
    PYTHONPATH=. python benchmarks/community_quality.py \
        --data /tmp/clicks.jsonl --truth /tmp/clicks.truth.jsonl
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import networkx as nx
import numpy as np

from icpns_stream.co_click_graph import CoClickGraph
from icpns_stream.communities import Communities
from icpns_stream.ground_truth import GroundTruth
from icpns_stream.partition_metrics import normalized_mutual_info
from icpns_stream.readers import load_replay
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["main", "stream_clicks"]

SAMPLE = Path(__file__).resolve().parents[1] / "icpns_stream" / "data" / "ml-100k.inter"


def stream_clicks(
    communities: Communities, clicks: list[tuple[UserId, ItemId, float]]
) -> dict[str, float]:
    """Feed every click to ``communities``; return timings in seconds."""
    refresh_seconds = 0.0
    longest_refresh = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for user, item, timestamp in clicks:
        # Updates that ran a refresh are timed apart to show its share.
        refreshes = communities.n_refreshes
        started = time.perf_counter()
        communities.update(user, item, timestamp)
        if communities.n_refreshes != refreshes:
            took = time.perf_counter() - started
            refresh_seconds += took
            longest_refresh = max(longest_refresh, took)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "refresh": refresh_seconds,
        "longest_refresh": longest_refresh,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE)
    parser.add_argument("--truth", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refresh-every", type=int, default=10_000)
    args = parser.parse_args()

    # Clicks in stable time order; planted communities when a truth file is given.
    started = time.perf_counter()
    events = load_replay(args.data).events
    planted: dict[UserId, CommunityId] | None = None
    if args.truth is not None:
        planted = GroundTruth.load(args.truth).communities
    clicks = [(event.user_id, event.item_id, event.timestamp) for event in events]
    graph = CoClickGraph.from_clicks((user, item) for user, item, _ in clicks)
    print(
        f"{len(clicks):,} clicks, {graph.n_users:,} users, "
        f"{graph.incidence.shape[1]:,} items (loaded in "
        f"{time.perf_counter() - started:.1f} s)"
    )

    communities = Communities(refresh_every=args.refresh_every, seed=args.seed)
    timing = stream_clicks(communities, clicks)
    per_update = 1e6 / max(len(clicks), 1)
    print(
        f"cost: {timing['wall'] * per_update:.1f} us/update wall clock, "
        f"{timing['cpu'] * per_update:.1f} us/update CPU; "
        f"{communities.n_refreshes} refreshes took {timing['refresh']:.2f} s "
        f"(longest {timing['longest_refresh']:.2f} s)"
    )

    # The reference: batch Louvain on the whole graph, or the planted partition.
    ours = graph.modularity(communities.partition())
    if planted is None:
        found = nx.community.louvain_communities(
            graph.to_networkx(), weight="weight", seed=args.seed
        )
        labels = np.zeros(graph.n_users, dtype=np.int64)
        for community, members in enumerate(found):
            labels[sorted(members)] = community
        reference, name = graph.modularity(labels), f"batch Louvain ({len(found)})"
    else:
        reference = graph.modularity(planted)
        name = f"planted ({len(set(planted.values()))})"
        nmi = normalized_mutual_info(communities.partition(), planted)
        print(f"agreement with the planted partition: NMI {nmi:.3f}")
    print(
        f"modularity: ours {ours:.4f}, {name} {reference:.4f}, "
        f"ratio {ours / reference:.3f}"
    )

    sizes = communities.sizes()
    largest = max(sizes.values())
    print(
        f"largest community share: {largest / graph.n_users:.3f} "
        f"({largest} of {graph.n_users} users)"
    )
    print(
        f"communities: {len(sizes)}, with >= 10 users: "
        f"{sum(size >= 10 for size in sizes.values())}"
    )


if __name__ == "__main__":
    main()
