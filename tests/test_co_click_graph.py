"""Tests of the co-click graph against networkx built edge by edge."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from icpns_stream.co_click_graph import CoClickGraph


def random_clicks(seed: int, n_users: int, n_items: int, n_clicks: int) -> list:
    rng = np.random.default_rng(seed)
    users = rng.integers(n_users, size=n_clicks)
    items = rng.integers(n_items, size=n_clicks)
    return [(f"u{u}", f"i{i}") for u, i in zip(users, items, strict=True)]


def brute_graph(clicks: list) -> tuple[nx.Graph, list]:
    """Edge weight = number of items both users clicked, counted pair by pair."""
    users = list(dict.fromkeys(user for user, _ in clicks))
    items_of = {user: {item for u, item in clicks if u == user} for user in users}
    graph = nx.Graph()
    graph.add_nodes_from(range(len(users)))
    for a, b in itertools.combinations(range(len(users)), 2):
        shared = len(items_of[users[a]] & items_of[users[b]])
        if shared:
            graph.add_edge(a, b, weight=shared)
    return graph, users


@pytest.mark.parametrize("seed", range(5))
def test_edges_and_degrees_match_brute_force(seed: int) -> None:
    clicks = random_clicks(seed, n_users=12, n_items=15, n_clicks=60)
    graph = CoClickGraph.from_clicks(clicks)
    expected, users = brute_graph(clicks)
    assert graph.user_ids == users
    built = graph.to_networkx()
    assert sorted(built.edges(data="weight")) == sorted(expected.edges(data="weight"))
    assert graph.n_edges == expected.number_of_edges()
    degrees = dict(expected.degree(weight="weight"))
    assert graph.degrees().tolist() == [degrees[n] for n in range(len(users))]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("resolution", [1.0, 0.5, 2.0])
def test_modularity_matches_networkx(seed: int, resolution: float) -> None:
    clicks = random_clicks(seed, n_users=15, n_items=12, n_clicks=70)
    graph = CoClickGraph.from_clicks(clicks)
    expected, users = brute_graph(clicks)
    rng = np.random.default_rng(seed)
    labels = rng.integers(3, size=len(users)) * 7
    parts = [
        {n for n in range(len(users)) if labels[n] == c} for c in np.unique(labels)
    ]
    want = nx.community.modularity(
        expected, parts, weight="weight", resolution=resolution
    )
    assert graph.modularity(labels, resolution) == pytest.approx(want, abs=1e-12)
    by_id = {users[n]: int(labels[n]) for n in range(len(users))}
    assert graph.modularity(by_id, resolution) == pytest.approx(want, abs=1e-12)


def test_repeated_clicks_count_once() -> None:
    once = CoClickGraph([0, 1, 1], [5, 5, 6])
    twice = CoClickGraph([0, 0, 1, 1, 1], [5, 5, 5, 6, 5])
    assert (once.incidence != twice.incidence).nnz == 0
    assert twice.degrees().tolist() == [1, 1]


def test_modularity_without_edges_is_zero() -> None:
    graph = CoClickGraph([0, 1], [0, 1])
    assert graph.n_edges == 0
    assert graph.modularity([0, 1]) == 0.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 4])
def test_top_neighbour_graph_matches_brute_force(seed: int, k: int) -> None:
    clicks = random_clicks(seed, n_users=14, n_items=10, n_clicks=50)
    graph = CoClickGraph.from_clicks(clicks)
    full, _ = brute_graph(clicks)

    # Each user ranks its neighbours by weight, ties to the lower index.
    expected: set[frozenset[int]] = set()
    for node in full:
        ranked = sorted(full[node], key=lambda v: (-full[node][v]["weight"], v))
        expected.update(frozenset((node, v)) for v in ranked[:k])
    sparse = graph.top_neighbour_graph(k)
    assert {frozenset(edge) for edge in sparse.edges} == expected
    for a, b, weight in sparse.edges(data="weight"):
        assert weight == full[a][b]["weight"]
    assert list(sparse.nodes) == sorted(sparse.nodes)


def test_two_disjoint_groups_have_the_highest_modularity_split() -> None:
    clicks = [(u, i) for u in "abc" for i in "xy"] + [
        (u, i) for u in "def" for i in "pq"
    ]
    graph = CoClickGraph.from_clicks(clicks)
    split = {"a": 0, "b": 0, "c": 0, "d": 1, "e": 1, "f": 1}
    mixed = {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0, "f": 1}
    assert graph.modularity(split) == pytest.approx(0.5)
    assert graph.modularity(mixed) < 0
    assert graph.modularity(dict.fromkeys(split, 3)) == pytest.approx(0.0)


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="one length"):
        CoClickGraph([0, 1], [0])
    with pytest.raises(ValueError, match="non-negative"):
        CoClickGraph([0, -1], [0, 0])
    graph = CoClickGraph([0, 1], [0, 0])
    with pytest.raises(ValueError, match="from_clicks"):
        graph.modularity({"a": 0})
    with pytest.raises(ValueError, match="one community per user"):
        graph.modularity([0])
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        graph.top_neighbour_graph(0)
    named = CoClickGraph.from_clicks([("a", "x"), ("b", "x")])
    with pytest.raises(ValueError, match="no community for user 'b'"):
        named.modularity({"a": 0})
