"""Reaching Kafka with bounded retries; checking and creating topics."""

from __future__ import annotations

import itertools
import logging
import re
import time

import pytest
from kafka import KafkaConsumer
from kafka_kit import unique

from consumers.connection import (
    BrokerUnavailableError,
    TopicMissingError,
    connect,
    create_topic,
    require_topic,
)


def test_unreachable_broker_gives_up_after_the_retries() -> None:
    attempts: list[float] = []

    def factory() -> KafkaConsumer:
        attempts.append(time.monotonic())
        return KafkaConsumer(bootstrap_servers="127.0.0.1:9", bootstrap_timeout_ms=200)

    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as info:
        connect(
            factory,
            what="consumer",
            bootstrap_servers="127.0.0.1:9",
            retries=3,
            backoff=0.1,
        )
    elapsed = time.monotonic() - started
    assert len(attempts) == 3
    message = str(info.value)
    assert message.startswith("cannot reach Kafka at 127.0.0.1:9 for the consumer")
    assert "--bootstrap-servers" in message

    # The time spent is the span of the attempts and pauses, to 0.1 s.
    found = re.search(r"after 3 attempts over (\d+\.\d) s \(", message)
    assert found is not None, message
    assert attempts[-1] - started - 0.05 <= float(found.group(1)) <= elapsed + 0.05

    # Pauses double between attempts (0.1 s, then 0.5 s at least).
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[1] > gaps[0]


def test_a_single_attempt_is_named_in_the_singular() -> None:
    def factory() -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers="127.0.0.1:9", bootstrap_timeout_ms=200)

    with pytest.raises(BrokerUnavailableError, match=r"after 1 attempt over \d"):
        connect(factory, what="producer", bootstrap_servers="127.0.0.1:9", retries=1)


@pytest.mark.parametrize(
    ("retries", "backoff", "message"),
    [(0, 1.0, "retries must be positive, got 0"), (1, -1.0, "backoff must be")],
)
def test_connect_validates_its_arguments(
    retries: int, backoff: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        connect(
            lambda: None,
            what="x",
            bootstrap_servers="h:1",
            retries=retries,
            backoff=backoff,
        )


@pytest.mark.kafka
def test_create_topic_once_then_leave_it(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("created")
    assert create_topic(kafka_bootstrap, name, partitions=3) is True
    with caplog.at_level(logging.WARNING, logger="consumers.connection"):
        assert create_topic(kafka_bootstrap, name, partitions=3) is False
        assert not caplog.records
        assert create_topic(kafka_bootstrap, name, partitions=5) is False
    [warning] = caplog.records
    assert warning.getMessage() == (
        f"topic {name} exists already with 3 partition(s), not 5; left as it is"
    )
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert require_topic(consumer, name) == {0, 1, 2}
        with pytest.raises(
            TopicMissingError, match=r"does not exist on the broker\. Do X"
        ):
            require_topic(
                consumer, unique("absent"), retries=2, backoff=0.1, hint="Do X"
            )
    finally:
        consumer.close()


def test_create_topic_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="partitions must be positive, got 0"):
        create_topic("h:1", "t", partitions=0)
    with pytest.raises(ValueError, match="replication_factor must be positive"):
        create_topic("h:1", "t", partitions=1, replication_factor=0)
