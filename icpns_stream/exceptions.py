"""The package's exception hierarchy."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "IcpnsError",
    "InputFormatError",
    "InvalidEventError",
]


class IcpnsError(Exception):
    """Base class of every error the package raises on purpose."""


class InvalidEventError(IcpnsError, ValueError):
    """A click event that breaks the event contract.

    The message is the reason recorded next to the event in the dead-letter sink.
    """


class InputFormatError(IcpnsError):
    """A logged file that cannot be read at all: missing, unreadable or unknown."""


class CheckpointError(IcpnsError):
    """A checkpoint that cannot be written, or that fails its integrity check."""
