"""Helpers of the Kafka tests: topics, raw messages, reading topics back, services."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.connection import create_topic
from consumers.producer import EventProducer
from consumers.service import ConsumerService, ServiceSettings
from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent

#: Group timeouts that make a first join take about 3 s instead of about 20 s.
FAST_GROUP: dict[str, Any] = {
    "session_timeout_ms": 6_000,
    "heartbeat_interval_ms": 1_000,
    "max_poll_interval_ms": 10_000,
}

#: A small, fast engine for tests that are about Kafka, not ranking quality.
TEST_CONFIG = EngineConfig(negatives=2, n_factors=8, seed=3, refresh_every=200)

__all__ = [
    "FAST_GROUP",
    "TEST_CONFIG",
    "ServiceThread",
    "TcpProxy",
    "clean_run",
    "committed",
    "make_settings",
    "new_topic",
    "read_topic",
    "send_events",
    "send_raw",
    "synthetic_events",
    "unique",
    "with_ids",
]


def unique(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    """Create a fresh topic and return its name."""
    name = unique(prefix)
    assert create_topic(bootstrap, name, partitions=partitions, retries=3)
    return name


def make_settings(
    bootstrap: str, checkpoint_dir: Path, topic: str, **overrides: Any
) -> ServiceSettings:
    """Settings of a service on ``topic`` with its own group and output topics."""
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "group_id": f"{topic}-group",
        "negatives_topic": f"{topic}-negatives",
        "dead_letter_topic": f"{topic}-dlq",
        "checkpoint_dir": checkpoint_dir,
        "create_output_topics": True,
        "output_partitions": 2,
        "exit_when_idle": 1.5,
        "connect_retries": 3,
        "retry_backoff": 0.2,
        "flush_timeout": 10.0,
        **FAST_GROUP,
    }
    values.update(overrides)
    return ServiceSettings(**values)


def synthetic_events(
    count: int,
    *,
    seed: int = 0,
    start: int = 0,
    users: int = 30,
    items: int = 50,
    spacing: float = 30.0,
) -> list[ClickEvent]:
    """``count`` clicks ``spacing`` s apart with ids ``e{start}``...

    Popular items are clicked more.
    """
    rng = random.Random(seed)
    return [
        ClickEvent(
            f"u{rng.randrange(users)}",
            f"i{int(rng.paretovariate(1.1)) % items}",
            900_000_000.0 + spacing * (start + t),
            event_id=f"e{start + t}",
        )
        for t in range(count)
    ]


def send_events(bootstrap: str, topic: str, events: Iterable[ClickEvent]) -> int:
    """Write events as the ``produce`` command does; return how many."""
    producer = EventProducer(
        KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5), topic
    )
    try:
        return producer.send_all(events)
    finally:
        producer.close(timeout=30)


def send_raw(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes | None]],
    *,
    partition: int | None = None,
) -> None:
    """Write ``(key, value)`` messages as they are, bytes untouched."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=30)


def read_topic(bootstrap: str, topic: str, *, timeout: float = 60.0) -> list[Any]:
    """Every message of ``topic``, partition by partition in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assert partitions, f"topic {topic} does not exist"
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        found: dict[int, list[Any]] = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout
        while True:
            for tp, records in consumer.poll(timeout_ms=500).items():
                found[tp.partition].extend(records)
            if all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= consumer.highwater(tp)
                for tp in assigned
            ):
                break
            assert time.monotonic() < deadline, f"reading {topic} timed out"
        return [record for p in partitions for record in found[p]]
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset of each partition of ``topic``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        return {
            p: consumer.committed(TopicPartition(topic, p))
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        }
    finally:
        consumer.close(autocommit=False)


def clean_run(events: Iterable[ClickEvent], config: EngineConfig) -> Engine:
    """An engine that saw ``events`` once, in order, without interruption."""
    engine = Engine(config)
    for event in events:
        engine.process(event)
    return engine


def with_ids(events: Iterable[ClickEvent], prefix: str) -> list[ClickEvent]:
    """The events with ids ``prefix0``, ``prefix1``..."""
    return [replace(e, event_id=f"{prefix}{i}") for i, e in enumerate(events)]


class ServiceThread:
    """A consumer service running in a background thread of the test."""

    def __init__(
        self, settings: ServiceSettings, config: EngineConfig = TEST_CONFIG
    ) -> None:
        self.service = ConsumerService(settings, config)
        self.result: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, *, ready_timeout: float = 60.0) -> ServiceThread:
        self._thread.start()
        deadline = time.monotonic() + ready_timeout
        while not self.service.wait_until_ready(0.1):
            if not self._thread.is_alive():
                break
            assert time.monotonic() < deadline, "service did not start"
        return self

    def join(self, timeout: float = 120.0) -> int | None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "service did not stop in time"
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self, timeout: float = 60.0) -> int | None:
        self.service.stop()
        return self.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.result = self.service.run()
        except BaseException as exc:
            self.error = exc


class TcpProxy:
    """Forwards a loopback port to another; `cut` drops the link, `restore` heals.

    Put between clients and a broker that advertises the proxy's port, it
    plays a network that fails: connections are reset and new ones refused.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._server: socket.socket | None = None
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> TcpProxy:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65_536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
