"""User communities on the co-click graph, updated at every click."""

from __future__ import annotations

import networkx as nx
import numpy as np

from icpns_stream.co_click_graph import CoClickGraph
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["Communities"]

# Growable arrays start this large and double when full.
_INITIAL_CAPACITY = 16


class Communities:
    """Streaming user communities: a label step per click, Louvain now and then.

    Users are linked by the number of distinct items both clicked (the co-click
    graph of :class:`~icpns_stream.co_click_graph.CoClickGraph`), and the
    partition aims at high modularity on that graph.

    At every click the clicking user takes the community that most raises the
    modularity, given the communities of everybody else: the label propagation
    rule of Barber and Clark (LPAm), which is also the local move of Louvain.
    Unlike plain label propagation it weighs each community by its total degree,
    so the largest community does not absorb everyone. The rule needs, per
    community, the user's co-click weight into it and the community's total
    degree. The first is the sum over the user's items of their per-community
    user counts, the second is kept up to date at every click, so the step never
    projects the graph. A new user is placed at its first click, and a user
    whose taste drifts moves at once.

    The step alone cannot create communities (one community is a fixed point),
    so the structure comes from periodic refreshes:

    1. Louvain (networkx, seeded) on a bounded graph: the most recently active
       users of the last clicks, each keeping its heaviest co-click edges.
    2. Each new community takes the id of the old one that supplied more than
       half of its members (greedily, largest overlap first), so ids carry over
       while membership does; the others get ids never used before.
    3. The refreshed users repeat the step against the whole graph, which
       recovers the modularity the sparse graph lost.
    4. Pairs of communities merge while a merge raises the modularity (the
       coarsening level of Louvain, on exact inter-community weights).

    Parameters
    ----------
    refresh_every
        Clicks between two refreshes once the stream is long.
    seed
        Seed of the refreshes (Louvain's node order and the repeated steps).
    first_refresh
        Clicks before the first refresh. Later gaps double until they reach
        ``refresh_every``, so communities exist early at a bounded cost. Until
        then every user is in community 0.
    window
        The refresh graph is built from the (user, item) pairs of the last
        ``window`` clicks.
    neighbours
        In the refresh graph each user keeps its ``neighbours`` heaviest co-click
        edges (an edge stays when either end keeps it).
    max_item_users
        In the refresh graph an item links only its ``max_item_users`` most
        recent users, which bounds the projection cost of very popular items.
    refresh_users
        The refresh graph holds at most this many users, the most recently
        active of the window. Users outside it keep their community.
    resolution
        Modularity resolution of the step, Louvain and the merges; above 1
        favours smaller communities.
    polish_sweeps
        How many times each refreshed user repeats the step after Louvain.
    min_size
        A Louvain community smaller than this is not created; its users keep
        their community until the repeated steps place them.
    max_communities
        At most this many communities: a refresh creates only the largest
        Louvain communities, and after it the smallest communities beyond the
        cap join the kept community that costs the least modularity. This keeps
        the step's cost, linear in the number of communities, bounded at high
        resolution.

    Attributes
    ----------
    n_clicks
        Clicks seen.
    n_refreshes
        Refreshes done.

    Notes
    -----
    A step costs O(n_u * C) in numpy for a user with n_u distinct items and C
    communities: one gather of the user's rows of the item-community count
    matrix. A new (user, item) pair adds O(C). A refresh costs, with W =
    ``window`` and R = ``refresh_users``: O(W log W) to pick the pairs, at most
    W * ``max_item_users`` products for the projection, networkx Louvain on at
    most R * ``neighbours`` edges, ``polish_sweeps`` steps per refreshed user,
    and O(I * C^2) for the merges over I items. None of it grows with the
    stream's length except the merges' relabelling, O(users) per merge, so the
    cost per click is bounded. Memory is O(pairs + I * C + W).

    Measured with ``benchmarks/community_quality.py`` on 2 shared cores: on
    ml-100k in time order, 29 to 41 us of CPU per click with its 12 refreshes
    included, and a final modularity of 0.0985 against 0.0982 for batch Louvain
    on the whole co-click graph. On a simulated stream of 1,000,000 clicks
    (88,115 active users, 20,000 items, 20 planted communities), 50 to 56 us per
    click, flat from the first 100,000 clicks to the last, each refresh about
    0.3 s, and a modularity of 0.326 against 0.313 for the planted partition.

    The click's timestamp is not used: windows count clicks, so the cost of a
    refresh does not depend on how bursty the stream is.

    References
    ----------
    M. J. Barber and J. W. Clark, "Detecting network communities by propagating
    labels under constraints", Phys. Rev. E 80 (2009) 026129.
    V. D. Blondel, J.-L. Guillaume, R. Lambiotte and E. Lefebvre, "Fast
    unfolding of communities in large networks", J. Stat. Mech. (2008) P10008.

    Examples
    --------
    Two groups of users who never share an item end in two communities:

    >>> communities = Communities(refresh_every=8, first_refresh=8, seed=0)
    >>> clicks = [(u, i) for u in "abcd" for i in "xyz"]
    >>> clicks += [(u, i) for u in "efgh" for i in "pqr"]
    >>> for n, (user, item) in enumerate(clicks):
    ...     _ = communities.update(user, item, float(n))
    >>> communities.n_communities, communities.sizes()
    (2, {0: 4, 1: 4})
    >>> communities.community_of("a") == communities.community_of("d")
    True
    >>> communities.community_of("a") == communities.community_of("e")
    False
    """

    def __init__(
        self,
        refresh_every: int = 10_000,
        seed: int = 0,
        *,
        first_refresh: int = 1_000,
        window: int = 50_000,
        neighbours: int = 10,
        max_item_users: int = 200,
        refresh_users: int = 2_000,
        resolution: float = 1.0,
        polish_sweeps: int = 2,
        min_size: int = 2,
        max_communities: int = 64,
    ) -> None:
        for name, value in (
            ("refresh_every", refresh_every),
            ("first_refresh", first_refresh),
            ("window", window),
            ("neighbours", neighbours),
            ("max_item_users", max_item_users),
            ("refresh_users", refresh_users),
            ("min_size", min_size),
            ("max_communities", max_communities),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if polish_sweeps < 0:
            raise ValueError(f"polish_sweeps must be non-negative, got {polish_sweeps}")
        if not resolution > 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.refresh_every = refresh_every
        self.seed = seed
        self.first_refresh = first_refresh
        self.window = window
        self.neighbours = neighbours
        self.max_item_users = max_item_users
        self.refresh_users = refresh_users
        self.resolution = float(resolution)
        self.polish_sweeps = polish_sweeps
        self.min_size = min_size
        self.max_communities = max_communities

        self.n_clicks = 0
        self.n_refreshes = 0
        self._next_refresh = first_refresh
        self._gap = first_refresh

        # Users: ids, distinct items (growable arrays) and current column.
        self._user_ids: list[UserId] = []
        self._user_index: dict[UserId, int] = {}
        self._items: list[np.ndarray] = []
        self._n_items: list[int] = []
        self._label = np.full(_INITIAL_CAPACITY, -1, dtype=np.int64)

        # Items: distinct users of each, and per-community user counts by column.
        self._item_index: dict[ItemId, int] = {}
        self._item_users = np.zeros(_INITIAL_CAPACITY, dtype=np.int64)
        self._counts = np.zeros((_INITIAL_CAPACITY, 1), dtype=np.int64)

        # Communities live in reusable columns; ids are never reused.
        self._column_id = np.full(1, -1, dtype=np.int64)
        self._id_column: dict[CommunityId, int] = {}
        self._members = np.zeros(1, dtype=np.int64)
        self._totals = np.zeros(1, dtype=np.int64)
        self._two_m = 0
        self._next_id = 0

        # Ring buffer of the last ``window`` clicks for the refresh graph.
        self._recent_users = np.zeros(window, dtype=np.int64)
        self._recent_items = np.zeros(window, dtype=np.int64)

    @property
    def n_communities(self) -> int:
        """Number of communities with at least one user."""
        return len(self._id_column)

    def update(
        self, user_id: UserId, item_id: ItemId, timestamp: float
    ) -> CommunityId | None:
        """Record a click, place its user, refresh if due; return its community.

        ``timestamp`` (Unix seconds) is accepted for the engine's common call
        and not used. The result is never None: the first user founds
        community 0.
        """
        user = self._user_index.get(user_id)
        if user is None:
            user = self._add_user(user_id)
        item = self._item_index.get(item_id)
        if item is None:
            item = self._add_item(item_id)

        # The ring buffer keeps the refresh graph to the recent clicks.
        slot = self.n_clicks % self.window
        self._recent_users[slot] = user
        self._recent_items[slot] = item
        self.n_clicks += 1

        # Only a first click of this user on this item changes the graph.
        n = self._n_items[user]
        if not (self._items[user][:n] == item).any():
            self._add_pair(user, item)
        self._step(user)

        if self.n_clicks >= self._next_refresh:
            self._refresh()
        return int(self._column_id[self._label[user]])

    def community_of(self, user_id: UserId) -> CommunityId | None:
        """Return the user's community, or None for a user never seen."""
        user = self._user_index.get(user_id)
        if user is None:
            return None
        return int(self._column_id[self._label[user]])

    def sizes(self) -> dict[CommunityId, int]:
        """Return the number of users of each community, by increasing id."""
        return {
            community: int(self._members[column])
            for community, column in sorted(self._id_column.items())
        }

    def partition(self) -> dict[UserId, CommunityId]:
        """Return every user's community, users in order of first click."""
        ids = self._column_id[self._label[: len(self._user_ids)]].tolist()
        return dict(zip(self._user_ids, ids, strict=True))

    def _add_user(self, user_id: UserId) -> int:
        user = len(self._user_ids)
        self._user_ids.append(user_id)
        self._user_index[user_id] = user
        self._items.append(np.zeros(4, dtype=np.int64))
        self._n_items.append(0)
        if user == self._label.size:
            grown = np.full(2 * user, -1, dtype=np.int64)
            grown[:user] = self._label
            self._label = grown
        return user

    def _add_item(self, item_id: ItemId) -> int:
        item = len(self._item_index)
        self._item_index[item_id] = item
        if item == self._item_users.size:
            self._item_users = np.concatenate(
                [self._item_users, np.zeros_like(self._item_users)]
            )
            self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
        return item

    def _add_pair(self, user: int, item: int) -> None:
        # Each earlier user of the item gains one unit of degree in its community,
        # and the user gains one per earlier user.
        earlier = int(self._item_users[item])
        self._totals += self._counts[item]
        self._two_m += 2 * earlier
        column = self._label[user]
        if column >= 0:
            self._totals[column] += earlier
            self._counts[item, column] += 1
        self._item_users[item] += 1

        # The user's item list doubles when full, so appends cost O(1) amortised.
        n = self._n_items[user]
        items = self._items[user]
        if n == items.size:
            items = np.concatenate([items, np.zeros_like(items)])
            self._items[user] = items
        items[n] = item
        self._n_items[user] = n + 1

    def _step(self, user: int) -> None:
        items = self._items[user][: self._n_items[user]]
        old = int(self._label[user])

        # The first user of all founds the first community.
        if not self._id_column:
            self._move(user, items, 0, -1, self._new_column())
            return

        # Co-click weight into each community, the user's own clicks taken out.
        weights = self._counts[items].sum(axis=0)
        totals = self._totals.copy()
        if old >= 0:
            weights[old] -= items.size
        degree = int(weights.sum())
        if old >= 0:
            totals[old] -= degree

        # Modularity gain of joining each community, scaled by 2m to stay exact.
        score = weights * float(self._two_m) - self.resolution * degree * totals
        score[self._column_id < 0] = -np.inf
        best = score.max()

        # Ties keep the user where it is, else go to the oldest community.
        if old >= 0 and score[old] == best:
            return
        tied = np.flatnonzero(score == best)
        new = int(tied[np.argmin(self._column_id[tied])])
        self._move(user, items, degree, old, new)
        if old >= 0 and self._members[old] == 0:
            self._retire(old)

    def _move(
        self, user: int, items: np.ndarray, degree: int, old: int, new: int
    ) -> None:
        # Counts and totals follow the user; an emptied column is retired later.
        if old >= 0:
            self._counts[items, old] -= 1
            self._totals[old] -= degree
            self._members[old] -= 1
        self._counts[items, new] += 1
        self._totals[new] += degree
        self._members[new] += 1
        self._label[user] = new

    def _new_column(self) -> int:
        free = np.flatnonzero(self._column_id < 0)
        if free.size:
            column = int(free[0])
        else:
            # No free column: double the community axis of every array.
            column = self._column_id.size
            width = max(column, 1)
            self._column_id = np.concatenate(
                [self._column_id, np.full(width, -1, dtype=np.int64)]
            )
            self._members = np.concatenate([self._members, np.zeros(width, np.int64)])
            self._totals = np.concatenate([self._totals, np.zeros(width, np.int64)])
            self._counts = np.concatenate(
                [self._counts, np.zeros((self._counts.shape[0], width), np.int64)],
                axis=1,
            )
        self._column_id[column] = self._next_id
        self._id_column[self._next_id] = column
        self._next_id += 1
        return column

    def _retire(self, column: int) -> None:
        del self._id_column[int(self._column_id[column])]
        self._column_id[column] = -1

    def _refresh(self) -> None:
        self.n_refreshes += 1
        self._gap = min(2 * self._gap, self.refresh_every)
        self._next_refresh = self.n_clicks + self._gap
        users, parts = self._louvain()

        # Match new communities to old ones by overlap, largest overlaps first.
        labels = self._label
        candidates = []
        for index, part in enumerate(parts):
            columns, overlap = np.unique(labels[part], return_counts=True)
            for column, count in zip(columns.tolist(), overlap.tolist(), strict=True):
                if 2 * count > len(part):
                    candidates.append((-count, index, column))
        target: dict[int, int] = {}
        taken: set[int] = set()
        for _, index, column in sorted(candidates):
            if index not in target and column not in taken:
                target[index] = column
                taken.add(column)
        for index in range(len(parts)):
            if index not in target:
                target[index] = self._new_column()

        # Move the users whose community changed, then drop emptied communities.
        for index, part in enumerate(parts):
            new = target[index]
            for user in part:
                old = int(labels[user])
                if old != new:
                    items = self._items[user][: self._n_items[user]]
                    degree = int(self._item_users[items].sum()) - items.size
                    self._move(user, items, degree, old, new)
        for column in np.flatnonzero((self._members == 0) & (self._column_id >= 0)):
            self._retire(int(column))

        # Steps against the whole graph recover what the sparse graph lost.
        rng = np.random.default_rng([self.seed, self.n_refreshes])
        for _ in range(self.polish_sweeps):
            for user in rng.permutation(users).tolist():
                self._step(user)
        self._merge()
        self._compact()

    def _compact(self) -> None:
        # Live communities move to the first columns, in id order, and the
        # community axis shrinks to them: every step gathers only live columns.
        live = np.flatnonzero(self._column_id >= 0)
        live = live[np.argsort(self._column_id[live])]
        position = np.full(self._column_id.size, -1, dtype=np.int64)
        position[live] = np.arange(live.size)
        n_users = len(self._user_ids)
        self._label[:n_users] = position[self._label[:n_users]]
        self._counts = np.ascontiguousarray(self._counts[:, live])
        self._column_id = self._column_id[live]
        self._members = self._members[live]
        self._totals = self._totals[live]
        self._id_column = {int(c): n for n, c in enumerate(self._column_id.tolist())}

    def _merge(self) -> None:
        # Live communities by decreasing size, then age. The co-click weight
        # between two of them is, per item, the product of their user counts,
        # summed: a float matmul.
        live = np.flatnonzero(self._column_id >= 0)
        live = live[np.lexsort((self._column_id[live], -self._members[live]))]
        per_item = self._counts[: len(self._item_index)].astype(np.float64)
        totals = self._totals.astype(np.float64)
        two_m = float(self._two_m)

        # Beyond the cap, the smallest communities join the kept one they gain
        # the most (or lose the least) modularity by joining.
        live, excess = live[: self.max_communities], live[self.max_communities :]
        if excess.size:
            weight = per_item[:, excess].T @ per_item[:, live]
            gain = weight * two_m - self.resolution * np.outer(
                totals[excess], totals[live]
            )
            targets = live[np.argmax(gain, axis=1)]
            for gone, keep in zip(excess.tolist(), targets.tolist(), strict=True):
                self._fold(gone, keep)
            per_item = self._counts[: len(self._item_index)].astype(np.float64)
            totals = self._totals.astype(np.float64)
        per_item, totals = per_item[:, live], totals[live]
        between = per_item.T @ per_item
        alive = np.ones(live.size, dtype=bool)

        # Merging a and b gains modularity iff w_ab * 2m > resolution * d_a * d_b.
        while alive.sum() > 1:
            gain = between * two_m - self.resolution * np.outer(totals, totals)
            np.fill_diagonal(gain, -np.inf)
            gain[~alive, :] = -np.inf
            gain[:, ~alive] = -np.inf
            a, b = np.unravel_index(int(np.argmax(gain)), gain.shape)
            if gain[a, b] <= 0:
                break

            # The larger community (then the older) keeps its id.
            keep, gone = int(live[a]), int(live[b])
            if (self._members[gone], -self._column_id[gone]) > (
                self._members[keep],
                -self._column_id[keep],
            ):
                a, b, keep, gone = b, a, gone, keep
            between[a] += between[b]
            between[:, a] += between[:, b]
            totals[a] += totals[b]
            alive[b] = False
            self._fold(gone, keep)

    def _fold(self, gone: int, keep: int) -> None:
        # Every user of ``gone`` joins ``keep`` with its counts and degrees.
        labels = self._label[: len(self._user_ids)]
        labels[labels == gone] = keep
        self._counts[:, keep] += self._counts[:, gone]
        self._counts[:, gone] = 0
        self._totals[keep] += self._totals[gone]
        self._totals[gone] = 0
        self._members[keep] += self._members[gone]
        self._members[gone] = 0
        self._retire(gone)

    def _louvain(self) -> tuple[np.ndarray, list[list[int]]]:
        # The window's distinct pairs, each at its latest click.
        length = min(self.n_clicks, self.window)
        slots = np.arange(self.n_clicks - length, self.n_clicks) % self.window
        users = self._recent_users[slots]
        items = self._recent_items[slots]
        keys = users * len(self._item_index) + items
        _, last = np.unique(keys[::-1], return_index=True)
        position = length - 1 - last

        # Only the most recently active users join, which bounds Louvain's graph.
        pair_users = users[position]
        last_seen = np.zeros(len(self._user_ids), dtype=np.int64)
        np.maximum.at(last_seen, pair_users, position + 1)
        active = np.flatnonzero(last_seen)
        recent = active[np.argsort(-last_seen[active], kind="stable")]
        chosen = np.zeros(len(self._user_ids), dtype=bool)
        chosen[recent[: self.refresh_users]] = True
        position = position[chosen[pair_users]]

        # Each item keeps its most recent users only.
        order = np.lexsort((-position, items[position]))
        pair_users = users[position][order]
        pair_items = items[position][order]
        first = np.searchsorted(pair_items, pair_items, side="left")
        keep = np.arange(pair_items.size) - first < self.max_item_users
        window_users, local = np.unique(pair_users[keep], return_inverse=True)

        # Louvain on the sparse graph; communities listed largest first.
        graph = CoClickGraph(
            local, pair_items[keep], window_users.size, len(self._item_index)
        ).top_neighbour_graph(self.neighbours)
        found = nx.community.louvain_communities(
            graph, weight="weight", resolution=self.resolution, seed=self.seed
        )
        parts = sorted(
            (window_users[sorted(part)].tolist() for part in found),
            key=lambda part: (-len(part), part[0]),
        )
        kept = [part for part in parts if len(part) >= self.min_size]
        return window_users, kept[: self.max_communities]

    def _check(self) -> None:
        n_users = len(self._user_ids)
        n_items = len(self._item_index)
        assert len(self._user_index) == n_users == len(self._items)
        assert len(self._n_items) == n_users
        for user, user_id in enumerate(self._user_ids):
            assert self._user_index[user_id] == user
        assert sorted(self._item_index.values()) == list(range(n_items))

        # Every user sits in a live community.
        labels = self._label[:n_users]
        assert (self._label[n_users:] == -1).all()
        assert (self._column_id[labels] >= 0).all() if n_users else True
        live = np.flatnonzero(self._column_id >= 0)
        assert {int(self._column_id[c]): int(c) for c in live} == self._id_column
        assert all(0 <= c < self._next_id for c in self._id_column)
        members = np.bincount(labels, minlength=self._column_id.size)
        assert (members == self._members).all()
        assert (members[live] > 0).all()

        # Counts, degrees and totals recomputed from the users' items.
        counts = np.zeros_like(self._counts)
        item_users = np.zeros_like(self._item_users)
        totals = np.zeros_like(self._totals)
        for user in range(n_users):
            items = self._items[user][: self._n_items[user]]
            assert np.unique(items).size == items.size
            assert ((items >= 0) & (items < n_items)).all()
            counts[items, labels[user]] += 1
            item_users[items] += 1
        for user in range(n_users):
            items = self._items[user][: self._n_items[user]]
            totals[labels[user]] += int(item_users[items].sum()) - items.size
        assert (counts == self._counts).all()
        assert (item_users == self._item_users).all()
        assert (totals == self._totals).all()
        assert self._two_m == int(totals.sum())

        # The ring buffer refers to known users and items only.
        length = min(self.n_clicks, self.window)
        assert (self._recent_users[:length] < max(n_users, 1)).all()
        assert (self._recent_items[:length] < max(n_items, 1)).all()
        assert self.n_clicks < self._next_refresh
