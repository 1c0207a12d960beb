"""The items seen so far, each with a dense integer index."""

from __future__ import annotations

from collections.abc import Iterator

from icpns_stream.types import ItemId

__all__ = ["ItemCatalog"]


class ItemCatalog:
    """Items in order of first sight, so numpy arrays can be indexed by item.

    Indices are dense (``0 .. len - 1``) and never reused, which lets the model's
    scorer, the rankers and the uniform sampler share one item axis.

    Attributes
    ----------
    ids
        Item ids by index.

    Notes
    -----
    ``add``, ``index_of`` and ``in`` cost O(1).

    Examples
    --------
    >>> catalog = ItemCatalog()
    >>> catalog.add("b"), catalog.add("a"), catalog.add("b")
    (0, 1, 0)
    >>> catalog.ids, len(catalog)
    (['b', 'a'], 2)
    """

    def __init__(self) -> None:
        self.ids: list[ItemId] = []
        self._index: dict[ItemId, int] = {}

    def add(self, item_id: ItemId) -> int:
        """Register ``item_id`` if new and return its index."""
        index = self._index.get(item_id)
        if index is None:
            index = len(self.ids)
            self._index[item_id] = index
            self.ids.append(item_id)
        return index

    def index_of(self, item_id: ItemId) -> int | None:
        """Return the index of ``item_id``, or None if it was never seen."""
        return self._index.get(item_id)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[ItemId]:
        return iter(self.ids)

    def _check(self) -> None:
        assert len(self.ids) == len(self._index)
        for index, item_id in enumerate(self.ids):
            assert self._index[item_id] == index
