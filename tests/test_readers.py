"""Tests of the logged-file readers: formats, detection, dead letters, ordering."""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icpns_stream.dead_letters import DeadLetter
from icpns_stream.events import ClickEvent, parse_event
from icpns_stream.exceptions import InputFormatError, InvalidEventError
from icpns_stream.readers import (
    FORMATS,
    Filtered,
    ReplayLog,
    _Layout,
    detect_format,
    iter_records,
    load_replay,
)

__all__: list[str] = []

ML_100K = Path(__file__).parent.parent / "icpns_stream" / "data" / "ml-100k.inter"
RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def write(folder: Path, name: str, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8) or raw bytes to ``folder / name`` and return it."""
    path = folder / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def triples(log: ReplayLog) -> list[tuple[str, str, float]]:
    return [(e.user_id, e.item_id, e.timestamp) for e in log.events]


def reasons(log: ReplayLog) -> list[tuple[int | None, str, str]]:
    return [(d.line_number, d.raw, d.reason) for d in log.dead_letters]


def load(path: Path, fmt: str = "auto", min_rating: float | None = None) -> ReplayLog:
    log = load_replay(path, fmt, min_rating)
    log._check()
    return log


# Good and bad rows, format by format.


def test_jsonl(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "clicks.jsonl",
        '{"user_id": 1, "item_id": "a", "timestamp": 1700000000, "rating": 5}\n'
        '{"user_id": "u2", "item_id": 7, "timestamp": 1700000001000,'
        ' "event_id": "e1", "event_type": "view"}\n'
        '{"user_id": 1, "item_id": "b", "timest\n'
        "[1, 2, 3]\n"
        '{"user_id": null, "item_id": "c", "timestamp": 1700000002}\n'
        '{"user_id": 3, "item_id": "c", "timestamp": "next week"}\n'
        '{"user_id": 3, "item_id": "c", "timestamp": 99999999999999999}\n',
    )
    log = load(path)
    assert (log.format, log.rows, log.filtered) == ("jsonl", 7, 0)
    assert log.events == [
        ClickEvent("1", "a", 1_700_000_000.0, rating=5.0),
        ClickEvent("u2", "7", 1_700_000_001.0, "e1", "view"),
    ]
    assert [(n, reason) for n, _, reason in reasons(log)] == [
        (3, "not valid JSON: Unterminated string starting at column 32"),
        (4, "event must be a JSON object, got list"),
        (5, "user_id is missing or null"),
        (6, "timestamp is not parseable: 'next week'"),
        (
            7,
            "timestamp is in the future: 99999999999999999 "
            "(more than 24 h ahead of this host's clock)",
        ),
    ]
    assert log.dead_letters[1].raw == "[1, 2, 3]"
    assert all(d.source == str(path) for d in log.dead_letters)


def test_csv_with_optional_columns_in_any_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "clicks.csv",
        "timestamp,item_id,user_id,event_type,event_id,rating\n"
        "1700000000,i1,u1,click,e1,4.5\n"
        "2023-11-14T22:13:21Z,i2,u2,,,\n"
        '1700000002000,"i,3",u3,"buy",e3,1\n'
        "1700000003,i4,u4,click,e4\n"
        "1700000004,i5,u5,click,e5,good\n"
        "1700000005,,u6,click,e6,1\n"
        "not-a-time,i7,u7,click,e7,1\n",
    )
    log = load(path)
    assert (log.format, log.rows) == ("csv", 7)
    assert log.events == [
        ClickEvent("u1", "i1", 1_700_000_000.0, "e1", "click", 4.5),
        ClickEvent("u2", "i2", 1_700_000_001.0),
        ClickEvent("u3", "i,3", 1_700_000_002.0, "e3", "buy", 1.0),
    ]
    assert [(n, reason) for n, _, reason in reasons(log)] == [
        (5, "expected 6 fields separated by commas, got 5"),
        (6, "rating is not a number: 'good'"),
        (7, "item_id is empty"),
        (8, "timestamp is not parseable: 'not-a-time'"),
    ]
    assert log.dead_letters[0].raw == "1700000003,i4,u4,click,e4"


def test_csv_with_only_the_required_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "user_id,item_id,timestamp\n1,2,3\n4,5,6\n")
    log = load(path)
    assert triples(log) == [("1", "2", 3.0), ("4", "5", 6.0)]
    assert log.events[0].rating is None


def test_movielens_tab(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "u.data",
        "196\t242\t3\t881250949\n"
        "186\t302\t3\n"
        "22\t377\tone\t878887116\n"
        "244\t51\t2\t880606923\t7\n"
        "\t51\t2\t880606923\n"
        "166\t346\t1\t886397596\n",
    )
    log = load(path)
    assert log.format == "movielens-tab"
    assert triples(log) == [("196", "242", 881250949.0), ("166", "346", 886397596.0)]
    assert [e.rating for e in log.events] == [3.0, 1.0]
    assert reasons(log) == [
        (2, "186\t302\t3", "expected 4 fields separated by tabs, got 3"),
        (3, "22\t377\tone\t878887116", "rating is not a number: 'one'"),
        (4, "244\t51\t2\t880606923\t7", "expected 4 fields separated by tabs, got 5"),
        (5, "\t51\t2\t880606923", "user_id is empty"),
    ]


def test_movielens_dat(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ratings.dat",
        "1::1193::5::978300760\n"
        "1::661::3::978302109::x\n"
        "1::914::3::-5\n"
        "2::1357::5::978298709\n",
    )
    log = load(path)
    assert log.format == "movielens-dat"
    assert triples(log) == [("2", "1357", 978298709.0), ("1", "1193", 978300760.0)]
    assert [(n, reason) for n, _, reason in reasons(log)] == [
        (2, "expected 4 fields separated by '::', got 5"),
        (3, "timestamp is before 1970: '-5'"),
    ]


def test_movielens_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n"
        "1,3,x,964981247\n"
        "1,6,4.0\n"
        "2,333,0.5,1445714835\n",
    )
    log = load(path)
    assert log.format == "movielens-csv"
    assert triples(log) == [("1", "1", 964982703.0), ("2", "333", 1445714835.0)]
    assert [e.rating for e in log.events] == [4.0, 0.5]
    assert [(n, reason) for n, _, reason in reasons(log)] == [
        (3, "rating is not a number: 'x'"),
        (4, "expected 4 fields separated by commas, got 3"),
    ]


def test_recbole_maps_fields_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "shop.inter",
        "timestamp:float\tlabel:float\titem_id:token\tuser_id:token\n"
        "1700000000\t1\tsku9\talice\n"
        "1700000001\t1\tsku8\n"
        "1700000002\t1\t\tbob\n"
        "1700000003\t0\tsku7\tbob\n",
    )
    log = load(path)
    assert log.format == "recbole"
    assert triples(log) == [
        ("alice", "sku9", 1_700_000_000.0),
        ("bob", "sku7", 1_700_000_003.0),
    ]
    # No rating column: the label is not taken for one.
    assert log.events[0].rating is None
    assert [(n, reason) for n, _, reason in reasons(log)] == [
        (3, "expected 4 fields separated by tabs, got 3"),
        (4, "item_id is empty"),
    ]


def test_header_without_a_required_column_is_a_format_error(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "user_id,item_id,rating,time\n1,2,3,4\n")
    with pytest.raises(InputFormatError) as caught:
        load_replay(path, "csv")
    assert str(caught.value) == (
        f"{path} is read as csv but its header 'user_id,item_id,rating,time' "
        "lacks timestamp; fix the header or pass another --format "
        "(jsonl, csv, movielens-tab, movielens-dat, movielens-csv, recbole)"
    )

    path = write(tmp_path, "r.csv", "user_id,item_id,timestamp\n1,2,3\n")
    with pytest.raises(InputFormatError, match="lacks userId, movieId;"):
        load_replay(path, "movielens-csv")


# Detection from the content, the name only breaking ties.


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("clicks.csv", '{"user_id": 1, "item_id": 2, "timestamp": 3}\n', "jsonl"),
        ("u", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", "movielens-tab"),
        ("ratings.txt", "1::1193::5::978300760\n", "movielens-dat"),
        ("export.jsonl", "userId,movieId,rating,timestamp\n1,1,4,9\n", "movielens-csv"),
        ("data.inter", "user_id,item_id,timestamp\n1,2,3\n", "csv"),
        ("noext", f"{RECBOLE_HEADER}\n196\t242\t3\t881250949\n", "recbole"),
        ("x.csv", '\n\n"user_id","item_id","timestamp"\n1,2,3\n', "csv"),
        # A corrupt first row is outvoted by the rows after it.
        ("x", "garbage\n1\t2\t3\t4\n5\t6\t7\t8\n", "movielens-tab"),
        ("x", '{"user_id": 1, "item_\n{"user_id": 1}\n', "jsonl"),
    ],
)
def test_format_is_detected_from_content(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    assert detect_format(write(tmp_path, name, text)) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mixed.jsonl", "jsonl"),
        ("mixed.tsv", "movielens-tab"),
        ("u.data", "movielens-tab"),
    ],
)
def test_name_breaks_a_tie(tmp_path: Path, name: str, expected: str) -> None:
    text = '{"user_id": 1, "item_id": 2, "timestamp": 3}\n1\t2\t3\t4\n'
    assert detect_format(write(tmp_path, name, text)) == expected


def test_tie_without_a_name_hint_asks_for_a_format(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.txt", '{"a": 1}\n1\t2\t3\t4\n')
    with pytest.raises(InputFormatError) as caught:
        detect_format(path)
    assert str(caught.value) == (
        f"{path} could be jsonl or movielens-tab; formats: jsonl, csv, "
        "movielens-tab, movielens-dat, movielens-csv, recbole; pass one with "
        "--format NAME (fmt=NAME in Python)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3,4\n",
        "user,item,when\n1,2,3\n",
        "[{}]\n",
        "user_id\titem_id\trating\ttimestamp\n",
    ],
)
def test_unknown_content_asks_for_a_format(tmp_path: Path, text: str) -> None:
    # The name must not decide when the content fits no format at all.
    path = write(tmp_path, "clicks.csv", text)
    with pytest.raises(InputFormatError) as caught:
        load_replay(path)
    message = str(caught.value)
    assert message.startswith(f"cannot tell the format of {path} from its first line")
    assert "jsonl, csv, movielens-tab, movielens-dat, movielens-csv, recbole" in message
    assert "--format NAME" in message
    assert ("a csv file needs a header naming" in message) == ("," in text)


def test_empty_file_needs_a_format_and_then_holds_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.jsonl", "\n \n")
    with pytest.raises(InputFormatError, match="has no data lines"):
        detect_format(path)
    for fmt in FORMATS:
        log = load(path, fmt)
        assert (log.rows, log.events, log.format) == (0, [], fmt)


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    # Read as JSONL, tab rows are malformed JSON, not events.
    path = write(tmp_path, "u.data", "1\t2\t3\t4\n")
    log = load(path, "jsonl")
    assert log.events == []
    assert reasons(log) == [
        (1, "1\t2\t3\t4", "not valid JSON: Extra data at column 3"),
    ]


# Timestamps, order, filtering.


def test_milliseconds_and_iso_timestamps_become_seconds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.csv",
        "user_id,item_id,timestamp\n"
        "a,1,1700000000500\n"
        "a,2,2023-11-14T22:13:20.250Z\n"
        "a,3,2023-11-14T23:13:20+01:00\n"
        "a,4,1700000000.75\n",
    )
    assert [e.timestamp for e in load(path).events] == [
        1_700_000_000.0,
        1_700_000_000.25,
        1_700_000_000.5,
        1_700_000_000.75,
    ]


@pytest.mark.parametrize(
    ("name", "rows", "future"),
    [
        (
            "clicks.jsonl",
            [
                '{"user_id": 1, "item_id": 2, "timestamp": 881250949}',
                '{"user_id": 1, "item_id": 3, "timestamp": 4000000000}',
                '{"user_id": 1, "item_id": 4, "timestamp": "2096-10-02T07:06:40Z"}',
            ],
            ["4000000000", "'2096-10-02T07:06:40Z'"],
        ),
        # Plain rows take the reader's short cut, which must reject them too.
        (
            "u.data",
            ["1\t2\t5\t881250949", "1\t3\t5\t4000000000", "1\t4\t5\t4e12"],
            ["'4000000000'", "'4e12'"],
        ),
    ],
)
def test_clicks_from_the_future_are_set_aside(
    tmp_path: Path, name: str, rows: list[str], future: list[str]
) -> None:
    # Year 2096: one such click would move the stream clock 98 years ahead.
    log = load(write(tmp_path, name, "\n".join(rows) + "\n"))
    assert triples(log) == [("1", "2", 881250949.0)]
    assert reasons(log) == [
        (
            number,
            rows[number - 1],
            f"timestamp is in the future: {value} "
            "(more than 24 h ahead of this host's clock)",
        )
        for number, value in zip((2, 3), future, strict=True)
    ]


def test_ties_keep_file_order(tmp_path: Path) -> None:
    # Seeded shuffle of (timestamp, sequence) rows with many equal timestamps.
    rng = random.Random(7)
    rows = [(rng.randrange(5), n) for n in range(300)]
    text = "".join(f"u{n}\ti{n}\t1\t{1_000_000_000 + ts}\n" for ts, n in rows)
    log = load(write(tmp_path, "ties.tsv", text))

    # Oracle: sort by timestamp, then by position in the file.
    expected = sorted(rows, key=lambda row: (row[0], rows.index(row)))
    assert [e.user_id for e in log.events] == [f"u{n}" for _, n in expected]


def test_min_rating_filters_apart_from_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.csv",
        "user_id,item_id,timestamp,rating\n"
        "a,1,10,5\n"
        "a,2,11,3.5\n"
        "a,3,12,\n"
        "a,4,bad,1\n"
        "a,5,13,4\n",
    )
    log = load(path, min_rating=4)
    assert [e.item_id for e in log.events] == ["1", "3", "5"]
    assert (log.filtered, len(log.dead_letters), log.rows) == (1, 1, 5)
    assert log.dead_letters[0].line_number == 5

    records = list(iter_records(path, min_rating=4))
    assert records[1] == Filtered(3)
    assert isinstance(records[3], DeadLetter)

    # Without a minimum nothing is filtered.
    assert load(path).filtered == 0


def test_min_rating_must_be_finite(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t2\t3\t4\n")
    with pytest.raises(ValueError) as caught:
        iter_records(path, min_rating=float("nan"))
    assert str(caught.value) == "min_rating must be a finite number, got nan"


# Bytes, line endings, headers.


def test_line_that_is_not_utf8_is_set_aside_and_the_rest_read(tmp_path: Path) -> None:
    bad = b"2\t\xff\xfe\t3\t881250950"
    path = write(
        tmp_path,
        "u.data",
        b"1\t10\t3\t881250949\n" + bad + b"\n" + "3\tcafé\t4\t881250951\n".encode(),
    )
    log = load(path)
    assert triples(log) == [("1", "10", 881250949.0), ("3", "café", 881250951.0)]
    (dead,) = log.dead_letters
    assert (dead.line_number, dead.raw_encoding) == (2, "base64")
    assert dead.reason == "not UTF-8: invalid start byte at byte 2"
    assert base64.b64decode(dead.raw) == bad


def test_lone_surrogate_escape_is_set_aside_and_the_rest_read(tmp_path: Path) -> None:
    # The line is ASCII and valid JSON; only its decoded id has no UTF-8 form.
    bad = '{"user_id": "\\ud800", "item_id": "242", "timestamp": 881250950}'
    path = write(
        tmp_path,
        "clicks.jsonl",
        '{"user_id": 1, "item_id": 2, "timestamp": 881250949}\n'
        + bad
        + '\n{"user_id": 3, "item_id": 4, "timestamp": 881250951}\n',
    )
    log = load(path)
    assert triples(log) == [("1", "2", 881250949.0), ("3", "4", 881250951.0)]
    assert reasons(log) == [
        (2, bad, "user_id is not valid Unicode (lone surrogate U+D800)")
    ]
    assert log.dead_letters[0].raw_bytes() == bad.encode()


def test_encoded_surrogate_in_a_row_is_not_utf8(tmp_path: Path) -> None:
    # UTF-8 has no form for a surrogate; its 3-byte CESU spelling is rejected.
    bad = b"2\t\xed\xa0\x80\t3\t881250950"
    path = write(tmp_path, "u.data", b"1\t10\t3\t881250949\n" + bad + b"\n")
    log = load(path)
    assert triples(log) == [("1", "10", 881250949.0)]
    (dead,) = log.dead_letters
    assert (dead.line_number, dead.raw_encoding) == (2, "base64")
    assert dead.reason.startswith("not UTF-8: ")
    assert dead.raw_bytes() == bad


def test_rows_with_too_long_ids_are_set_aside(tmp_path: Path) -> None:
    # 300 two-byte characters fit in 1,024 bytes; 600 do not, nor 2,000 digits.
    fits, wide, digits = "\u00e9" * 300, "\u00e9" * 600, "7" * 2_000
    path = write(
        tmp_path,
        "clicks.csv",
        "user_id,item_id,timestamp,event_id,event_type\n"
        f"{fits},i1,1700000000,e1,click\n"
        f"u2,{wide},1700000001,e2,click\n"
        f"u3,i3,1700000002,{digits},click\n"
        f"u4,i4,1700000003,e4,{digits}\n"
        "u5,i5,1700000004,e5,click\n",
    )
    log = load(path)
    assert triples(log) == [
        (fits, "i1", 1_700_000_000.0),
        ("u5", "i5", 1_700_000_004.0),
    ]
    assert [(n, reason) for n, _, reason in reasons(log)] == [
        (3, "item_id is too long: 1,200 bytes in UTF-8, at most 1,024"),
        (4, "event_id is too long: 2,000 bytes in UTF-8, at most 1,024"),
        (5, "event_type is too long: 2,000 bytes in UTF-8, at most 1,024"),
    ]


def test_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.csv",
        "\ufeffuser_id,item_id,timestamp\r\n\r\n1,2,3\r\n   \r\n4,5,x\r\n",
    )
    log = load(path)
    assert (log.format, log.rows) == ("csv", 2)
    assert triples(log) == [("1", "2", 3.0)]
    assert reasons(log) == [(5, "4,5,x", "timestamp is not parseable: 'x'")]


def test_bom_before_a_json_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "c.jsonl", '\ufeff{"user_id": 1, "item_id": 2, "timestamp": 3}'
    )
    assert triples(load(path)) == [("1", "2", 3.0)]


def test_repeated_header_rows_are_not_events(tmp_path: Path) -> None:
    # Two files joined end to end: the second header is not a malformed row.
    part = f"{RECBOLE_HEADER}\n196\t242\t3\t881250949\n"
    log = load(write(tmp_path, "joined.inter", part + part))
    assert (log.rows, len(log.events), log.dead_letters) == (2, 2, [])


# Files that cannot be read.


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(InputFormatError) as caught:
        load_replay(path)
    assert str(caught.value) == f"{path} does not exist; check the path"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError) as caught:
        load_replay(tmp_path, "jsonl")
    assert str(caught.value) == (
        f"{tmp_path} is a directory; pass the path of a click file inside it"
    )


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads any file",
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.jsonl", "{}\n")
    path.chmod(0)
    try:
        with pytest.raises(InputFormatError) as caught:
            load_replay(path)
    finally:
        path.chmod(0o600)
    assert str(caught.value) == (
        f"cannot read {path}: permission denied; check its permissions"
    )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (PermissionError(13, "Permission denied"), "permission denied; check its"),
        (OSError(5, "Input/output error"), "Input/output error; check the path"),
    ],
)
def test_open_errors_become_format_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, message: str
) -> None:
    # Root reads files whatever their mode, so the refusal is simulated.
    path = write(tmp_path, "clicks.jsonl", "{}\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(InputFormatError) as caught:
        load_replay(path)
    assert str(caught.value).startswith(f"cannot read {path}: {message}")


def test_unknown_format_name(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t2\t3\t4\n")
    with pytest.raises(InputFormatError) as caught:
        load_replay(path, "parquet")
    assert str(caught.value) == (
        "unknown format 'parquet'; choose auto or one of jsonl, csv, "
        "movielens-tab, movielens-dat, movielens-csv, recbole"
    )


def test_iter_records_checks_before_the_first_row(tmp_path: Path) -> None:
    # Errors come from the call, not from a later next(), so callers can
    # report them before starting a replay.
    with pytest.raises(InputFormatError):
        iter_records(tmp_path / "nope")
    path = write(tmp_path, "c.csv", "user_id,item_id,when\n1,2,3\n")
    with pytest.raises(InputFormatError):
        iter_records(path, "csv")


def test_iter_records_yields_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t2\t3\t30\nbad\n4\t5\t1\t10\n")
    records: Iterator[object] = iter_records(path, min_rating=2)
    assert [type(r).__name__ for r in records] == [
        "ClickEvent",
        "DeadLetter",
        "Filtered",
    ]


# The short cut for plain delimited rows against the event contract.

_cells = st.one_of(
    st.sampled_from(["", " ", "7", " 42 ", "u1", "nan", "inf", "-1", "1e400", "x"]),
    st.sampled_from(["1700000000", "1700000000000", "2023-11-14", "4102444801"]),
    st.sampled_from(["4000000000", "4000000000000", "2096-10-02"]),
    st.sampled_from(["3.5", "0", "1_000", "\u00a05", "5\u00a0"]),
    # Around the id bound, in one-byte and two-byte characters.
    st.sampled_from(
        ["x" * 256, "x" * 1_024, "x" * 1_025, "\u00e9" * 512, "\u00e9" * 513]
    ),
    st.text(max_size=6),
)


@given(st.lists(_cells, min_size=6, max_size=6))
def test_plain_row_short_cut_matches_the_contract(cells: list[str]) -> None:
    columns = (
        ("user_id", 0),
        ("item_id", 1),
        ("timestamp", 2),
        ("rating", 3),
        ("event_id", 4),
        ("event_type", 5),
    )
    layout = _Layout("\t", 6, columns)
    fields = [cell.replace("\t", " ") for cell in cells]
    try:
        expected: ClickEvent | str = parse_event(
            {name: fields[index] for name, index in columns}
        )
    except InvalidEventError as exc:
        expected = str(exc)
    try:
        got: ClickEvent | str = layout.parse("\t".join(fields))
    except InvalidEventError as exc:
        got = str(exc)
    assert got == expected


# The bundled data.


def test_bundled_ml_100k() -> None:
    log = load(ML_100K)
    assert (log.format, log.rows, len(log.events), log.filtered) == (
        "recbole",
        100_000,
        100_000,
        0,
    )
    assert log.dead_letters == []
    stamps = [e.timestamp for e in log.events]
    assert stamps == sorted(stamps)
    assert len({e.user_id for e in log.events}) == 943
    assert len({e.item_id for e in log.events}) == 1682
    assert log.events[0] == ClickEvent("259", "255", 874724710.0, rating=4.0)

    # Oracle: the file read naively, sorted by (timestamp, line).
    lines = ML_100K.read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    order = sorted(range(len(rows)), key=lambda n: (float(rows[n][3]), n))
    assert triples(log) == [(rows[n][0], rows[n][1], float(rows[n][3])) for n in order]


def test_bundled_ml_100k_with_ratings_of_four_or_more() -> None:
    log = load(ML_100K, min_rating=4)
    assert (len(log.events), log.filtered, log.rows) == (55_375, 44_625, 100_000)
    assert min(e.rating or 0.0 for e in log.events) == 4.0


def test_dead_letters_serialise_as_json(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", b"1\t2\t3\n\xff\n")
    log = load(path, "movielens-tab")
    assert [json.loads(d.to_json()) for d in log.dead_letters] == [
        {
            "reason": "expected 4 fields separated by tabs, got 3",
            "raw": "1\t2\t3",
            "raw_encoding": "text",
            "line_number": 1,
            "source": str(path),
        },
        {
            "reason": "not UTF-8: invalid start byte at byte 0",
            "raw": "/w==",
            "raw_encoding": "base64",
            "line_number": 2,
            "source": str(path),
        },
    ]
