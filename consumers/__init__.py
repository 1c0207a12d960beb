"""Kafka-facing processes built on the engine: the consumer service and producer."""

from __future__ import annotations

__all__: list[str] = []
