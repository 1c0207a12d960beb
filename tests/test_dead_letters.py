"""Tests of dead-letter records and their JSON-lines writer."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icpns_stream.dead_letters import DeadLetter, DeadLetterWriter

__all__: list[str] = []


def test_utf8_bytes_are_kept_as_text() -> None:
    dead = DeadLetter.from_raw("é,ü".encode(), "wrong column count", line_number=4)
    assert (dead.raw, dead.raw_encoding, dead.line_number) == ("é,ü", "text", 4)


def test_bytes_that_are_not_utf8_are_kept_as_base64() -> None:
    dead = DeadLetter.from_raw(b"1\t\xff\t3", "not UTF-8")
    assert (dead.raw, dead.raw_encoding) == ("MQn/CTM=", "base64")
    assert dead.raw_bytes() == b"1\t\xff\t3"


def test_text_with_lone_surrogates_is_kept_as_base64() -> None:
    # UTF-8 cannot hold a lone surrogate, so the record could not be written as text.
    dead = DeadLetter.from_raw("a\udcffb", "not UTF-8")
    assert dead.raw_encoding == "base64"
    assert dead.raw_bytes() == b"a\xed\xb3\xbfb"


@given(st.binary(max_size=64))
def test_raw_bytes_round_trip(data: bytes) -> None:
    dead = DeadLetter.from_raw(data, "reason")
    assert dead.raw_bytes() == data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert dead.raw_encoding == "base64"
    else:
        assert (dead.raw_encoding, dead.raw) == ("text", text)


def test_to_dict_drops_fields_left_none() -> None:
    file_dead = DeadLetter.from_raw("x", "bad", line_number=7, source="clicks.jsonl")
    assert file_dead.to_dict() == {
        "reason": "bad",
        "raw": "x",
        "raw_encoding": "text",
        "line_number": 7,
        "source": "clicks.jsonl",
    }
    kafka_dead = DeadLetter.from_raw(
        b"x", "bad", source="clicks", partition=0, offset=0
    )
    assert kafka_dead.to_dict() == {
        "reason": "bad",
        "raw": "x",
        "raw_encoding": "text",
        "source": "clicks",
        "partition": 0,
        "offset": 0,
    }


def test_to_json_is_one_line_with_non_ascii_kept() -> None:
    dead = DeadLetter.from_raw("café\nnext", "bad")
    line = dead.to_json()
    assert "\n" not in line
    assert "café" in line
    assert json.loads(line) == dead.to_dict()


def test_unknown_raw_encoding_is_rejected() -> None:
    with pytest.raises(ValueError) as caught:
        DeadLetter("bad", "x", "hex")  # type: ignore[arg-type]
    assert str(caught.value) == "raw_encoding must be 'text' or 'base64', got 'hex'"


def test_corrupt_base64_raises_value_error() -> None:
    with pytest.raises(ValueError, match="raw is not valid base64"):
        DeadLetter("bad", "not base64!", "base64").raw_bytes()


def test_dead_letters_are_frozen_and_pickle() -> None:
    dead = DeadLetter.from_raw(b"\xff", "not UTF-8", source="t", partition=1, offset=9)
    with pytest.raises(AttributeError):
        dead.reason = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(dead)) == dead


def test_writer_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    records = [
        DeadLetter.from_raw("a", "first", line_number=1),
        DeadLetter.from_raw(b"\xff", "second", line_number=2),
    ]
    with DeadLetterWriter(path) as writer:
        writer._check()
        for count, dead in enumerate(records, start=1):
            writer.write(dead)
            writer._check()
            assert writer.count == count
            # Flushed at once: the line is on disk before the writer closes.
            assert len(path.read_text(encoding="utf-8").splitlines()) == count
    assert writer.closed
    writer._check()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [r.to_dict() for r in records]

    # A second writer appends after what is there.
    with DeadLetterWriter(path) as again:
        again.write(DeadLetter.from_raw("c", "third"))
    assert again.count == 1
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_writer_opens_eagerly_so_bad_paths_fail_first(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DeadLetterWriter(tmp_path / "missing" / "dead.jsonl")
    path = tmp_path / "empty.jsonl"
    DeadLetterWriter(path).close()
    assert path.read_text(encoding="utf-8") == ""


def test_writer_refuses_writes_after_close(tmp_path: Path) -> None:
    writer = DeadLetterWriter(str(tmp_path / "dead.jsonl"))
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="is closed"):
        writer.write(DeadLetter.from_raw("a", "bad"))
    assert writer.count == 0
