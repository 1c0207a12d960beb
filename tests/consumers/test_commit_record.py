"""The record of the offsets a state committed, beside its checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from consumers.commit_record import FILENAME, load_commits, save_commits


def test_commits_are_read_back_for_their_topic_only(tmp_path: Path) -> None:
    assert load_commits(tmp_path, "clicks") == {}
    save_commits(tmp_path, "clicks", {2: 40, 0: 7})
    assert load_commits(tmp_path, "clicks") == {0: 7, 2: 40}
    assert load_commits(tmp_path, "other") == {}
    save_commits(tmp_path, "clicks", {0: 9})
    assert load_commits(tmp_path, "clicks") == {0: 9}
    assert sorted(path.name for path in tmp_path.iterdir()) == [FILENAME]


@pytest.mark.parametrize(
    "text",
    ["", "{not json", '{"topic": "clicks"}', '{"topic": "clicks", "offsets": 3}'],
)
def test_an_unreadable_record_is_reported_and_taken_as_empty(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILENAME).write_text(text)
    with caplog.at_level(logging.WARNING, logger="consumers.commit_record"):
        assert load_commits(tmp_path, "clicks") == {}
    [warning] = caplog.records
    assert "taken as another member's" in warning.getMessage()
