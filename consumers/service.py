"""The Kafka consumer service: clicks in, explained negatives out, state kept safe."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType
from typing import IO, Any

from kafka import (
    AsyncConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import MemberState

from consumers.commit_record import CommitRecord
from consumers.connection import (
    connect,
    create_topic,
    muted_client_logs,
    require_topic,
)
from consumers.metrics import ServiceMetrics
from consumers.output_ledger import OutputLedger
from icpns_stream.checkpoint import Checkpoint
from icpns_stream.dead_letters import DeadLetter
from icpns_stream.engine import Engine, EngineConfig, EventOutcome
from icpns_stream.events import decode_event
from icpns_stream.exceptions import CheckpointError, IcpnsError, InvalidEventError
from icpns_stream.samplers.base import Negative

__all__ = [
    "PRODUCER_OPTIONS",
    "ConsumerService",
    "DeliveryError",
    "ServiceSettings",
]

logger = logging.getLogger(__name__)

# Producer deliveries are retried until they succeed: an outage only delays
# them, and a checkpoint never covers an output that was not written.
_DELIVERY_TIMEOUT_MS = 2_147_483_647
# Negatives come K per click: large, lingering batches halve the producer's
# share of the CPU for at most 50 ms of added latency.
PRODUCER_OPTIONS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 50,
    "batch_size": 262_144,
    "delivery_timeout_ms": _DELIVERY_TIMEOUT_MS,
}
# Longest pause between two attempts to reach a lost broker. The client's
# default (30 s) left outputs and commits waiting long after the broker was
# back, past a stop that then gave up on them.
_RECONNECT_BACKOFF_MAX_MS = 1_000
_POLL_TIMEOUT_MS = 500
_COMMITTED_TIMEOUT_MS = 10_000
_METRICS_EVERY = 1.0
_PROGRESS_LOG_EVERY = 60.0
_MAX_RETRY_PAUSE = 60.0
_STOP_RETRY_PAUSE = 0.5
_NEGATIVE_FIELDS = tuple(field.name for field in fields(Negative))
# A dead letter keeps at most this much: Kafka refuses messages over 1 MB by
# default, and a message that large is already at its source offset.
_MAX_DEAD_LETTER_BYTES = 512 * 1024
# The key counts toward the same limit; a reason may quote a huge value.
_MAX_DEAD_LETTER_KEY_BYTES = 16 * 1024
_MAX_REASON_CHARS = 1_000
_NEVER = float("inf")
# More records than the client can hold fetched (fetch_max_bytes below).
_DRAIN_RECORDS = 10_000_000


class DeliveryError(IcpnsError):
    """An output message was refused by the broker for good (not an outage)."""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Where the service reads and writes, and how it paces its work.

    Parameters
    ----------
    bootstrap_servers
        Kafka ``HOST:PORT`` list, comma-separated.
    topic
        Input topic of click events (JSON).
    group_id
        Consumer group.
    negatives_topic
        Output topic of explained negatives (JSON, keyed by user).
    dead_letter_topic
        Output topic of malformed input messages with their reason.
    checkpoint_dir
        Directory of the state checkpoints; one service per directory.
    checkpoint_every
        Input messages between two checkpoints.
    checkpoint_interval
        Seconds after which pending work is checkpointed even below
        ``checkpoint_every`` messages.
    keep_checkpoints
        Checkpoint files kept (the newest); older good ones are the fallback
        when the newest is damaged.
    auto_offset_reset
        Where a partition with neither checkpoint nor committed offset starts:
        ``"earliest"`` or ``"latest"``.
    max_poll_records
        Most messages handled per poll; bounds the work between two polls.
    session_timeout_ms, heartbeat_interval_ms, max_poll_interval_ms
        Consumer-group timeouts, in milliseconds (Kafka's meaning).
    group_instance_id
        Static member id of this service in its group (Kafka's
        ``group.instance.id``), unique per instance; None joins as a dynamic
        member. A restart under the same id takes its partitions back at
        once, where a dynamic member waits for the session of the crashed
        one to time out first. Another process under the same id fences
        this one out of the group.
    connect_retries
        Attempts to reach the broker at start before giving up.
    retry_backoff
        First pause between attempts, in seconds; doubles after each failure.
    flush_timeout
        Seconds a checkpoint waits for outputs to be acknowledged before it
        is postponed (the broker is probably away).
    stop_timeout
        Seconds a stop keeps trying to save the final checkpoint and commit
        its offsets while the broker is away or the group is rejoined; past
        that the service exits with code 1 and the next start resumes from
        the last checkpoint saved.
    create_output_topics
        Create the negatives and dead-letter topics when missing.
    output_partitions
        Partitions of the output topics it creates.
    metrics_port
        Port of the Prometheus ``/metrics`` endpoint; None serves none.
    metrics_host
        Address the metrics endpoint binds to.
    exit_when_idle
        Stop (checkpoint, commit, exit) after this many seconds with nothing
        left to read; None runs until stopped.
    max_time_skew
        Seconds of event time a partition may run ahead of the slowest one
        that still has messages to read; ahead of that it is paused, so a
        backlog is learned close to time order. None lets Kafka's fetch
        order decide.
    client_id
        Client id reported to the broker.
    """

    bootstrap_servers: str
    topic: str
    group_id: str
    negatives_topic: str
    dead_letter_topic: str
    checkpoint_dir: Path
    checkpoint_every: int = 5_000
    checkpoint_interval: float = 30.0
    keep_checkpoints: int = 3
    auto_offset_reset: str = "earliest"
    max_poll_records: int = 500
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    group_instance_id: str | None = None
    connect_retries: int = 5
    retry_backoff: float = 1.0
    flush_timeout: float = 30.0
    stop_timeout: float = 30.0
    create_output_topics: bool = False
    output_partitions: int = 1
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    exit_when_idle: float | None = None
    max_time_skew: float | None = 3_600.0
    client_id: str = "icpns-stream"

    def __post_init__(self) -> None:
        for name in ("topic", "group_id", "negatives_topic", "dead_letter_topic"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if self.group_instance_id is not None and not self.group_instance_id:
            raise ValueError("group_instance_id must not be empty (None: dynamic)")
        topics = {self.topic, self.negatives_topic, self.dead_letter_topic}
        if len(topics) < 3:
            raise ValueError(
                "topic, negatives_topic and dead_letter_topic must differ, got "
                f"{self.topic!r}, {self.negatives_topic!r}, {self.dead_letter_topic!r}"
            )
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(
                "auto_offset_reset must be 'earliest' or 'latest', "
                f"got {self.auto_offset_reset!r}"
            )
        for name in (
            "checkpoint_every",
            "keep_checkpoints",
            "max_poll_records",
            "session_timeout_ms",
            "heartbeat_interval_ms",
            "max_poll_interval_ms",
            "connect_retries",
            "output_partitions",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("checkpoint_interval", "flush_timeout", "stop_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.retry_backoff < 0:
            raise ValueError(
                f"retry_backoff must be non-negative, got {self.retry_backoff}"
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                "heartbeat_interval_ms must be below session_timeout_ms, got "
                f"{self.heartbeat_interval_ms} >= {self.session_timeout_ms}"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65_535:
            raise ValueError(
                f"metrics_port must be between 0 and 65535, got {self.metrics_port}"
            )
        for name in ("exit_when_idle", "max_time_skew"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")


class ConsumerService:
    """Consume clicks from Kafka, run them through the engine, write negatives.

    Per input message: decode it (a malformed one goes to the dead-letter
    topic with its reason, partition, offset and original bytes), let the
    engine evaluate, learn and sample, and write each explained negative to
    the negatives topic keyed by user. Every ``checkpoint_every`` messages
    (and on stop, and before partitions are taken away in a rebalance) the
    outputs are flushed, the whole engine is checkpointed with the input
    offsets it covers, and only then are those offsets committed to the
    group. On start the service resumes from its newest good checkpoint and
    seeks to the offsets it recorded, reading its output topics back so that
    outputs written after that checkpoint are not written twice. Partitions
    are kept within ``max_time_skew`` of each other in event time: messages of
    a partition ahead wait in memory, and the partition is paused when enough
    wait, so a backlog is learned close to time order.

    Parameters
    ----------
    settings
        Topics, group, checkpoint directory and pacing; see `ServiceSettings`.
    config
        Engine options for a fresh start; a checkpoint made with other options
        is refused.
    metrics
        Where to count; a fresh `ServiceMetrics` when None.
    on_outcome
        Called with the input message and the engine's `EventOutcome` after
        each good message (duplicates included), on the service's thread;
        another sink for the negatives, or a probe.

    Attributes
    ----------
    engine
        The engine, once `run` has loaded or created it.
    positions
        Next input offset per partition covered by the engine's state.
    event_times
        Event time (Unix seconds) of the last click read from each partition.
    last_checkpoint
        The newest checkpoint saved or loaded.

    Notes
    -----
    A message costs one decode, one engine step and K producer sends; a
    checkpoint costs one pickle of the engine (a few MB for MovieLens-100k,
    tens of ms) and two fsyncs. Saving state and offsets together and
    committing after the save is the checkpoint-then-commit scheme of stream
    processors such as Apache Flink (Carbone et al., "State Management in
    Apache Flink", VLDB 2017), reduced to one process.

    The engine's state is global (communities span all users), so the
    service is meant to run as one instance per group. Several instances
    each learn from the partitions they are given, each with its own state
    and checkpoint directory; a partition that moves to another instance and
    back is learned again from this instance's own offsets.

    Examples
    --------
    >>> settings = ServiceSettings(
    ...     "127.0.0.1:9092", "clicks", "icpns", "negatives", "clicks.dlq",
    ...     Path("state"),
    ... )
    >>> settings.checkpoint_every, settings.auto_offset_reset
    (5000, 'earliest')
    """

    def __init__(
        self,
        settings: ServiceSettings,
        config: EngineConfig | None = None,
        *,
        metrics: ServiceMetrics | None = None,
        on_outcome: Callable[[Any, EventOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_outcome = on_outcome
        self.config = config or EngineConfig()
        self.metrics = metrics or ServiceMetrics()
        self.engine: Engine | None = None
        self.positions: dict[TopicPartition, int] = {}
        self.event_times: dict[TopicPartition, float] = {}
        self._held: dict[TopicPartition, deque[Any]] = {}
        # Input offsets this state committed, and where it took partitions over.
        self._commits = CommitRecord()
        # Assigned, and not yet checked against what the group committed.
        self._unresolved: set[TopicPartition] = set()
        self._busy = False
        self.last_checkpoint: Checkpoint | None = None
        self.metrics_port: int | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._consumer: Any = None
        self._producer: Any = None
        self._ledger: OutputLedger | None = None
        self._lineage = ""
        self._pending: list[Any] = []
        self._totals = {"messages": 0, "dead_letters": 0, "negatives": 0}
        self._since_checkpoint = 0
        self._last_checkpoint_time = time.monotonic()
        self._uncommitted: dict[TopicPartition, int] = {}
        self._retry_at = 0.0
        self._retry_pause = 0.0
        self._closing = False
        self._fatal: IcpnsError | None = None
        self._last_record_time = time.monotonic()
        self._last_metrics = 0.0
        self._last_progress = time.monotonic()
        self._dumps = json.dumps

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the service to finish its batch, checkpoint, commit and return."""
        self._stop.set()

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until the service consumes (state loaded, clients connected)."""
        return self._ready.wait(timeout)

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT stop the service cleanly (main thread only).

        Once consuming, the current batch is finished, the state checkpointed
        and the offsets committed; while still connecting, the start is
        abandoned at once (`KeyboardInterrupt`).
        """

        def handle(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            # Still connecting (retries can take a while): nothing to save.
            if not self._ready.is_set():
                logger.info("%s received while starting: giving up", name)
                raise KeyboardInterrupt
            logger.info("%s received: stopping after the current batch", name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        """Consume until stopped; return the exit code.

        0 after a clean stop: the final checkpoint saved and its offsets
        committed. 1 when they could not be within ``stop_timeout`` (the
        broker stayed away); the next start resumes from the last checkpoint.

        Raises
        ------
        CheckpointError
            When the checkpoint directory holds no good checkpoint, holds one
            made with other engine options, or cannot be written.
        BrokerUnavailableError, TopicMissingError
            When the broker or a topic cannot be found at start.
        MetricsPortError
            When the metrics endpoint cannot listen on ``metrics_port``.
        DeliveryError
            When the broker refuses an output for good.
        """
        settings = self.settings
        # A port taken fails the start before the state or the broker is touched.
        if settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(
                settings.metrics_port, settings.metrics_host
            )
        try:
            with _DirectoryLock(settings.checkpoint_dir):
                try:
                    clean = self._consume()
                finally:
                    self._close()
        finally:
            # Also when the directory is locked by another service.
            self.metrics.close()
        return 0 if clean else 1

    def _consume(self) -> bool:
        """Load, connect and consume until stopped; return if the stop was clean."""
        settings = self.settings
        fresh = self._load_state()
        self._connect(fresh)
        self._consumer.subscribe([settings.topic], listener=_Rebalance(self))
        self._ready.set()
        logger.info(
            "consuming %s as group %s; negatives to %s, dead letters to %s",
            settings.topic,
            settings.group_id,
            settings.negatives_topic,
            settings.dead_letter_topic,
        )
        while not self._stop.is_set():
            self._step()
        return self._finish()

    # ------------------------------------------------------------ start-up

    def _load_state(self) -> bool:
        """Load the newest good checkpoint, or start empty; return if fresh."""
        settings = self.settings
        self._commits = CommitRecord.load(settings.checkpoint_dir, settings.topic)
        checkpoint = Checkpoint.load_latest(settings.checkpoint_dir)
        if checkpoint is None:
            logger.info(
                "no checkpoint in %s: starting with an empty state",
                settings.checkpoint_dir,
            )
            self.engine = Engine(self.config)
            self._lineage = uuid.uuid4().hex
            return True

        for path, reason in checkpoint.rejected:
            logger.warning(
                "checkpoint %s rejected (%s); using an older one", path, reason
            )
        self._check_compatible(checkpoint)
        metadata = checkpoint.metadata
        self.engine = checkpoint.engine
        self.last_checkpoint = checkpoint
        self._lineage = metadata["lineage"]
        self._totals.update(metadata.get("totals", {}))
        self.positions = {
            TopicPartition(settings.topic, partition): offset
            for partition, offset in checkpoint.offsets.get(settings.topic, {}).items()
        }
        self._ledger = OutputLedger(self._lineage, metadata.get("sink_offsets", {}))
        # The state on disk is this checkpoint's until the next one is saved.
        self.metrics.last_checkpoint.set(checkpoint.created)
        logger.info(
            "resuming from checkpoint %s: %d events learned, offsets %s",
            checkpoint.path,
            self.engine.events,
            _describe(self.positions),
        )
        return False

    def _check_compatible(self, checkpoint: Checkpoint) -> None:
        settings = self.settings
        saved = checkpoint.engine.config.to_dict()
        wanted = self.config.to_dict()
        differences = [
            f"{name}={saved[name]!r} (asked {wanted[name]!r})"
            for name in saved
            if saved[name] != wanted.get(name)
        ]
        if differences:
            raise CheckpointError(
                f"the checkpoint in {settings.checkpoint_dir} was made with other "
                f"engine options: {', '.join(differences)}. Restart with the same "
                "options, or use a new --checkpoint-dir for a new state."
            )
        topic = checkpoint.metadata.get("topic")
        if topic != settings.topic:
            raise CheckpointError(
                f"the checkpoint in {settings.checkpoint_dir} holds the state of "
                f"topic {topic!r}, not {settings.topic!r}; use a new --checkpoint-dir"
            )

    def _connect(self, fresh: bool) -> None:
        """Build the clients, check the topics, and read the outputs back."""
        settings = self.settings
        common: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap_servers.split(","),
            "client_id": settings.client_id,
            "bootstrap_timeout_ms": 5_000,
            "reconnect_backoff_max_ms": _RECONNECT_BACKOFF_MAX_MS,
        }
        self._consumer = self._connect_client(
            lambda: KafkaConsumer(
                group_id=settings.group_id,
                group_instance_id=settings.group_instance_id,
                enable_auto_commit=False,
                auto_offset_reset=settings.auto_offset_reset,
                # Clicks of an aborted transaction never happened.
                isolation_level="read_committed",
                allow_auto_create_topics=False,
                max_poll_records=settings.max_poll_records,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                max_poll_interval_ms=settings.max_poll_interval_ms,
                # Smaller fetches give time alignment a finer grain: it acts
                # between two fetches of a partition (see _align_partitions).
                max_partition_fetch_bytes=256 * 1024,
                fetch_max_bytes=16 * 1024 * 1024,
                **common,
            ),
            "consumer",
        )
        self._producer = self._connect_client(
            lambda: KafkaProducer(**PRODUCER_OPTIONS, **common), "producer"
        )

        # Every topic must exist: a typo must not create an empty topic.
        require_topic(
            self._consumer,
            settings.topic,
            hint=(
                "Create it, for example with: icpns-stream produce FILE "
                f"--bootstrap-servers {settings.bootstrap_servers} --topic "
                f"{settings.topic} --create-topic --partitions N"
            ),
        )
        sinks = (settings.negatives_topic, settings.dead_letter_topic)
        if settings.create_output_topics:
            for sink in sinks:
                create_topic(
                    settings.bootstrap_servers,
                    sink,
                    partitions=settings.output_partitions,
                    retries=settings.connect_retries,
                    client_id=settings.client_id,
                )
        partitions = {
            sink: require_topic(
                self._consumer,
                sink,
                hint="Create it, or pass --create-output-topics.",
            )
            for sink in sinks
        }

        # Outputs written after the checkpoint must be found before anything
        # is processed again; a fresh state only needs to know where they end.
        reader = self._connect_client(
            lambda: KafkaConsumer(
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                **common,
            ),
            "output reader",
        )
        try:
            if fresh:
                self._start_positions(reader)
                ends = reader.end_offsets(
                    [
                        TopicPartition(t, p)
                        for t, parts in partitions.items()
                        for p in parts
                    ]
                )
                positions: dict[str, dict[int, int]] = {}
                for tp, offset in ends.items():
                    positions.setdefault(tp.topic, {})[tp.partition] = offset
                self._ledger = OutputLedger(self._lineage, positions)
            else:
                assert self._ledger is not None
                self._ledger.scan(reader, partitions)
        finally:
            with muted_client_logs():
                reader.close()

        # A crash before the first periodic checkpoint must roll back to here.
        if fresh:
            self._save_checkpoint("initial")

    def _connect_client(self, factory: Callable[[], Any], what: str) -> Any:
        settings = self.settings
        return connect(
            factory,
            what=what,
            bootstrap_servers=settings.bootstrap_servers,
            retries=settings.connect_retries,
            backoff=settings.retry_backoff,
        )

    def _start_positions(self, reader: Any) -> None:
        """Fix where a fresh state starts in every partition of the input.

        Recorded in the initial checkpoint, so a state that falls back to it
        reads again from there, whatever the group committed since.
        """
        settings = self.settings
        partitions = [
            TopicPartition(settings.topic, p)
            for p in sorted(self._consumer.partitions_for_topic(settings.topic))
        ]
        committed: dict[TopicPartition, int] = {}
        for tp in partitions:
            offset = self._consumer.committed(tp)
            if offset is not None:
                committed[tp] = offset
        if settings.auto_offset_reset == "earliest":
            defaults = reader.beginning_offsets(partitions)
        else:
            defaults = reader.end_offsets(partitions)
        self.positions = {tp: committed.get(tp, defaults[tp]) for tp in partitions}
        if committed:
            logger.warning(
                "group %s has committed offsets %s but %s holds no state for them: "
                "the events before those offsets are not in this state. Resuming "
                "from the committed offsets; use a new --group-id to learn the "
                "topic from the beginning.",
                settings.group_id,
                _describe(committed),
                settings.checkpoint_dir,
            )

    # ------------------------------------------------------------ main loop

    def _step(self) -> None:
        """One poll, its messages, and whatever checkpoint is due."""
        # With messages in hand that can be handled, the poll does not wait.
        try:
            batches = self._consumer.poll(
                timeout_ms=0 if self._busy else _POLL_TIMEOUT_MS,
                max_records=self.settings.max_poll_records,
            )
        except KafkaError as exc:
            if self._fatal is not None:
                raise self._fatal from exc

            # A lost broker: the client reconnects by itself; wait, then retry.
            pause = self._next_pause()
            logger.warning("poll failed (%s); retrying in %.1f s", exc, pause)
            self._stop.wait(pause)
            return
        if self._fatal is not None:
            raise self._fatal
        if self._unresolved:
            self._resolve_starts(batches)
        now = time.monotonic()
        count = 0
        for tp, records in batches.items():
            self._held.setdefault(tp, deque()).extend(records)
            count += len(records)
        self._busy = bool(self._handle_held()) and bool(self._held)
        if self._busy or count:
            self._last_record_time = now
        self._skip_unreturned_offsets()

        self._align_partitions(drained=count < self.settings.max_poll_records)
        self._maybe_checkpoint(now)
        self._publish_metrics(now)
        self._maybe_exit_idle(now)

    def _handle_held(self) -> int:
        """Handle the messages received and not yet handled; return how many.

        Slowest partition first; a partition ahead in event time keeps its
        messages for a later step. Work per step is bounded by
        ``max_poll_records`` and by half the poll interval, so the group never
        takes a slow member for a dead one.
        """
        budget = self.settings.max_poll_interval_ms / 2_000
        deadline = time.monotonic() + budget
        handle, times, held = self._handle, self.event_times, self._held
        limits = self._time_limits()
        left = self.settings.max_poll_records
        for tp in sorted(held, key=lambda tp: times.get(tp, -_NEVER)):
            queue, limit = held[tp], limits.get(tp, _NEVER)
            while queue and left > 0 and times.get(tp, -_NEVER) <= limit:
                if time.monotonic() > deadline:
                    logger.warning(
                        "messages took over %.0f s between two polls; the rest "
                        "waits for the next step (lower --max-poll-records)",
                        budget,
                    )
                    return self.settings.max_poll_records - left
                handle(queue.popleft())
                left -= 1
            if not queue:
                del held[tp]
        return self.settings.max_poll_records - left

    def _skip_unreturned_offsets(self) -> None:
        """Move past offsets the client skipped without returning a message.

        Transaction markers (and aborted transactions, read committed) take
        offsets that no message is returned for: a partition ending in one
        would otherwise never catch up with its high watermark, keeping its lag
        above 0 and time alignment waiting for it.
        """
        consumer, positions = self._consumer, self.positions
        for tp in consumer.assignment():
            position = positions.get(tp)
            if position is None or tp in self._held or tp in self._unresolved:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None or highwater <= position:
                continue
            # Known positions make this a lookup, not a request.
            fetched = consumer.position(tp, timeout_ms=0)
            if fetched is not None and fetched > position:
                positions[tp] = fetched

    def _time_limits(self) -> dict[TopicPartition, float]:
        """Event time up to which each partition may be read now.

        Kafka hands partitions over in whatever order its fetches complete (a
        backlog may come one partition after another), while the engine learns
        best close to time order, as a replay would. So a partition may run at
        most ``max_time_skew`` ahead of the slowest other partition that still
        has messages to read; one never read (or of unknown end) counts as the
        oldest until it is read.
        """
        skew = self.settings.max_time_skew
        if skew is None:
            return {}
        assigned = self._consumer.assignment()
        lag = self.lag()
        times = {tp: self.event_times.get(tp, -_NEVER) for tp in assigned}
        waiting = sorted(
            (times[tp], tp)
            for tp in assigned
            if lag.get((tp.topic, tp.partition), 1) > 0
        )

        # The slowest other partition is the slowest, or the second slowest
        # for the slowest itself.
        limits = {tp: _NEVER for tp in assigned}
        if waiting:
            first_time, first = waiting[0]
            for tp in assigned:
                if tp != first:
                    limits[tp] = first_time + skew
                elif len(waiting) > 1:
                    limits[tp] = waiting[1][0] + skew
        return limits

    def _align_partitions(self, *, drained: bool) -> None:
        """Stop fetching partitions that are ahead and have plenty in hand.

        A partition ahead in event time keeps being fetched until it holds
        ``max_poll_records`` messages waiting; then it is paused, so what
        waits stays bounded, and resumed once it is needed again. ``drained``
        says whether the last poll handed out every record the client had
        fetched (it returned fewer than it was allowed to).
        """
        consumer = self._consumer
        limits = self._time_limits()
        times, held = self.event_times, self._held
        full = self.settings.max_poll_records
        ahead = {
            tp
            for tp, limit in limits.items()
            if times.get(tp, -_NEVER) > limit and len(held.get(tp, ())) >= full
        }
        paused = set(consumer.paused())
        if ahead - paused:
            # Pausing a partition whose fetched records are not all handed out
            # parks them for good in kafka-python 3.0 (they are never given
            # back on resume), so everything fetched is taken out first.
            if not drained:
                try:
                    extra = consumer.poll(timeout_ms=0, max_records=_DRAIN_RECORDS)
                except KafkaError as exc:
                    logger.debug("not pausing this time: %s", exc)
                    return
                for tp, records in extra.items():
                    self._held.setdefault(tp, deque()).extend(records)
            consumer.pause(*sorted(ahead - paused))
            logger.debug("paused %s: ahead in event time", _describe_partitions(ahead))

        if paused - ahead:
            consumer.resume(*sorted(paused - ahead))

    def _handle(self, record: Any) -> None:
        """Decode, learn and answer one input message."""
        engine = self.engine
        assert engine is not None
        topic, partition, offset = record.topic, record.partition, record.offset
        try:
            if record.value is None:
                raise InvalidEventError("message has no value")
            event = decode_event(record.value)
        except InvalidEventError as exc:
            self._dead_letter(record, str(exc))
        else:
            outcome = engine.process(event)
            if outcome.negatives:
                self._send_negatives(topic, partition, offset, outcome.negatives)
            self.metrics.count_event(
                learned=not outcome.duplicate, duplicate=outcome.duplicate
            )
            self.event_times[TopicPartition(topic, partition)] = event.timestamp
            if self.on_outcome is not None:
                self.on_outcome(record, outcome)
        self.positions[TopicPartition(topic, partition)] = offset + 1
        self._totals["messages"] += 1
        self._since_checkpoint += 1

    def _send_negatives(
        self, topic: str, partition: int, offset: int, negatives: list[Negative]
    ) -> None:
        ledger = self._ledger
        assert ledger is not None
        send, dumps, pending = self._send, self._dumps, self._pending
        out = self.settings.negatives_topic
        key = negatives[0].user_id.encode("utf-8")
        written_before = bool(ledger.written)
        sent = 0
        for index, negative in enumerate(negatives):
            # After a restart, what the previous run wrote is not written again.
            if written_before and ledger.seen((topic, partition, offset, index)):
                continue

            # Negative.to_dict() without its deep copy, which cost more than
            # the Kafka send.
            body = {name: getattr(negative, name) for name in _NEGATIVE_FIELDS}
            headers = ledger.headers(topic, partition, offset, index)
            pending.append(
                send(out, key=key, value=dumps(body).encode(), headers=headers)
            )
            sent += 1
        # The total counts what the topic holds, including what was found there.
        self._totals["negatives"] += len(negatives)
        self.metrics.negatives.inc(sent)

    def _dead_letter(self, record: Any, reason: str) -> None:
        ledger = self._ledger
        assert ledger is not None
        topic, partition, offset = record.topic, record.partition, record.offset
        logger.debug("dead letter %s[%d]@%d: %s", topic, partition, offset, reason)
        self.metrics.count_dead_letter()
        self._totals["dead_letters"] += 1
        if ledger.seen((topic, partition, offset, 0)):
            return
        key, value = _bounded_dead_letter(record, reason)
        self._pending.append(
            self._send(
                self.settings.dead_letter_topic,
                key=key,
                value=value,
                headers=ledger.headers(topic, partition, offset, 0),
            )
        )

    def _send(self, topic: str, **message: Any) -> Any:
        """Send one output; a message the client refuses at once stops the service."""
        try:
            return self._producer.send(topic, **message)
        except KafkaError as exc:
            raise DeliveryError(
                f"cannot write to {topic}: {exc}. Stopping without a checkpoint "
                "past it; on restart the service goes back to its last checkpoint."
            ) from exc

    # ------------------------------------------------------------ checkpoints

    def _maybe_checkpoint(self, now: float) -> None:
        settings = self.settings
        if now < self._retry_at:
            return
        due = self._since_checkpoint >= settings.checkpoint_every or (
            self._since_checkpoint > 0
            and now - self._last_checkpoint_time >= settings.checkpoint_interval
        )
        if due:
            self._checkpoint_and_commit("periodic")
        elif self._uncommitted:
            self._commit(dict(self._uncommitted))

    def _checkpoint_and_commit(self, reason: str) -> bool:
        """Save the state, then commit its offsets; return if the save happened."""
        if self._save_checkpoint(reason):
            self._commit(dict(self._uncommitted))
            return True
        return False

    def _save_checkpoint(self, reason: str) -> bool:
        """Flush the outputs and save the state with its offsets.

        Returns False, after logging, when the outputs could not be flushed in
        time (a lost broker); the checkpoint is retried later with backoff.
        """
        settings = self.settings
        engine, ledger = self.engine, self._ledger
        assert engine is not None and ledger is not None
        started = time.monotonic()

        # The state may only cover inputs whose outputs are safely written.
        if not self._flush_outputs():
            return False
        source = {
            settings.topic: {
                tp.partition: offset
                for tp, offset in sorted(self.positions.items())
                if tp.topic == settings.topic
            }
        }
        checkpoint = Checkpoint(
            engine,
            source,
            {
                "topic": settings.topic,
                "group_id": settings.group_id,
                "lineage": self._lineage,
                "sink_offsets": ledger.checkpoint_positions(source),
                "totals": dict(self._totals),
                "reason": reason,
            },
        )
        checkpoint.save(settings.checkpoint_dir, keep=settings.keep_checkpoints)
        self.last_checkpoint = checkpoint
        self._since_checkpoint = 0
        self._last_checkpoint_time = time.monotonic()
        self._retry_at = 0.0
        self._retry_pause = 0.0
        assigned = self._consumer.assignment()
        self._uncommitted = {
            tp: offset for tp, offset in self.positions.items() if tp in assigned
        }
        self.metrics.checkpoints.inc()
        self.metrics.last_checkpoint.set(checkpoint.created)
        logger.info(
            "checkpoint %d saved (%s): %d events learned, offsets %s, %.2f s",
            checkpoint.sequence,
            reason,
            engine.events,
            _describe(self.positions),
            time.monotonic() - started,
        )
        return True

    def _flush_outputs(self) -> bool:
        try:
            self._producer.flush(timeout=self.settings.flush_timeout)
        except KafkaTimeoutError:
            pause = self._next_pause()
            self._retry_at = time.monotonic() + pause
            logger.warning(
                "outputs not acknowledged within %.0f s (broker unreachable?); "
                "checkpoint postponed by %.1f s",
                self.settings.flush_timeout,
                pause,
            )
            return False
        pending, self._pending = self._pending, []
        for future in pending:
            if future.failed():
                raise DeliveryError(
                    f"the broker refused an output: {future.exception}. Stopping "
                    "without a checkpoint past it; on restart the service goes "
                    "back to its last checkpoint."
                )
            metadata = future.value
            assert self._ledger is not None
            self._ledger.record_delivery(
                metadata.topic, metadata.partition, metadata.offset
            )
        return True

    def _commit(
        self, positions: Mapping[TopicPartition, int], timeout_ms: int = 10_000
    ) -> bool:
        """Commit the offsets of the assigned partitions; return if it landed."""
        offsets = self._assigned_offsets(positions)
        if not offsets:
            return True
        try:
            self._consumer.commit(offsets, timeout_ms=timeout_ms)
        except KafkaError as exc:
            self.metrics.commit_failures.inc()
            logger.warning(
                "offset commit failed (%s); the checkpoint holds the offsets and "
                "the commit is retried later",
                exc,
            )
            self._retry_at = time.monotonic() + self._next_pause()
            return False
        for tp in offsets:
            self._uncommitted.pop(tp, None)
        self._record_commits(offsets)
        logger.info("committed offsets %s", _describe(positions))
        return True

    def _record_commits(self, offsets: Mapping[TopicPartition, Any]) -> None:
        """Remember what this state committed, to know its own offsets later."""
        topic = self.settings.topic
        self._commits.offsets.update(
            {
                tp.partition: meta.offset
                for tp, meta in offsets.items()
                if tp.topic == topic
            }
        )
        self._save_commit_record()

    def _save_commit_record(self) -> None:
        try:
            self._commits.save(self.settings.checkpoint_dir, self.settings.topic)
        except OSError as exc:
            logger.warning("cannot record the offsets committed: %s", exc)

    def _assigned_offsets(
        self, positions: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, Any]:
        # A partition not yet checked against the group may hold a stale offset.
        assigned = self._consumer.assignment() - self._unresolved
        return {
            tp: OffsetAndMetadata(offset, "", -1)
            for tp, offset in positions.items()
            if tp in assigned
        }

    def _next_pause(self) -> float:
        base = max(self.settings.retry_backoff, 0.1)
        self._retry_pause = min(_MAX_RETRY_PAUSE, max(base, self._retry_pause * 2))
        return self._retry_pause

    # ------------------------------------------------------------ rebalances

    def _on_revoked(self, revoked: set[TopicPartition]) -> dict[TopicPartition, Any]:
        """Checkpoint before partitions go; return the offsets to commit."""
        if self._closing or self.engine is None or not revoked:
            return {}
        logger.info("partitions revoked: %s", _describe_partitions(revoked))
        # Offsets of partitions not yet checked against the group may be stale.
        unchecked = revoked & self._unresolved
        self._unresolved -= revoked
        for tp in revoked:
            self._held.pop(tp, None)
        if self._since_checkpoint > 0 and not self._save_checkpoint("revoke"):
            return {}
        return {
            tp: OffsetAndMetadata(offset, "", -1)
            for tp, offset in self.positions.items()
            if tp in revoked - unchecked
        }

    def _on_committed_on_revoke(self, offsets: Mapping[TopicPartition, Any]) -> None:
        for tp in offsets:
            self._uncommitted.pop(tp, None)
        self._record_commits(offsets)
        logger.info(
            "committed offsets %s before giving the partitions up",
            _describe({tp: meta.offset for tp, meta in offsets.items()}),
        )

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Start each partition where the state stopped, until it is resolved."""
        for tp in sorted(assigned):
            self._held.pop(tp, None)
            offset = self.positions.get(tp)
            if offset is not None:
                self._consumer.seek(tp, offset)
        self._unresolved |= assigned
        known = {tp: self.positions[tp] for tp in assigned if tp in self.positions}
        logger.info(
            "partitions assigned: %s; from the checkpoint: %s; others start at the "
            "group's committed offset, else %s",
            _describe_partitions(assigned),
            _describe(known) or "none",
            self.settings.auto_offset_reset,
        )

    def _resolve_starts(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Check newly assigned partitions against the group's committed offsets.

        A group offset past the state's own is another member's, who learned
        those events: the partition starts there, so nothing is learned twice
        in the group. Unless it is this state's own last commit: a newer
        checkpoint was lost, and the state learns again what was its own (see
        `_start_after_others`), bringing the group in line. Messages in
        ``batches`` fetched from a start that moved are dropped and fetched
        again. When the group cannot be asked now, the partitions left wait
        the same way for the next step.
        """
        consumer, topic = self._consumer, self.settings.topic
        saved = {}
        if self.last_checkpoint is not None:
            saved = self.last_checkpoint.offsets.get(topic, {})
        for tp in sorted(self._unresolved & consumer.assignment()):
            own = self.positions.get(tp)
            try:
                group = consumer.committed(tp, timeout_ms=_COMMITTED_TIMEOUT_MS)
            except KafkaError as exc:
                logger.warning("cannot read the group's offsets yet: %s", exc)
                for waiting in self._unresolved:
                    records = batches.pop(waiting, None)
                    if records:
                        consumer.seek(waiting, records[0].offset)
                return
            start = self._start_after_others(tp, own, group)
            if start is not None:
                # What was fetched from the old start is fetched again.
                batches.pop(tp, None)
                self.positions[tp] = start
                consumer.seek(tp, start)
                self._uncommitted.pop(tp, None)
            elif tp.partition in saved:
                # Offsets of a checkpoint that a stop or a lost membership
                # left uncommitted are committed now.
                self._uncommitted[tp] = saved[tp.partition]
            self._unresolved.discard(tp)
        self._unresolved &= consumer.assignment()

    def _start_after_others(
        self, tp: TopicPartition, own: int | None, group: int | None
    ) -> int | None:
        """Where ``tp`` must start so as not to learn another member's events.

        None when the state's own offset will do.
        """
        if group is None or (own is not None and group <= own):
            return None
        record, partition = self._commits, tp.partition
        if group != record.offsets.get(partition):
            logger.info(
                "%s[%d]: another member learned up to %d; starting there",
                tp.topic,
                partition,
                group,
            )
            record.adopted[partition] = group
            self._save_commit_record()
            return group
        # The group holds this state's own commit: a newer checkpoint was lost.
        # What came before the state took the partition over is not its own.
        adopted = record.adopted.get(partition)
        if own is not None and adopted is not None and adopted > own:
            logger.info(
                "%s[%d]: learning again from %d, where this state took over",
                tp.topic,
                partition,
                adopted,
            )
            return adopted
        return None

    # ------------------------------------------------------------ metrics, stop

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages between the state's position and the high watermark."""
        consumer = self._consumer
        out: dict[tuple[str, int], int] = {}
        if consumer is None:
            return out
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = self.positions.get(tp)
            if position is None:
                # A partition the state has not read from yet.
                try:
                    position = consumer.position(tp, timeout_ms=1_000)
                except KafkaError:
                    continue
            out[(tp.topic, tp.partition)] = max(0, highwater - position)
        return out

    def _publish_metrics(self, now: float) -> None:
        if now - self._last_metrics < _METRICS_EVERY:
            return
        self._last_metrics = now
        engine = self.engine
        assert engine is not None
        metrics = self.metrics
        lag = self.lag()
        metrics.set_lag(lag)
        rate = metrics.update_rate(now)
        ndcg = float(engine.evaluator.result().get("window_ndcg@10", 0.0))
        metrics.window_ndcg.set(ndcg)
        if now - self._last_progress >= _PROGRESS_LOG_EVERY:
            self._last_progress = now
            # Without partitions there is no lag to report, only a wait.
            behind = (
                f"lag {sum(lag.values())}"
                if self._consumer.assignment()
                else "no partitions assigned yet: waiting for the group"
            )
            logger.info(
                "%d events learned, %d dead letters, %.0f messages/s, %s, "
                "window NDCG@10 %.4f",
                engine.events,
                self._totals["dead_letters"],
                rate,
                behind,
                ndcg,
            )

    def _maybe_exit_idle(self, now: float) -> None:
        idle = self.settings.exit_when_idle
        if idle is None or now - self._last_record_time < idle:
            return
        assigned = self._consumer.assignment()
        lag = self.lag()
        if assigned and len(lag) == len(assigned) and not any(lag.values()):
            logger.info("nothing left to read for %.0f s: stopping", idle)
            self._stop.set()

    def _finish(self) -> bool:
        """Checkpoint and commit what is pending; return whether both landed.

        Right after an outage the producer may still be reconnecting and the
        group may have dropped this member, so both are retried until
        ``stop_timeout`` runs out, with polls in between for the group to be
        rejoined.
        """
        deadline = time.monotonic() + self.settings.stop_timeout
        saved = self._since_checkpoint == 0
        while True:
            # The state first: its offsets are committed only once it is saved.
            if not saved and self._save_checkpoint("stop"):
                saved = True
                # A save amid a rejoin sees no assignment: its offsets go to
                # whichever partitions are this member's once the group is stable.
                self._uncommitted = dict(self.positions)
            if saved and self._commit_final(deadline):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait_in_group(min(_STOP_RETRY_PAUSE, left))
        logger.error(
            "stopping after %.0f s without %s; the next start resumes from "
            "checkpoint %s",
            self.settings.stop_timeout,
            (
                f"committing offsets {_describe(self._uncommitted)}"
                if saved
                else "a final checkpoint (outputs not acknowledged)"
            ),
            self.last_checkpoint.path if self.last_checkpoint else None,
        )
        return False

    def _commit_final(self, deadline: float) -> bool:
        """Commit what the last checkpoint left uncommitted; return if done."""
        if not self._uncommitted:
            return True
        # Which partitions are this member's is only known in a stable group.
        if self._consumer.group_metadata().state != MemberState.STABLE:
            return False
        if self._unresolved:
            self._resolve_starts({})
            if self._unresolved:
                return False
        left_ms = int((deadline - time.monotonic()) * 1_000)
        return self._commit(dict(self._uncommitted), max(100, min(10_000, left_ms)))

    def _wait_in_group(self, seconds: float) -> None:
        """Wait inside poll, so that the group can be rejoined; read nothing."""
        consumer = self._consumer
        try:
            # Paused partitions are not fetched; those of a new assignment are
            # paused at the next turn, and what they fetched is dropped: the
            # offsets committed are the state's, not the client's.
            consumer.pause(*consumer.assignment())
            consumer.poll(timeout_ms=int(seconds * 1_000))
        except KafkaError as exc:
            logger.debug("waiting for the broker: %s", exc)
            time.sleep(seconds)
        if self._fatal is not None:
            raise self._fatal

    def _close(self) -> None:
        self._closing = True
        self._ready.clear()
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except KafkaError as exc:
                logger.warning("closing the consumer: %s", exc)
        if self._producer is not None:
            try:
                self._producer.close(timeout=self.settings.flush_timeout)
            except KafkaError as exc:
                logger.warning("closing the producer: %s", exc)
        self.metrics.close()
        logger.info("consumer service stopped")


class _Rebalance(AsyncConsumerRebalanceListener):
    """Checkpoint and commit before partitions go; seek when they come.

    The hooks run on the consumer's network thread while the service's own
    thread waits inside ``poll``, so they may touch the state; blocking
    consumer calls are not allowed there, hence the awaited async commit.
    """

    def __init__(self, service: ConsumerService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        service = self.service
        try:
            offsets = service._on_revoked(set(revoked))
        except IcpnsError as exc:
            # Raised again by the service's own thread once poll returns.
            service._fatal = exc
            return
        if not offsets:
            return
        try:
            await service._consumer.commit_async(offsets)
        except KafkaError as exc:
            service.metrics.commit_failures.inc()
            logger.warning("commit before the rebalance failed: %s", exc)
        else:
            service._on_committed_on_revoke(offsets)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.service._on_assigned(set(assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # The group moved on without us: nothing can be committed, the state
        # and its offsets stay as they are for the next assignment.
        for tp in lost:
            self.service._held.pop(tp, None)
        logger.warning(
            "partitions lost (membership expired): %s", _describe_partitions(lost)
        )


class _DirectoryLock:
    """An exclusive lock on a checkpoint directory, released even by SIGKILL."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: IO[str] | None = None

    def __enter__(self) -> _DirectoryLock:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = (self.directory / ".lock").open("w")
        except OSError as exc:
            raise CheckpointError(
                f"cannot use checkpoint directory {self.directory}: {exc}"
            ) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise CheckpointError(
                f"another service is using checkpoint directory {self.directory}; "
                "give each service its own --checkpoint-dir"
            ) from exc
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _bounded_dead_letter(record: Any, reason: str) -> tuple[bytes | None, bytes]:
    """Return the key and value of the dead letter of ``record``, cut to fit."""
    if len(reason) > _MAX_REASON_CHARS:
        reason = f"{reason[:_MAX_REASON_CHARS]}... ({len(reason):,} characters)"
    key: bytes | None = record.key
    if key is not None and len(key) > _MAX_DEAD_LETTER_KEY_BYTES:
        reason = f"{reason}; its key of {len(key):,} bytes is left out"
        key = None
    raw: bytes = record.value or b""
    kept = len(raw)
    where = {
        "source": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    body = DeadLetter.from_raw(raw, reason, **where).to_json().encode("utf-8")
    # Halving ends: with no raw byte kept the body is a short reason and place.
    while len(body) > _MAX_DEAD_LETTER_BYTES and kept > 0:
        kept //= 2
        cut = (
            f"{reason} (raw cut to its first {kept:,} of {len(raw):,} bytes; "
            "the whole message is at its source offset)"
        )
        body = DeadLetter.from_raw(raw[:kept], cut, **where).to_json().encode("utf-8")
    return key, body


def _describe(positions: Mapping[Any, int]) -> str:
    """``clicks[0]=120, clicks[1]=98`` for logs."""
    return ", ".join(
        f"{tp[0]}[{tp[1]}]={offset}" for tp, offset in sorted(positions.items())
    )


def _describe_partitions(partitions: set[TopicPartition]) -> str:
    return (
        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "none"
    )
