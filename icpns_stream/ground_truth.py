"""What a synthetic stream really contained: planted communities and skipped items."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from icpns_stream.exceptions import InputFormatError
from icpns_stream.samplers.base import Negative
from icpns_stream.types import CommunityId, ItemId, UserId

__all__ = ["TRUTH_FORMAT", "TRUTH_VERSION", "GroundTruth"]

#: Value of the header's ``format`` field in a truth file.
TRUTH_FORMAT = "icpns-stream-truth"

#: Version of the truth file layout described in `GroundTruth`.
TRUTH_VERSION = 1

_EVENTS_SUFFIX = ".jsonl"
_TRUTH_SUFFIX = ".truth.jsonl"


class GroundTruth:
    """The planted community of each user and the items each user skipped.

    A synthetic stream knows what a logged stream never tells: which community
    each user was planted in, and which items each user was shown and passed
    over. Scoring sampled negatives against the second is the direct measure of
    how often a sampler picks a true negative.

    An item counts as skipped by a user when it was shown to that user at least
    once and the user never clicked it in the whole stream. When it was shown
    does not matter: in the simulator the skip reflects the user's lasting
    preference for the item, so a negative drawn before the item was first
    shown is as true as one drawn after.

    Parameters
    ----------
    communities
        Planted community of every user, including users who never clicked.
    skipped
        For each user, the items shown to that user and never clicked. Users
        missing here skipped nothing.
    metadata
        Free-form facts about the run that made the truth (the truth file's
        header: seed, sizes, counts).

    Attributes
    ----------
    communities
        User id to planted community id.
    metadata
        The header of the file it was loaded from, or what was given.

    Notes
    -----
    The truth file (by default ``<events stem>.truth.jsonl`` next to the events,
    see `path_for`) is JSON Lines, UTF-8:

    * line 1, the header: ``{"format": "icpns-stream-truth", "version": 1,
      ...}`` plus facts about the run (``seed``, ``users``, ``items``,
      ``communities``, ``events``, ``slates``, ``shown_pairs``,
      ``skipped_pairs``, ``params``);
    * then one line per user, in user order:
      ``{"user_id": "u7", "community": 2, "skipped": ["i3", "i15"]}``.

    It holds no impression times, which keeps it near 8 bytes per skipped pair.

    Loading costs O(P) for P skipped pairs and keeps about 4 bytes per pair (a
    sorted item-index array per user). `is_skipped` costs O(log p) for a user
    with p skipped items; `true_negative_precision` O(n log p) for n negatives.

    References
    ----------
    Chen, Lin and Xu (2026), In-Community Popularity Negative Sampling: the
    assumption scored here is that items popular in a user's community but not
    clicked were shown and passed over.

    Examples
    --------
    >>> truth = GroundTruth({"u1": 0, "u2": 1}, {"u1": ["i3", "i5"]})
    >>> truth.is_skipped("u1", "i5"), truth.is_skipped("u2", "i5")
    (True, False)
    >>> truth.true_negative_precision([("u1", "i3"), ("u1", "i9"), ("u2", "i3")])
    0.3333333333333333
    >>> truth.n_skipped
    2
    """

    def __init__(
        self,
        communities: Mapping[UserId, CommunityId],
        skipped: Mapping[UserId, Iterable[ItemId]],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.communities: dict[UserId, CommunityId] = dict(communities)
        self.metadata: dict[str, Any] = dict(metadata or {})

        # Items are interned once so each user's skips are a small int array.
        self._item_index: dict[ItemId, int] = {}
        self._items: list[ItemId] = []
        self._skipped: dict[UserId, np.ndarray] = {}
        for user_id, items in skipped.items():
            if user_id not in self.communities:
                raise ValueError(
                    f"skipped names user {user_id!r}, which has no community"
                )
            self._add_user(user_id, items)

    @staticmethod
    def path_for(events_path: str | os.PathLike[str]) -> Path:
        """Return the truth file that goes with an events file.

        ``run/events.jsonl`` gives ``run/events.truth.jsonl``; a name without
        the ``.jsonl`` suffix gets ``.truth.jsonl`` appended.
        """
        path = Path(events_path)
        name = path.name
        if name.endswith(_EVENTS_SUFFIX):
            name = name[: -len(_EVENTS_SUFFIX)]
        return path.with_name(name + _TRUTH_SUFFIX)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GroundTruth:
        """Read a truth file written by the simulator.

        Raises
        ------
        InputFormatError
            When the file is missing or unreadable, is not JSON Lines, or is not
            in the layout above; the message names the line.
        """
        try:
            with open(path, encoding="utf-8") as handle:
                return cls._read(handle, str(path))
        except OSError as exc:
            raise InputFormatError(f"cannot read truth file {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise InputFormatError(f"{path}: not UTF-8: {exc.reason}") from exc

    @property
    def n_skipped(self) -> int:
        """Number of (user, item) pairs shown and never clicked."""
        return sum(len(indices) for indices in self._skipped.values())

    def skipped_items(self, user_id: UserId) -> list[ItemId]:
        """Return the items ``user_id`` skipped, in order of first sight here."""
        names = self._items
        return [names[index] for index in self._skipped.get(user_id, ())]

    def is_skipped(self, user_id: UserId, item_id: ItemId) -> bool:
        """Return whether ``item_id`` was shown to ``user_id`` and never clicked."""
        indices = self._skipped.get(user_id)
        index = self._item_index.get(item_id)
        if indices is None or index is None:
            return False

        # Each user's array is sorted, so membership is one binary search.
        position = int(np.searchsorted(indices, index))
        return position < len(indices) and int(indices[position]) == index

    def true_negative_precision(
        self, negatives: Iterable[tuple[UserId, ItemId] | Negative]
    ) -> float:
        """Return the share of negatives that the user was shown and skipped.

        ``negatives`` holds ``(user_id, item_id)`` pairs or `Negative` objects.
        A negative for a user or item the truth does not know counts as a miss.

        Raises
        ------
        ValueError
            When ``negatives`` is empty, since the share is then undefined.
        """
        # Count hits and the total in one pass so generators are accepted.
        hits = 0
        total = 0
        for negative in negatives:
            if isinstance(negative, Negative):
                user_id, item_id = negative.user_id, negative.item_id
            else:
                user_id, item_id = negative
            hits += self.is_skipped(user_id, item_id)
            total += 1
        if total == 0:
            raise ValueError("negatives is empty, so no precision can be computed")
        return hits / total

    def _add_user(self, user_id: UserId, items: Iterable[ItemId]) -> None:
        # Duplicate items collapse: the truth is a set of pairs.
        index = self._item_index
        codes = []
        for item in items:
            code = index.get(item)
            if code is None:
                code = index[item] = len(self._items)
                self._items.append(item)
            codes.append(code)
        self._skipped[user_id] = np.unique(np.asarray(codes, dtype=np.int32))

    @classmethod
    def _read(cls, handle: Iterable[str], name: str) -> GroundTruth:
        lines = iter(handle)

        # The header says what the file is before any user line is trusted.
        header = _json_line(next(lines, ""), name, 1)
        if header.get("format") != TRUTH_FORMAT:
            raise InputFormatError(
                f"{name}: line 1 is not a truth header (format must be "
                f"{TRUTH_FORMAT!r}, got {header.get('format')!r})"
            )
        if header.get("version") != TRUTH_VERSION:
            raise InputFormatError(
                f"{name}: truth file version {header.get('version')!r} is not "
                f"supported (this reader knows version {TRUTH_VERSION})"
            )

        # Then one object per user; skips are interned as they stream in.
        truth = cls({}, {}, header)
        for number, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            record = _json_line(line, name, number)
            user_id = record.get("user_id")
            community = record.get("community")
            items = record.get("skipped", [])
            if not isinstance(user_id, str) or not user_id:
                raise InputFormatError(f"{name}: line {number}: bad user_id")
            if isinstance(community, bool) or not isinstance(community, int):
                raise InputFormatError(
                    f"{name}: line {number}: community must be an integer, "
                    f"got {community!r}"
                )
            if not isinstance(items, list) or not all(
                isinstance(item, str) for item in items
            ):
                raise InputFormatError(
                    f"{name}: line {number}: skipped must be a list of item ids"
                )
            if user_id in truth.communities:
                raise InputFormatError(
                    f"{name}: line {number}: user {user_id!r} appears twice"
                )
            truth.communities[user_id] = community
            truth._add_user(user_id, items)
        return truth

    def _check(self) -> None:
        assert set(self._skipped) <= set(self.communities)
        assert len(self._items) == len(self._item_index)
        for code, item in enumerate(self._items):
            assert self._item_index[item] == code
        for indices in self._skipped.values():
            assert indices.dtype == np.int32
            assert np.all(np.diff(indices) > 0)
            assert len(indices) == 0 or 0 <= indices[0] <= indices[-1] < len(
                self._items
            )


def _json_line(line: str, name: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFormatError(
            f"{name}: line {number} is not JSON: {exc.msg} at column {exc.colno}"
        ) from exc
    if not isinstance(value, dict):
        raise InputFormatError(f"{name}: line {number} is not a JSON object")
    return value
