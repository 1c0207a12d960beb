"""A synthetic click stream with planted user communities and known skipped items."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from icpns_stream.events import MAX_CLOCK_SKEW
from icpns_stream.ground_truth import TRUTH_FORMAT, TRUTH_VERSION, GroundTruth
from icpns_stream.types import CommunityId, UserId

__all__ = ["PlantedCommunitySimulator", "SimulationSummary"]

#: Slates simulated per vectorised batch. Part of the output's definition: the
#: random draws are taken a batch at a time, so changing it changes the stream.
_BATCH = 2048

#: Items shown per step unless told otherwise.
_DEFAULT_SLATE = 10

#: Candidates drawn per slate position, so that duplicates can be dropped and a
#: slate still fills up with distinct items.
_OVERSAMPLE = 2

#: Pending shown pairs are merged into one sorted array past this many, or past
#: twice the last merge's size, so merging costs O(D log D) over a whole run.
_COMPACT_AT = 1 << 22


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """What one `PlantedCommunitySimulator.write` call produced.

    Parameters
    ----------
    events_path, truth_path
        The files written.
    events
        Click events written.
    slates
        Slates shown, including those the user clicked nothing in.
    active_users
        Users with at least one click.
    shown_pairs
        Distinct (user, item) pairs shown.
    skipped_pairs
        Distinct (user, item) pairs shown and never clicked.
    first_timestamp, last_timestamp
        Event time span in Unix seconds, as written (both ``start_time`` when
        there is no event).
    """

    events_path: Path
    truth_path: Path
    events: int
    slates: int
    active_users: int
    shown_pairs: int
    skipped_pairs: int
    first_timestamp: float
    last_timestamp: float

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready object."""
        return {
            "events_path": str(self.events_path),
            "truth_path": str(self.truth_path),
            "events": self.events,
            "slates": self.slates,
            "active_users": self.active_users,
            "shown_pairs": self.shown_pairs,
            "skipped_pairs": self.skipped_pairs,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }


class PlantedCommunitySimulator:
    """Users in planted communities click items from slates shown to them.

    The world is drawn once from the seed. Each user belongs to one of
    ``n_communities`` communities of varying size and has a skewed activity
    level and a latent taste vector near its community's centre. Each community
    ranks the items in its own random order and favours them by a Zipf law over
    that order; a global Zipf ranking shared by everyone makes communities
    overlap.

    Each step picks a user in proportion to activity and shows a slate of
    ``slate_size`` distinct items, each slot drawn from the user's community
    ranking, else (with probability ``global_share``) from the global one, else
    (``random_share``) uniformly. The user clicks each shown item with
    probability ``sigmoid(click_bias + taste . item_vector)``; an item the user
    clicked before is not clicked again. Clicks become events; shown items the
    user never clicks are the true negatives recorded in the truth file.

    Parameters
    ----------
    n_users, n_items, n_communities
        Sizes of the world; ``1 <= n_communities <= n_users``.
    seed
        Seed of everything; the same seed writes the same bytes.
    slate_size
        Items shown per step, at most ``n_items``; by default 10, or
        ``n_items`` when fewer. A slate may come out a little shorter when its
        candidate draws repeat too often.
    zipf_exponent
        Exponent ``s`` of the popularity law: the item of rank ``r`` (from 1)
        is drawn with weight ``r ** -s``. 0 is uniform.
    global_share
        Share of non-random slots drawn from the global ranking, in ``[0, 1]``.
    random_share
        Share of slots drawn uniformly over all items, in ``[0, 1]``.
    size_concentration
        Dirichlet concentration of community sizes: small values give very
        uneven sizes, large ones nearly equal sizes. Positive.
    activity_sigma
        Log-normal sigma of user activity; 0 makes all users equally active.
    latent_dim
        Dimension of the taste and item vectors.
    click_bias
        Logit of the click probability for a neutral item; -2 gives about
        1.5 clicks per 10-item slate.
    mean_gap
        Mean time between consecutive events, in seconds (exponential gaps).
    start_time
        Unix time in seconds the stream starts from, not in the future: the
        event contract rejects clicks ahead of the clock.

    Attributes
    ----------
    community_of
        Planted community of user ``u{i}`` at index ``i`` (int64 array).

    Notes
    -----
    Users are named ``u0 .. u{n_users-1}`` and items ``i0 .. i{n_items-1}``.
    Building the world costs O((n_users + n_communities * n_items) * latent_dim)
    time and keeps ``n_communities * n_items`` int32 item orders. `write` costs
    O(E) time for E events (vectorised in batches of slates) and keeps O(D)
    memory for the D distinct (user, item) pairs shown, which it must know at
    the end to tell skipped pairs from clicked ones; events are streamed.

    Events are written as JSON Lines in the event contract, for example
    ``{"user_id":"u3","item_id":"i17","timestamp":1700000009.512,"event_id":"e0"}``,
    with strictly increasing event ids and non-decreasing timestamps (three
    decimals). The truth file's layout is described in `GroundTruth`.

    A stream of E events is a prefix of the stream of any larger E with the
    same seed and parameters; only the truth file differs.

    References
    ----------
    Holland, Laskey and Leinhardt (1983), Stochastic blockmodels: first steps
    (planted communities); Chen, Lin and Xu (2026), In-Community Popularity
    Negative Sampling (in-community popularity as the source of exposure).

    Examples
    --------
    >>> import tempfile
    >>> simulator = PlantedCommunitySimulator(60, 40, 3, seed=7)
    >>> simulator.community_sizes().tolist()
    [12, 8, 40]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     summary = simulator.write(Path(folder) / "clicks.jsonl", n_events=100)
    ...     first = summary.events_path.read_text().splitlines()[0]
    ...     truth = GroundTruth.load(summary.truth_path)
    >>> summary.events, summary.slates, summary.skipped_pairs
    (100, 62, 363)
    >>> first
    '{"user_id":"u27","item_id":"i35","timestamp":1700000028.496,"event_id":"e0"}'
    >>> truth.communities["u27"], truth.n_skipped
    (2, 363)
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_communities: int,
        seed: int = 0,
        *,
        slate_size: int | None = None,
        zipf_exponent: float = 1.0,
        global_share: float = 0.2,
        random_share: float = 0.05,
        size_concentration: float = 2.0,
        activity_sigma: float = 1.0,
        latent_dim: int = 8,
        click_bias: float = -2.0,
        mean_gap: float = 10.0,
        start_time: float = 1_700_000_000.0,
    ) -> None:
        # Validate everything first so a bad call costs nothing.
        _require_int("n_users", n_users, 1)
        _require_int("n_items", n_items, 1)
        _require_int("n_communities", n_communities, 1)
        _require_int("seed", seed, 0)
        if slate_size is None:
            slate_size = min(_DEFAULT_SLATE, n_items)
        _require_int("slate_size", slate_size, 1)
        _require_int("latent_dim", latent_dim, 1)
        if n_communities > n_users:
            raise ValueError(
                f"n_communities must be at most n_users ({n_users}), "
                f"got {n_communities}"
            )
        if slate_size > n_items:
            raise ValueError(
                f"slate_size must be at most n_items ({n_items}), got {slate_size}"
            )
        _require_range("zipf_exponent", zipf_exponent, 0.0, 10.0)
        _require_range("global_share", global_share, 0.0, 1.0)
        _require_range("random_share", random_share, 0.0, 1.0)
        _require_range("activity_sigma", activity_sigma, 0.0, 5.0)
        _require_range("click_bias", click_bias, -20.0, 20.0)
        if not (math.isfinite(size_concentration) and size_concentration > 0):
            raise ValueError(
                f"size_concentration must be positive, got {size_concentration}"
            )
        if not (math.isfinite(mean_gap) and mean_gap > 0):
            raise ValueError(f"mean_gap must be positive, got {mean_gap}")
        if not (math.isfinite(start_time) and 0.0 <= start_time <= time.time()):
            raise ValueError(
                f"start_time must be a Unix time in seconds from 0 to now, "
                f"got {start_time}"
            )

        self.n_users = n_users
        self.n_items = n_items
        self.n_communities = n_communities
        self.seed = seed
        self.slate_size = slate_size
        self.zipf_exponent = zipf_exponent
        self.global_share = global_share
        self.random_share = random_share
        self.size_concentration = size_concentration
        self.activity_sigma = activity_sigma
        self.latent_dim = latent_dim
        self.click_bias = click_bias
        self.mean_gap = mean_gap
        self.start_time = start_time

        # One child seed builds the world and another drives the stream, so
        # writing twice replays the same stream.
        world_seed, self._stream_seed = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(world_seed)

        # Community sizes vary by a Dirichlet draw; every community gets at
        # least one user so none is empty.
        shares = rng.dirichlet(np.full(n_communities, size_concentration))
        order = rng.permutation(n_users)
        labels = np.concatenate(
            [
                np.arange(n_communities),
                rng.choice(n_communities, size=n_users - n_communities, p=shares),
            ]
        )
        self.community_of = np.empty(n_users, dtype=np.int64)
        self.community_of[order] = labels

        # Skewed activity: a few users take many of the steps.
        activity = rng.lognormal(0.0, activity_sigma, n_users)
        self._activity_cdf = np.cumsum(activity) / activity.sum()

        # One Zipf law over ranks, read through per-community and global orders.
        weights = np.arange(1, n_items + 1, dtype=np.float64) ** -zipf_exponent
        self._rank_cdf = np.cumsum(weights) / weights.sum()
        self._global_order = rng.permutation(n_items).astype(np.int32)
        self._community_order = np.stack(
            [rng.permutation(n_items).astype(np.int32) for _ in range(n_communities)]
        )

        # Tastes sit near their community's centre; item vectors are scaled so
        # a taste-item product has a spread of about one logit.
        centres = rng.normal(0.0, 1.0, (n_communities, latent_dim))
        noise = rng.normal(0.0, 0.5, (n_users, latent_dim))
        self._taste = centres[self.community_of] + noise
        self._item_vector = rng.normal(
            0.0, 1.0 / math.sqrt(latent_dim), (n_items, latent_dim)
        )

    def communities(self) -> dict[UserId, CommunityId]:
        """Return the planted community of every user, by user id."""
        return {f"u{user}": int(c) for user, c in enumerate(self.community_of.tolist())}

    def community_sizes(self) -> np.ndarray:
        """Return the number of users in each community."""
        return np.bincount(self.community_of, minlength=self.n_communities)

    def write(
        self,
        events_path: str | os.PathLike[str],
        n_events: int,
        *,
        truth_path: str | os.PathLike[str] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> SimulationSummary:
        """Simulate ``n_events`` clicks into ``events_path`` and write the truth.

        Parameters
        ----------
        events_path
            JSON Lines file for the events, overwritten.
        n_events
            Clicks to write; at most ``n_users * n_items``, since a user clicks
            an item once, and few enough that ``n_events * mean_gap`` seconds
            after ``start_time`` is not in the future.
        truth_path
            Truth file, by default ``GroundTruth.path_for(events_path)``.
        on_progress
            Called as ``on_progress(done, n_events)`` after each batch of slates
            and once at the end.

        Returns
        -------
        SimulationSummary
            The files and counts.

        Raises
        ------
        ValueError
            For a bad ``n_events``; also, with the events file left incomplete,
            when the gaps drawn by chance carry the stream more than
            `MAX_CLOCK_SKEW` past the present before its last event.
        """
        _require_int("n_events", n_events, 0)
        if n_events > self.n_users * self.n_items:
            raise ValueError(
                f"n_events must be at most n_users * n_items "
                f"({self.n_users * self.n_items}), got {n_events}"
            )

        # A stream expected to end in the future is refused before anything is
        # written, since the event contract would reject its last clicks.
        now = time.time()
        limit = math.floor((now - self.start_time) / self.mean_gap)
        if n_events > limit:
            raise ValueError(
                f"n_events must be at most {limit} for clicks {self.mean_gap:g} s "
                f"apart on average from start_time {self.start_time:.0f} to end "
                f"before now, got {n_events}"
            )
        events_file = Path(events_path)
        truth_file = (
            Path(truth_path)
            if truth_path is not None
            else GroundTruth.path_for(events_file)
        )
        with open(events_file, "w", encoding="utf-8", newline="\n") as out:
            stream = self._stream(out, n_events, now + MAX_CLOCK_SKEW, on_progress)
        with open(truth_file, "w", encoding="utf-8", newline="\n") as out:
            skipped = self._write_truth(out, stream, n_events)
        return SimulationSummary(
            events_path=events_file,
            truth_path=truth_file,
            events=n_events,
            slates=stream.slates,
            active_users=len(np.unique(stream.clicked // self.n_items)),
            shown_pairs=len(stream.shown),
            skipped_pairs=skipped,
            first_timestamp=float(f"{stream.first_time:.3f}"),
            last_timestamp=float(f"{stream.clock:.3f}"),
        )

    def _stream(
        self,
        out: TextIO,
        n_events: int,
        latest: float,
        on_progress: Callable[[int, int], None] | None,
    ) -> _StreamState:
        rng = np.random.default_rng(self._stream_seed)
        state = _StreamState(self.start_time)
        clicked: set[int] = set()
        pending: list[np.ndarray] = []
        pending_size = merged_size = 0
        n_items = self.n_items

        while state.events < n_events:
            users, items, shown, clicks, gaps = self._draw_batch(rng)

            # Walk the clicks in slate order; a repeat click is no event, and
            # the walk stops as soon as the stream has its events.
            rows, cols = np.nonzero(clicks)
            keys = (users[rows] * n_items + items[rows, cols]).tolist()
            accepted: list[int] = []
            cut_row = _BATCH
            for position, key in enumerate(keys):
                if key in clicked:
                    continue
                clicked.add(key)
                accepted.append(position)
                if state.events + len(accepted) == n_events:
                    cut_row = int(rows[position])
                    # Clicks after the last event, in its slate, never happened.
                    later = np.arange(position + 1, len(keys))
                    later = later[rows[later] == cut_row]
                    shown[cut_row, cols[later]] = False
                    break

            # Event times advance by the exponential gaps drawn for the kept clicks.
            chosen = np.asarray(accepted, dtype=np.int64)
            times = state.clock + np.cumsum(gaps[rows[chosen], cols[chosen]])

            # Chance can carry the stream past its expected end, and beyond
            # what the event contract accepts.
            if len(times) and times[-1] > latest:
                raise ValueError(
                    f"the gaps drawn carried the stream into the future by event "
                    f"{state.events + len(times)} of {n_events}, so the events "
                    f"file is incomplete; write fewer events"
                )

            if state.events == 0 and len(times):
                state.first_time = float(times[0])
            lines = [
                f'{{"user_id":"u{u}","item_id":"i{i}",'
                f'"timestamp":{t:.3f},"event_id":"e{n}"}}\n'
                for n, u, i, t in zip(
                    range(state.events, state.events + len(chosen)),
                    users[rows[chosen]].tolist(),
                    items[rows[chosen], cols[chosen]].tolist(),
                    times.tolist(),
                    strict=True,
                )
            ]
            out.write("".join(lines))
            state.events += len(chosen)
            if len(times):
                state.clock = float(times[-1])

            # Remember the distinct pairs shown so far, merging now and then.
            kept = min(cut_row + 1, _BATCH)
            state.slates += kept
            shown_keys = users[:kept, None] * n_items + items[:kept]
            pending.append(shown_keys[shown[:kept]])
            pending_size += len(pending[-1])
            if pending_size > max(_COMPACT_AT, 2 * merged_size):
                pending = [_sorted_unique(np.concatenate(pending))]
                pending_size = merged_size = len(pending[0])
            if on_progress is not None and state.events < n_events:
                on_progress(state.events, n_events)

        state.shown = _sorted_unique(np.concatenate(pending)) if pending else _NO_KEYS
        state.clicked = np.sort(
            np.fromiter(clicked, dtype=np.int64, count=len(clicked))
        )
        if on_progress is not None:
            on_progress(state.events, n_events)
        return state

    def _draw_batch(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n_items = self.n_items
        width = _OVERSAMPLE * self.slate_size

        # Who is shown a slate: users in proportion to their activity.
        users = np.searchsorted(self._activity_cdf, rng.random(_BATCH), side="right")
        users = np.minimum(users, self.n_users - 1).astype(np.int64)

        # Candidate items: a Zipf rank read through the community's order, the
        # global order or replaced by a uniform item, by each slot's source.
        ranks = np.searchsorted(
            self._rank_cdf, rng.random((_BATCH, width)), side="right"
        )
        ranks = np.minimum(ranks, n_items - 1)
        source = rng.random((_BATCH, width))
        uniform = rng.integers(0, n_items, (_BATCH, width))
        items = self._community_order[self.community_of[users][:, None], ranks]
        global_cut = self.random_share + (1.0 - self.random_share) * self.global_share
        items = np.where(source < global_cut, self._global_order[ranks], items)
        items = np.where(source < self.random_share, uniform, items).astype(np.int64)

        # A slate holds the first slate_size distinct candidates of its row.
        shown = _first_distinct(items, self.slate_size)

        # Clicks follow the user's taste for each shown item.
        logits = self.click_bias + np.einsum(
            "bd,bkd->bk", self._taste[users], self._item_vector[items]
        )
        clicks = shown & (rng.random((_BATCH, width)) < 1.0 / (1.0 + np.exp(-logits)))
        gaps = rng.exponential(self.mean_gap, (_BATCH, width))
        return users, items, shown, clicks, gaps

    def _write_truth(self, out: TextIO, stream: _StreamState, n_events: int) -> int:
        n_items = self.n_items

        # Skipped pairs are those shown and never clicked, sorted by user.
        skipped = np.setdiff1d(stream.shown, stream.clicked, assume_unique=True)
        owners = skipped // n_items
        bounds = np.searchsorted(owners, np.arange(self.n_users + 1))
        header = {
            "format": TRUTH_FORMAT,
            "version": TRUTH_VERSION,
            "seed": self.seed,
            "users": self.n_users,
            "items": self.n_items,
            "communities": self.n_communities,
            "events": n_events,
            "slates": stream.slates,
            "shown_pairs": len(stream.shown),
            "skipped_pairs": len(skipped),
            "params": self._params(),
        }
        out.write(json.dumps(header, separators=(",", ":")) + "\n")

        # One line per user, every user included so the planted partition is whole.
        names = [f'"i{item}"' for item in range(n_items)]
        item_of = skipped % n_items
        starts = bounds.tolist()
        communities = self.community_of.tolist()
        for user in range(self.n_users):
            mine = item_of[starts[user] : starts[user + 1]].tolist()
            listed = ",".join([names[i] for i in mine])
            out.write(
                f'{{"user_id":"u{user}","community":{communities[user]},'
                f'"skipped":[{listed}]}}\n'
            )
        return len(skipped)

    def _params(self) -> dict[str, Any]:
        return {
            "slate_size": self.slate_size,
            "zipf_exponent": self.zipf_exponent,
            "global_share": self.global_share,
            "random_share": self.random_share,
            "size_concentration": self.size_concentration,
            "activity_sigma": self.activity_sigma,
            "latent_dim": self.latent_dim,
            "click_bias": self.click_bias,
            "mean_gap": self.mean_gap,
            "start_time": self.start_time,
        }

    def _check(self) -> None:
        sizes = self.community_sizes()
        assert len(sizes) == self.n_communities and sizes.min() >= 1
        assert sizes.sum() == self.n_users
        everyone = np.arange(self.n_items)
        assert np.array_equal(np.sort(self._global_order), everyone)
        for order in self._community_order:
            assert np.array_equal(np.sort(order), everyone)
        for cdf in (self._activity_cdf, self._rank_cdf):
            assert np.all(np.diff(cdf) >= 0) and abs(cdf[-1] - 1.0) < 1e-9
        assert self._taste.shape == (self.n_users, self.latent_dim)
        assert self._item_vector.shape == (self.n_items, self.latent_dim)


_NO_KEYS = np.empty(0, dtype=np.int64)


class _StreamState:
    """Counters and pair sets of one `write` call."""

    def __init__(self, start_time: float) -> None:
        self.events = 0
        self.slates = 0
        self.clock = start_time
        self.first_time = start_time
        self.shown = _NO_KEYS
        self.clicked = _NO_KEYS


def _first_distinct(items: np.ndarray, limit: int) -> np.ndarray:
    """Mark, per row, the first ``limit`` candidates that repeat no earlier one."""
    # A stable sort puts each value's earliest slot first among its equals.
    order = np.argsort(items, axis=1, kind="stable")
    ordered = np.take_along_axis(items, order, axis=1)
    repeat_sorted = np.zeros(items.shape, dtype=bool)
    repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeat = np.empty_like(repeat_sorted)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)

    # Keep the distinct ones while the slate has room.
    fresh = ~repeat
    return fresh & (np.cumsum(fresh, axis=1) <= limit)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Return the distinct keys in ascending order."""
    # Sorting beats numpy's hash-based unique on these large int64 keys.
    ordered = np.sort(keys)
    if len(ordered) == 0:
        return ordered
    fresh = np.empty(len(ordered), dtype=bool)
    fresh[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=fresh[1:])
    return ordered[fresh]


def _require_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")


def _require_range(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
