"""Reaching Kafka with bounded retries, and checking or creating topics."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from icpns_stream.exceptions import IcpnsError

__all__ = [
    "BrokerUnavailableError",
    "TopicMissingError",
    "connect",
    "create_topic",
    "muted_client_logs",
    "require_topic",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest pause between two connection attempts, in seconds.
MAX_BACKOFF = 30.0


class BrokerUnavailableError(IcpnsError):
    """Kafka could not be reached within the allowed attempts."""


class TopicMissingError(IcpnsError):
    """A topic the command needs does not exist on the broker."""


def connect(
    factory: Callable[[], T],
    *,
    what: str,
    bootstrap_servers: str,
    retries: int,
    backoff: float = 1.0,
) -> T:
    """Call ``factory`` (which builds a Kafka client) until it succeeds.

    Each failed attempt is logged and followed by a pause that doubles from
    ``backoff`` seconds up to `MAX_BACKOFF`. After ``retries`` attempts the
    last error becomes a `BrokerUnavailableError` that says how long it tried
    and what to check.
    """
    if retries < 1:
        raise ValueError(f"retries must be positive, got {retries}")
    if backoff < 0:
        raise ValueError(f"backoff must be non-negative, got {backoff}")
    pause = backoff
    started = time.monotonic()
    for attempt in range(1, retries + 1):
        try:
            with muted_client_logs():
                return factory()
        except KafkaError as exc:
            # Out of attempts: one clear error instead of a hang or a traceback.
            if attempt == retries:
                waited = time.monotonic() - started
                raise BrokerUnavailableError(
                    f"cannot reach Kafka at {bootstrap_servers} for the {what} "
                    f"after {retries} attempt{'s' * (retries != 1)} over "
                    f"{waited:.1f} s ({exc}). Check that the broker is running "
                    "and that --bootstrap-servers names it."
                ) from exc
            logger.warning(
                "%s cannot reach Kafka at %s (attempt %d of %d): %s; retrying in "
                "%.1f s",
                what,
                bootstrap_servers,
                attempt,
                retries,
                exc,
                pause,
            )
            time.sleep(pause)
            pause = min(MAX_BACKOFF, max(pause * 2, 0.5))
    raise AssertionError("unreachable: the loop returns or raises")


@contextlib.contextmanager
def muted_client_logs() -> Iterator[None]:
    """Silence kafka-python's logs for a moment (unless at DEBUG).

    Bootstrapping logs several errors per second of a failed attempt, where
    `connect` logs one warning per attempt; closing a client logs the
    cancellation of its metadata refresh as an error.
    """
    client = logging.getLogger("kafka")
    if client.isEnabledFor(logging.DEBUG):
        yield
        return
    level = client.level
    client.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client.setLevel(level)


def require_topic(
    consumer: KafkaConsumer,
    topic: str,
    *,
    retries: int = 3,
    backoff: float = 1.0,
    hint: str = "",
) -> set[int]:
    """Return the partitions of ``topic``, waiting briefly for it to appear.

    A topic created a moment ago may take a metadata refresh to show, hence
    the few retries. Raises `TopicMissingError` when it never does.
    """
    for attempt in range(1, retries + 1):
        partitions: Any = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if attempt < retries:
            logger.info("topic %s not found yet, checking again", topic)
            time.sleep(backoff)
    raise TopicMissingError(
        f"topic {topic!r} does not exist on the broker. {hint}".rstrip()
    )


def create_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    partitions: int,
    replication_factor: int = 1,
    retries: int = 5,
    client_id: str = "icpns-stream",
) -> bool:
    """Create ``topic`` if it is missing; return whether it was created."""
    if partitions < 1:
        raise ValueError(f"partitions must be positive, got {partitions}")
    if replication_factor < 1:
        raise ValueError(
            f"replication_factor must be positive, got {replication_factor}"
        )
    admin = connect(
        lambda: KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            bootstrap_timeout_ms=5_000,
        ),
        what="admin client",
        bootstrap_servers=bootstrap_servers,
        retries=retries,
    )
    try:
        admin.create_topics(
            [NewTopic(topic, partitions, replication_factor)], timeout_ms=30_000
        )
    except TopicAlreadyExistsError:
        [described] = admin.describe_topics([topic])
        held = len(described["partitions"])
        if held != partitions:
            logger.warning(
                "topic %s exists already with %d partition(s), not %d; left as it is",
                topic,
                held,
                partitions,
            )
        else:
            logger.info("topic %s exists already; left as it is", topic)
        return False
    finally:
        admin.close()
    logger.info("created topic %s with %d partition(s)", topic, partitions)
    return True
