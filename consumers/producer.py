"""Replaying click events into a Kafka topic, keyed by user, at a chosen rate."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from kafka import KafkaProducer

from icpns_stream.events import ClickEvent
from icpns_stream.exceptions import IcpnsError

__all__ = ["EventProducer"]

logger = logging.getLogger(__name__)


class EventProducer:
    """Write click events to a topic as JSON objects keyed by their user.

    Keying by user sends every click of a user to the same partition, so a
    consumer sees each user's clicks in the order they were written. Kafka
    record timestamps are left to the producer's clock: replayed event times
    (1998 for MovieLens) would make a broker with time-based retention delete
    the records at once.

    Parameters
    ----------
    producer
        A connected kafka-python producer (this class closes it in `close`).
    topic
        Topic to write to.
    rate
        Events per second to pace the writes at; None writes as fast as the
        producer takes them.

    Attributes
    ----------
    sent
        Events handed to the producer.
    failed
        Events whose delivery failed.

    Notes
    -----
    `send` costs one JSON encoding and one buffered producer call; pacing
    sleeps only when ahead of schedule by more than 5 ms.

    Examples
    --------
    >>> EventProducer.encode(ClickEvent("196", "242", 881250949.0, event_id="e1"))
    (b'196', b'{"user_id": "196", "item_id": "242", "timestamp": 881250949.0, \
"event_id": "e1"}')
    """

    def __init__(
        self, producer: KafkaProducer, topic: str, *, rate: float | None = None
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.producer = producer
        self.topic = topic
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._started: float | None = None

    @staticmethod
    def encode(event: ClickEvent) -> tuple[bytes, bytes]:
        """Return the record key (the user) and value (the event's JSON)."""
        return event.user_id.encode("utf-8"), json.dumps(event.to_dict()).encode()

    def send(self, event: ClickEvent) -> None:
        """Hand one event to the producer, waiting first if ahead of the rate."""
        if self.rate is not None:
            self._pace()
        key, value = self.encode(event)
        future = self.producer.send(self.topic, key=key, value=value)
        future.add_errback(self._on_error)
        self.sent += 1

    def send_all(
        self,
        events: Iterable[ClickEvent],
        *,
        on_progress: Callable[[int], None] | None = None,
        progress_every: int = 1_000,
    ) -> int:
        """Send ``events`` in order, flush, and return how many were sent.

        Raises
        ------
        IcpnsError
            When some events could not be delivered.
        """
        before = self.sent
        for event in events:
            self.send(event)
            if on_progress is not None and self.sent % progress_every == 0:
                on_progress(self.sent - before)
        self.flush()
        if on_progress is not None:
            on_progress(self.sent - before)
        return self.sent - before

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event sent is acknowledged, or raise `IcpnsError`."""
        self.producer.flush(timeout=timeout)
        if self.failed:
            raise IcpnsError(
                f"{self.failed} of {self.sent} events could not be delivered to "
                f"{self.topic}: {self.last_error}"
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush what is pending and close the producer."""
        self.producer.close(timeout=timeout)

    def _pace(self) -> None:
        # Event n is due n / rate seconds after the first one.
        now = time.monotonic()
        if self._started is None:
            self._started = now
        assert self.rate is not None
        ahead = self._started + self.sent / self.rate - now
        if ahead > 0.005:
            time.sleep(ahead)

    def _on_error(self, error: BaseException) -> None:
        # Runs on the producer's I/O thread.
        with self._lock:
            self.failed += 1
            self.last_error = error
        logger.warning("event not delivered to %s: %s", self.topic, error)
