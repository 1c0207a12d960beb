"""Type aliases shared across the engine."""

from __future__ import annotations

__all__ = ["CommunityId", "ItemId", "UserId"]

#: Users and items are identified by strings; integer ids from any source are
#: normalised to their decimal string so ``196`` and ``"196"`` name one user.
UserId = str
ItemId = str

#: Communities are small non-negative integers, stable across refreshes.
CommunityId = int
