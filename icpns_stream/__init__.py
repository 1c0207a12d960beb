"""Streaming In-Community Popularity Negative Sampling: the engine, no Kafka."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
