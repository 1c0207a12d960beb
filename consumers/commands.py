"""The ``consume`` and ``produce`` commands of the ``icpns-stream`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from consumers.connection import (
    connect,
    create_topic,
    muted_client_logs,
    require_topic,
)
from consumers.producer import EventProducer
from consumers.service import ConsumerService, ServiceSettings
from icpns_stream.cli import (
    add_engine_options,
    add_input_options,
    engine_config_from_args,
    parse_duration,
)
from icpns_stream.dead_letters import DeadLetterWriter
from icpns_stream.events import ClickEvent
from icpns_stream.readers import load_replay

__all__ = ["add_parsers"]

logger = logging.getLogger(__name__)

_DEFAULTS = ServiceSettings("-", "-", "-", "--", "---", Path("."))
_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


def add_parsers(subparsers: Any) -> None:
    """Register ``consume`` and ``produce`` on the CLI's subcommand parsers."""
    _add_consume(subparsers)
    _add_produce(subparsers)


def _add_bootstrap(parser: Any) -> None:
    default = os.environ.get(_BOOTSTRAP_ENV)
    parser.add_argument(
        "--bootstrap-servers",
        default=default,
        required=default is None,
        metavar="HOST:PORT",
        help=f"Kafka brokers, comma-separated (default: ${_BOOTSTRAP_ENV})",
    )


def _add_consume(subparsers: Any) -> None:
    consume = subparsers.add_parser(
        "consume",
        help="consume clicks from Kafka and write explained negatives to a topic",
        description=(
            "Consume click events from a topic, learn online and write each "
            "click's explained negatives to another topic. Malformed messages "
            "go to a dead-letter topic. The state is checkpointed and offsets "
            "are committed only once the checkpoint covering them is safe; "
            "SIGTERM or Ctrl-C checkpoints, commits and exits 0 (1 when the "
            "broker stays away past --stop-timeout)."
        ),
    )
    d = _DEFAULTS
    kafka = consume.add_argument_group("Kafka")
    _add_bootstrap(kafka)
    kafka.add_argument(
        "--topic", default="clicks", help="input topic (default: clicks)"
    )
    kafka.add_argument(
        "--group-id",
        default="icpns-stream",
        help="consumer group (default: icpns-stream)",
    )
    kafka.add_argument(
        "--group-instance-id",
        metavar="ID",
        help=(
            "static member id, unique per running service: a restart under the "
            "same id takes its partitions back at once instead of after the "
            "crashed member's session timeout (default: a dynamic member)"
        ),
    )
    kafka.add_argument(
        "--negatives-topic",
        default="negatives",
        help="output topic of negatives (default: negatives)",
    )
    kafka.add_argument(
        "--dead-letter-topic",
        default="clicks.dlq",
        help="output topic of malformed messages (default: clicks.dlq)",
    )
    kafka.add_argument(
        "--create-output-topics",
        action="store_true",
        help="create the negatives and dead-letter topics if missing",
    )
    kafka.add_argument(
        "--output-partitions",
        type=int,
        default=d.output_partitions,
        metavar="N",
        help="partitions of output topics it creates (default: %(default)s)",
    )
    kafka.add_argument(
        "--auto-offset-reset",
        choices=("earliest", "latest"),
        default=d.auto_offset_reset,
        help="start of a partition with no checkpoint or commit (default: %(default)s)",
    )
    kafka.add_argument(
        "--client-id", default=d.client_id, help="client id (default: %(default)s)"
    )

    state = consume.add_argument_group("state")
    state.add_argument(
        "--checkpoint-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory of the state's checkpoints (one service per directory)",
    )
    state.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        metavar="N",
        help="messages between checkpoints (default: %(default)s)",
    )
    state.add_argument(
        "--checkpoint-interval",
        type=float,
        default=d.checkpoint_interval,
        metavar="SECONDS",
        help="checkpoint pending work at least this often (default: %(default)s)",
    )
    state.add_argument(
        "--keep-checkpoints",
        type=int,
        default=d.keep_checkpoints,
        metavar="N",
        help="checkpoint files kept (default: %(default)s)",
    )

    pacing = consume.add_argument_group("pacing and group timeouts")
    pacing.add_argument(
        "--max-poll-records",
        type=int,
        default=d.max_poll_records,
        metavar="N",
        help="most messages per poll (default: %(default)s)",
    )
    for name, value in (
        ("session-timeout-ms", d.session_timeout_ms),
        ("heartbeat-interval-ms", d.heartbeat_interval_ms),
        ("max-poll-interval-ms", d.max_poll_interval_ms),
    ):
        pacing.add_argument(
            f"--{name}",
            type=int,
            default=value,
            metavar="MS",
            help="consumer-group timeout (default: %(default)s)",
        )
    pacing.add_argument(
        "--connect-retries",
        type=int,
        default=d.connect_retries,
        metavar="N",
        help="attempts to reach the broker at start (default: %(default)s)",
    )
    pacing.add_argument(
        "--flush-timeout",
        type=float,
        default=d.flush_timeout,
        metavar="SECONDS",
        help="wait for outputs before postponing a checkpoint (default: %(default)s)",
    )
    pacing.add_argument(
        "--stop-timeout",
        type=float,
        default=d.stop_timeout,
        metavar="SECONDS",
        help=(
            "how long a stop keeps trying to save the final checkpoint and "
            "commit it before exiting 1 (default: %(default)s)"
        ),
    )
    pacing.add_argument(
        "--max-time-skew",
        type=parse_duration,
        default=d.max_time_skew,
        metavar="DURATION",
        help=(
            "pause a partition this far ahead in event time of the slowest one "
            "with messages left, e.g. 30m (default: 1h)"
        ),
    )
    pacing.add_argument(
        "--no-time-alignment",
        action="store_true",
        help="read partitions in Kafka's fetch order, however far apart in time",
    )
    pacing.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="stop once caught up and idle this long (default: run until stopped)",
    )

    ops = consume.add_argument_group("metrics")
    ops.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics on http://HOST:P/metrics",
    )
    ops.add_argument(
        "--metrics-host",
        default=d.metrics_host,
        help="address the metrics endpoint binds to (default: %(default)s)",
    )
    add_engine_options(consume)
    consume.set_defaults(handler=run_consume)


def _add_produce(subparsers: Any) -> None:
    produce = subparsers.add_parser(
        "produce",
        help="replay a logged click file into a Kafka topic",
        description=(
            "Write the events of a logged click file (any format replay reads) "
            "to a topic in timestamp order, as JSON keyed by user."
        ),
    )
    produce.add_argument("path", type=Path, help="logged click file")
    _add_bootstrap(produce)
    produce.add_argument("--topic", default="clicks", help="topic (default: clicks)")
    produce.add_argument(
        "--rate",
        type=float,
        metavar="EVENTS_PER_S",
        help="events per second (default: as fast as possible)",
    )
    produce.add_argument(
        "--create-topic",
        action="store_true",
        help="create the topic if it is missing (with --partitions)",
    )
    produce.add_argument(
        "--partitions",
        type=int,
        default=1,
        metavar="N",
        help="partitions of a topic created by --create-topic (default: 1)",
    )
    produce.add_argument(
        "--replication-factor",
        type=int,
        default=1,
        metavar="R",
        help="replicas of a topic created by --create-topic (default: 1)",
    )
    add_input_options(produce, limit_help="produce at most N events (after --skip)")
    produce.add_argument(
        "--skip", type=int, default=0, metavar="N", help="leave out the first N events"
    )
    produce.add_argument(
        "--add-event-ids",
        action="store_true",
        help=(
            "give events without an id one made of the file name and the event's "
            "rank in time order, so re-producing the file is de-duplicated"
        ),
    )
    produce.add_argument(
        "--dead-letter",
        type=Path,
        metavar="FILE",
        help="malformed rows of the file as JSONL, with their reasons",
    )
    produce.add_argument(
        "--connect-retries",
        type=int,
        default=5,
        metavar="N",
        help="attempts to reach the broker (default: %(default)s)",
    )
    produce.set_defaults(handler=run_produce)


def run_consume(args: argparse.Namespace) -> int:
    """Run the consumer service until it is stopped; return its exit code."""
    _quiet_kafka_logs()
    settings = ServiceSettings(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        group_id=args.group_id,
        negatives_topic=args.negatives_topic,
        dead_letter_topic=args.dead_letter_topic,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        checkpoint_interval=args.checkpoint_interval,
        keep_checkpoints=args.keep_checkpoints,
        auto_offset_reset=args.auto_offset_reset,
        max_poll_records=args.max_poll_records,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        max_poll_interval_ms=args.max_poll_interval_ms,
        group_instance_id=args.group_instance_id,
        connect_retries=args.connect_retries,
        flush_timeout=args.flush_timeout,
        stop_timeout=args.stop_timeout,
        create_output_topics=args.create_output_topics,
        output_partitions=args.output_partitions,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        exit_when_idle=args.exit_when_idle,
        max_time_skew=None if args.no_time_alignment else args.max_time_skew,
        client_id=args.client_id,
    )
    service = ConsumerService(settings, engine_config_from_args(args))
    service.install_signal_handlers()
    return service.run()


def run_produce(args: argparse.Namespace) -> int:
    """Replay a logged file into a topic; return the exit code."""
    _quiet_kafka_logs()
    if args.skip < 0:
        raise ValueError(f"--skip must be non-negative, got {args.skip}")
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit must be non-negative, got {args.limit}")
    log = load_replay(args.path, fmt=args.format, min_rating=args.min_rating)
    if args.dead_letter is not None:
        with DeadLetterWriter(args.dead_letter, append=False) as writer:
            for dead in log.dead_letters:
                writer.write(dead)
    events: list[ClickEvent] = log.events
    if args.add_event_ids:
        # Rank in time order is stable for a given file, so ids repeat on replay.
        stem = args.path.stem
        events = [
            event
            if event.event_id is not None
            else dataclasses.replace(event, event_id=f"{stem}-{rank}")
            for rank, event in enumerate(events)
        ]
    end = None if args.limit is None else args.skip + args.limit
    events = events[args.skip : end]

    if args.create_topic:
        create_topic(
            args.bootstrap_servers,
            args.topic,
            partitions=args.partitions,
            replication_factor=args.replication_factor,
            retries=args.connect_retries,
        )
    servers = args.bootstrap_servers.split(",")
    common: dict[str, Any] = {
        "what": "producer",
        "bootstrap_servers": args.bootstrap_servers,
        "retries": args.connect_retries,
    }

    # A producer would let the broker create a missing topic with its defaults.
    checker = connect(
        lambda: KafkaConsumer(
            bootstrap_servers=servers,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            bootstrap_timeout_ms=5_000,
        ),
        **common,
    )
    try:
        require_topic(
            checker, args.topic, hint="Pass --create-topic --partitions N to create it."
        )
    finally:
        with muted_client_logs():
            checker.close()

    kafka = connect(
        lambda: KafkaProducer(
            bootstrap_servers=servers,
            client_id="icpns-stream-producer",
            acks="all",
            linger_ms=5,
            batch_size=65_536,
            bootstrap_timeout_ms=5_000,
        ),
        **common,
    )
    producer = EventProducer(kafka, args.topic, rate=args.rate)
    try:
        started = time.perf_counter()
        sent = producer.send_all(events)
        seconds = time.perf_counter() - started
    finally:
        producer.close(timeout=30.0)
    skipped = ""
    if log.dead_letters:
        skipped = f", {len(log.dead_letters)} malformed rows skipped" + (
            "" if args.dead_letter else " (use --dead-letter FILE to keep them)"
        )
    print(
        f"produced {sent:,} events from {args.path} to {args.topic} in "
        f"{seconds:.1f} s ({sent / seconds if seconds > 0 else 0.0:,.0f} events/s)"
        f"{skipped}",
        file=sys.stderr,
    )
    return 0


def _quiet_kafka_logs() -> None:
    """Keep kafka-python's own chatter out of the commands' log (unless debug)."""
    # Its connection and metadata messages come by the dozen per second at INFO;
    # they stay visible with --log-level debug, and its warnings always do,
    # except the event loop's own timing diagnostics ("Task ... ran for 0.275s
    # ... blocking the event loop"), which read like errors but are none.
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    if not debug:
        logging.getLogger("kafka").setLevel(logging.WARNING)
    # Set either way: an earlier command of the same process may have raised it.
    selector = logging.getLogger("kafka.net.selector")
    selector.setLevel(logging.NOTSET if debug else logging.ERROR)
