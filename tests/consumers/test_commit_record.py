"""The record of the offsets a state committed and adopted, and what it decides."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kafka import TopicPartition

from consumers.commit_record import FILENAME, CommitRecord
from consumers.service import ConsumerService, ServiceSettings


def test_a_record_is_read_back_for_its_topic_only(tmp_path: Path) -> None:
    assert CommitRecord.load(tmp_path, "clicks") == CommitRecord()
    CommitRecord({2: 40, 0: 7}, {2: 30}).save(tmp_path, "clicks")
    assert CommitRecord.load(tmp_path, "clicks") == CommitRecord({0: 7, 2: 40}, {2: 30})
    assert CommitRecord.load(tmp_path, "other") == CommitRecord()
    CommitRecord({0: 9}).save(tmp_path, "clicks")
    assert CommitRecord.load(tmp_path, "clicks") == CommitRecord({0: 9})
    assert sorted(path.name for path in tmp_path.iterdir()) == [FILENAME]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        '{"topic": "clicks"}',
        '{"topic": "clicks", "offsets": 3, "adopted": {}}',
        '{"topic": "clicks", "offsets": {"0": "x"}, "adopted": {}}',
    ],
)
def test_an_unreadable_record_is_reported_and_taken_as_empty(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILENAME).write_text(text)
    with caplog.at_level(logging.WARNING, logger="consumers.commit_record"):
        assert CommitRecord.load(tmp_path, "clicks") == CommitRecord()
    [warning] = caplog.records
    assert "taken as another member's" in warning.getMessage()


# (own offset, group's offset, record) -> where the partition starts (None: own)
CASES = [
    (10, None, CommitRecord(), None),
    (None, None, CommitRecord(), None),
    (10, 10, CommitRecord(), None),
    (10, 4, CommitRecord({0: 4}), None),
    # Past the state's own and not its commit: another member's.
    (10, 25, CommitRecord(), 25),
    (10, 25, CommitRecord({0: 20}), 25),
    (None, 25, CommitRecord(), 25),
    # The state's own lost commit: learned again from its own offset...
    (10, 25, CommitRecord({0: 25}), None),
    (10, 25, CommitRecord({0: 25}, {0: 8}), None),
    # ... but not from before where it took the partition over.
    (10, 25, CommitRecord({0: 25}, {0: 15}), 15),
]


@pytest.mark.parametrize(("own", "group", "record", "start"), CASES)
def test_a_partition_starts_past_what_another_member_learned(
    tmp_path: Path,
    own: int | None,
    group: int | None,
    record: CommitRecord,
    start: int | None,
) -> None:
    settings = ServiceSettings("h:1", "clicks", "g", "n", "d", tmp_path)
    service = ConsumerService(settings)
    service._commits = record
    adopted_before = dict(record.adopted)
    tp = TopicPartition("clicks", 0)
    assert service._start_after_others(tp, own, group) == start

    # Taking over from another member is recorded at once, on disk.
    taken_over = start is not None and start == group
    expected = {**adopted_before, 0: group} if taken_over else adopted_before
    assert record.adopted == expected
    on_disk = CommitRecord.load(tmp_path, "clicks")
    assert on_disk.adopted == (expected if taken_over else {})
