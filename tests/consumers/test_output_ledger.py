"""The output ledger: headers, positions held back, and reading outputs back."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka_kit import new_topic

from consumers.output_ledger import LINEAGE_HEADER, SOURCE_HEADER, OutputLedger


def test_headers_round_trip_and_other_lineages_are_ignored() -> None:
    ours, theirs = OutputLedger("a", {}), OutputLedger("b", {})
    headers = ours.headers("clicks.v2", 3, 1_234, 1)
    assert ours.parse_headers(headers) == ("clicks.v2", 3, 1_234, 1)
    assert theirs.parse_headers(headers) is None
    assert ours.parse_headers([]) is None
    assert ours.parse_headers([(LINEAGE_HEADER, b"a")]) is None
    assert ours.parse_headers([(LINEAGE_HEADER, b"a"), (SOURCE_HEADER, b"x/y")]) is None
    ours._check()


def test_lineage_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="lineage must not be empty"):
        OutputLedger("", {})


def test_delivery_positions_only_grow() -> None:
    ledger = OutputLedger("a", {"neg": {0: 5}})
    ledger.record_delivery("neg", 0, 9)
    ledger.record_delivery("neg", 0, 3)
    ledger.record_delivery("neg", 1, 0)
    assert ledger.checkpoint_positions({}) == {"neg": {0: 10, 1: 1}}
    ledger._check()


@pytest.mark.kafka
def test_scan_finds_this_lineages_outputs_after_the_positions(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(kafka_bootstrap, "ledger", partitions=2)
    ours, theirs = OutputLedger("ours", {}), OutputLedger("theirs", {})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    written = [
        (0, ours, ("clicks", 0, 1, 0)),  # before the position: not read
        (0, ours, ("clicks", 0, 2, 0)),
        (0, theirs, ("clicks", 0, 2, 1)),  # another lineage: ignored
        (0, ours, ("clicks", 0, 2, 1)),
        (1, ours, ("clicks", 1, 7, 0)),  # no position: read from the start
        (1, None, None),  # no headers at all
    ]
    for partition, ledger, ref in written:
        headers = ledger.headers(*ref) if ledger is not None and ref else None
        producer.send(topic, value=b"{}", partition=partition, headers=headers)
    producer.flush()
    producer.close()

    ledger = OutputLedger("ours", {topic: {0: 1}})
    reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        found = ledger.scan(reader, {topic: [0, 1]}, timeout=30)
    finally:
        reader.close()
    assert found == 3
    assert ledger.written == {
        ("clicks", 0, 2, 0),
        ("clicks", 0, 2, 1),
        ("clicks", 1, 7, 0),
    }
    assert ledger.seen(("clicks", 0, 2, 1))
    assert not ledger.seen(("clicks", 0, 1, 0))

    # While found outputs lie ahead of the state, positions stay at the scan's
    # start, so a second crash reads them again; once passed, they move on.
    assert ledger.checkpoint_positions({"clicks": {0: 2, 1: 0}}) == {
        topic: {0: 1, 1: 0}
    }
    assert ledger.checkpoint_positions({"clicks": {0: 3, 1: 8}}) == {
        topic: {0: 4, 1: 2}
    }
    assert ledger.written == set()
    ledger._check()
