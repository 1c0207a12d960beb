"""The sampler interface and the explained negative every sampler returns."""

from __future__ import annotations

import abc
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from icpns_stream.types import CommunityId, ItemId, UserId

if TYPE_CHECKING:
    from icpns_stream.community_popularity import CommunityPopularity
    from icpns_stream.item_catalog import ItemCatalog
    from icpns_stream.model import OnlineModel

__all__ = ["Negative", "Sampler", "SamplingContext"]


@dataclass(frozen=True, slots=True)
class Negative:
    """A sampled negative and why it was drawn.

    Parameters
    ----------
    user_id
        The user the negative is for.
    item_id
        The negative item.
    positive_item_id
        The clicked item whose event produced this negative.
    timestamp
        Event time (Unix seconds) of that click.
    community
        The user's community when the negative was drawn, or None if unplaced.
    popularity
        The item's decayed click count in the distribution it was drawn from
        (the community's, or the global one after a fallback) at the stream
        clock: ``timestamp``, or the newest event time for a click that came
        late (see `Sampler.sample`).
        Items from a uniform draw (the uniform and hard samplers, the
        ``"uniform"`` and ``"mix"`` fallbacks) carry their global count, 0.0
        for an item no longer counted.
    probability
        The probability this item had of being picked by the draw that picked
        it, after the user's own clicks and the negatives already picked for
        this click were excluded (negatives are drawn without replacement).
        For the hard sampler: the chance the item had of entering the group of
        uniform candidates it then won on the model's score.
    fallback
        None when the sampler's own distribution produced the item; otherwise
        which fallback did: ``"global"`` or ``"uniform"`` (or ``"mix"`` for the
        uniform share of a blended sampler).
    """

    user_id: UserId
    item_id: ItemId
    positive_item_id: ItemId
    timestamp: float
    community: CommunityId | None
    popularity: float
    probability: float
    fallback: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the negative as a JSON-ready object."""
        return asdict(self)


@dataclass(slots=True)
class SamplingContext:
    """The engine state a sampler may read; the engine owns and updates it."""

    catalog: ItemCatalog
    popularity: CommunityPopularity
    model: OnlineModel | None = None


class Sampler(abc.ABC):
    """Draws explained negatives for one click.

    A sampler owns its random generator, so pickling it keeps its stream of
    draws, and two samplers built with the same seed draw the same negatives.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def sample(
        self,
        context: SamplingContext,
        user_id: UserId,
        positive_item_id: ItemId,
        timestamp: float,
        community: CommunityId | None,
        history: Collection[ItemId],
        k: int,
        *,
        clock: float | None = None,
    ) -> list[Negative]:
        """Return up to ``k`` distinct negatives for a click.

        ``history`` holds every item the user clicked up to and including this
        click; no returned item is in it. Fewer than ``k`` come back only when
        fewer than ``k`` items in the catalog are outside the history.

        ``timestamp`` is the click's own time, which every negative carries;
        decayed counts are read at ``clock`` (``timestamp`` when None). The
        engine passes its stream clock, the newest event time: read at the
        time of a click that came late, every newer count would be scaled up
        by ``2 ** (lateness / half_life)``, to infinity past 1,024 half-lives.
        """
