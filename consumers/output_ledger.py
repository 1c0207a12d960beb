"""What the service wrote to its output topics, so a restart never writes it twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from icpns_stream.exceptions import IcpnsError

__all__ = ["LINEAGE_HEADER", "SOURCE_HEADER", "OutputLedger", "SourceRef"]

logger = logging.getLogger(__name__)

#: Header naming the state lineage (one per checkpoint directory) that wrote it.
LINEAGE_HEADER = "icpns-lineage"
#: Header naming the input of an output message: ``topic/partition/offset/index``.
SOURCE_HEADER = "icpns-source"

#: (source topic, source partition, source offset, index of the output).
SourceRef = tuple[str, int, int, int]

Positions = dict[str, dict[int, int]]


class OutputLedger:
    """Positions of the output topics, and outputs already written past them.

    Every output message (negative or dead letter) carries two headers: the
    lineage of the state that wrote it, and the input message and index it
    came from. A checkpoint records, for each output partition, a position
    below which every output of the saved state lies. After a crash the state
    goes back to the checkpoint and the inputs after it are processed again;
    `scan` first reads the output topics from the recorded positions and
    remembers which of those outputs exist already, and the service skips
    them. Outputs reach their topics exactly once although inputs are
    processed at least once.

    Parameters
    ----------
    lineage
        Identifier of the state lineage, saved with the checkpoints.
    positions
        Output positions ``{topic: {partition: offset}}`` to start from.

    Attributes
    ----------
    written
        The outputs found by `scan` that must not be written again.

    Notes
    -----
    `seen` and `record_delivery` cost O(1); `scan` costs one read of the
    output written since the checkpoint. Keeping the position of the sink in
    the same checkpoint as the state follows the "idempotent sink" pattern of
    Kleppmann, *Designing Data-Intensive Applications* (2017), chapter 11.

    Examples
    --------
    >>> ledger = OutputLedger("run-a", {"negatives": {0: 10}})
    >>> ledger.headers("clicks", 0, 41, 2)
    [('icpns-lineage', b'run-a'), ('icpns-source', b'clicks/0/41/2')]
    >>> ledger.parse_headers(ledger.headers("clicks", 0, 41, 2))
    ('clicks', 0, 41, 2)
    >>> ledger.record_delivery("negatives", 0, 12)
    >>> ledger.checkpoint_positions({})
    {'negatives': {0: 13}}
    """

    def __init__(self, lineage: str, positions: Mapping[str, Mapping[int, int]]):
        if not lineage:
            raise ValueError("lineage must not be empty")
        self.lineage = lineage
        self._lineage_bytes = lineage.encode("utf-8")
        self._positions: Positions = {
            topic: dict(parts) for topic, parts in positions.items()
        }
        self._scan_start: Positions = {}
        self.written: set[SourceRef] = set()

    def headers(
        self, topic: str, partition: int, offset: int, index: int
    ) -> list[tuple[str, bytes]]:
        """Return the headers of one output of input ``topic/partition/offset``."""
        return [
            (LINEAGE_HEADER, self._lineage_bytes),
            (SOURCE_HEADER, f"{topic}/{partition}/{offset}/{index}".encode()),
        ]

    def parse_headers(self, headers: Iterable[tuple[str, bytes]]) -> SourceRef | None:
        """Return the input reference of an output of this lineage, else None."""
        lineage = source = None
        for name, value in headers:
            if name == LINEAGE_HEADER:
                lineage = value
            elif name == SOURCE_HEADER:
                source = value
        if lineage != self._lineage_bytes or source is None:
            return None
        try:
            topic, partition, offset, index = source.decode("utf-8").rsplit("/", 3)
            return topic, int(partition), int(offset), int(index)
        except ValueError:
            return None

    def seen(self, ref: SourceRef) -> bool:
        """Whether output ``ref`` was written before the last restart."""
        return ref in self.written

    def record_delivery(self, topic: str, partition: int, offset: int) -> None:
        """Note that an output of this lineage landed at ``offset``."""
        parts = self._positions.setdefault(topic, {})
        if offset + 1 > parts.get(partition, 0):
            parts[partition] = offset + 1

    def checkpoint_positions(
        self, source_offsets: Mapping[str, Mapping[int, int]]
    ) -> Positions:
        """Return the output positions to save with a state at ``source_offsets``.

        Outputs found by `scan` whose input lies at or after ``source_offsets``
        will be met again after another crash, so while any remain the
        positions stay where the scan started, for the next scan to find them.
        """
        # Outputs of inputs the state has passed can never be met again.
        self.written = {
            ref
            for ref in self.written
            if ref[2] >= source_offsets.get(ref[0], {}).get(ref[1], 0)
        }
        current = {topic: dict(parts) for topic, parts in self._positions.items()}
        if not self.written:
            self._scan_start = {}
            return current
        return {
            topic: {
                partition: min(
                    offset, self._scan_start.get(topic, {}).get(partition, offset)
                )
                for partition, offset in parts.items()
            }
            for topic, parts in current.items()
        }

    def scan(
        self,
        consumer: KafkaConsumer,
        partitions: Mapping[str, Iterable[int]],
        *,
        timeout: float = 60.0,
    ) -> int:
        """Read ``partitions`` of the output topics from the known positions.

        ``consumer`` must have no group; it is assigned the partitions. Output
        partitions without a known position are read from their beginning.
        Returns the number of this lineage's outputs found.

        Raises
        ------
        IcpnsError
            When the end of the topics is not reached within ``timeout`` s.
        """
        assigned = [
            TopicPartition(topic, partition)
            for topic, parts in sorted(partitions.items())
            for partition in sorted(parts)
        ]
        starts = {
            tp: self._positions.get(tp.topic, {}).get(tp.partition, 0)
            for tp in assigned
        }
        consumer.assign(assigned)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)

        # Read until each partition's position reaches its high watermark.
        deadline = time.monotonic() + timeout
        pending = set(assigned)
        found = 0
        while pending:
            if time.monotonic() > deadline:
                raise IcpnsError(
                    f"reading the output topics back took over {timeout:g} s; "
                    f"{len(pending)} partitions left"
                )
            batches: Any = consumer.poll(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    ref = self.parse_headers(record.headers or ())
                    if ref is not None:
                        self.written.add(ref)
                        found += 1
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and consumer.position(tp) >= highwater:
                    pending.discard(tp)

        # Later outputs of this process land after what the scan read.
        self._scan_start = {}
        for tp in assigned:
            self._scan_start.setdefault(tp.topic, {})[tp.partition] = starts[tp]
            parts = self._positions.setdefault(tp.topic, {})
            parts[tp.partition] = max(parts.get(tp.partition, 0), consumer.position(tp))
        logger.info(
            "read the output topics back: %d outputs of this state already written",
            found,
        )
        return found

    def _check(self) -> None:
        for parts in self._positions.values():
            assert all(offset >= 0 for offset in parts.values())
        assert all(len(ref) == 4 for ref in self.written)
