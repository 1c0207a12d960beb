"""Tests of the click-event contract: ids, timestamps and decoding."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icpns_stream.events import (
    MAX_CLOCK_SKEW,
    MAX_ID_BYTES,
    ClickEvent,
    decode_event,
    normalise_id,
    normalise_timestamp,
    parse_event,
)
from icpns_stream.exceptions import InvalidEventError

__all__: list[str] = []

T0 = 1_700_000_000

#: A wall clock passed as ``now``, so the tests do not depend on today's date.
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(196, "196"), ("196", "196"), ("  u7 ", "u7"), (196.0, "196"), (0, "0")],
)
def test_ids_are_normalised_to_strings(value: object, expected: str) -> None:
    assert normalise_id(value, "user_id") == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "user_id must be a string or integer, got True"),
        (False, "user_id must be a string or integer, got False"),
        (None, "user_id is missing or null"),
        ("   ", "user_id is empty"),
        (1.5, "user_id must be a string or integer, got float"),
        ([1], "user_id must be a string or integer, got list"),
        ("\ud800", "user_id is not valid Unicode (lone surrogate U+D800)"),
        ("u\udfff7", "user_id is not valid Unicode (lone surrogate U+DFFF)"),
    ],
)
def test_bad_ids_are_rejected_with_the_field_named(value: object, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        normalise_id(value, "user_id")
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("x" * (MAX_ID_BYTES + 1), MAX_ID_BYTES + 1),
        # The bound is on UTF-8 bytes, which Kafka counts: 513 characters here.
        ("\u00e9" * (MAX_ID_BYTES // 2 + 1), MAX_ID_BYTES + 2),
        (int("9" * (MAX_ID_BYTES + 1)), MAX_ID_BYTES + 1),
        (f" {'u' * 600_000} ", 600_000),
    ],
    ids=["one-byte", "two-byte", "integer", "huge"],
)
def test_ids_longer_than_the_bound_are_rejected(value: object, size: int) -> None:
    with pytest.raises(InvalidEventError) as caught:
        normalise_id(value, "item_id")
    assert str(caught.value) == (
        f"item_id is too long: {size:,} bytes in UTF-8, at most {MAX_ID_BYTES:,}"
    )


def test_ids_up_to_the_bound_are_kept() -> None:
    longest = "\u00e9" * (MAX_ID_BYTES // 2)
    assert normalise_id(f" {longest} ", "user_id") == longest
    assert normalise_id("x" * MAX_ID_BYTES, "user_id") == "x" * MAX_ID_BYTES
    assert normalise_id(10 ** (MAX_ID_BYTES - 1), "user_id") == "1" + "0" * (
        MAX_ID_BYTES - 1
    )


def test_integer_and_string_ids_name_the_same_user() -> None:
    a = parse_event({"user_id": 196, "item_id": 242, "timestamp": T0})
    b = parse_event({"user_id": "196", "item_id": "242", "timestamp": str(T0)})
    assert a == b
    assert (a.user_id, a.item_id) == ("196", "242")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T0, 1_700_000_000.0),
        (T0 + 0.25, 1_700_000_000.25),
        (T0 * 1000, 1_700_000_000.0),
        (T0 * 1000 + 500, 1_700_000_000.5),
        (str(T0), 1_700_000_000.0),
        (f" {T0 * 1000} ", 1_700_000_000.0),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20+00:00", 1_700_000_000.0),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14T22:13:20", 1_700_000_000.0),
        ("2023-11-14", 1_699_920_000.0),
        (0, 0.0),
        # Clock skew: up to a day ahead of the clock is accepted.
        (NOW, NOW),
        (NOW + MAX_CLOCK_SKEW, NOW + MAX_CLOCK_SKEW),
        ((NOW + MAX_CLOCK_SKEW) * 1000, NOW + MAX_CLOCK_SKEW),
    ],
)
def test_timestamps_in_seconds_milliseconds_and_iso(
    value: object, expected: float
) -> None:
    assert normalise_timestamp(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "timestamp is missing or null"),
        (True, "timestamp must be a number or ISO-8601, got True"),
        ("", "timestamp is empty"),
        ("yesterday", "timestamp is not parseable: 'yesterday'"),
        (float("nan"), "timestamp is not finite: nan"),
        ("inf", "timestamp is not finite: 'inf'"),
        (-1, "timestamp is before 1970: -1"),
        ("1969-12-31T23:59:59Z", "timestamp is before 1970: '1969-12-31T23:59:59Z'"),
        # A day and a second ahead of the clock; year 2096 in seconds and in
        # milliseconds.
        (
            NOW + MAX_CLOCK_SKEW + 1,
            f"timestamp is in the future: {NOW + MAX_CLOCK_SKEW + 1!r}",
        ),
        (4_000_000_000, "timestamp is in the future: 4000000000"),
        (4_000_000_000_000, "timestamp is in the future: 4000000000000"),
        ("2150-01-01", "timestamp is in the future: '2150-01-01'"),
        # A far-future ISO date is absurd; it must not be read as milliseconds.
        ("9999-12-31T00:00:00Z", "timestamp is in the future: '9999-12-31T00:00:00Z'"),
        (10**400, "timestamp is in the future: too large to be a time"),
        ([T0], "timestamp must be a number or ISO-8601, got list"),
    ],
)
def test_absurd_timestamps_are_rejected(value: object, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        normalise_timestamp(value, now=NOW)
    assert str(caught.value).startswith(reason)


def test_future_timestamps_say_how_far_ahead_the_clock_allows() -> None:
    with pytest.raises(InvalidEventError) as caught:
        normalise_timestamp(4_000_000_000, now=NOW)
    assert str(caught.value) == (
        "timestamp is in the future: 4000000000 "
        "(more than 24 h ahead of this host's clock)"
    )


def test_the_clock_is_the_wall_clock_by_default() -> None:
    # An hour ahead passes as clock skew; two days ahead does not.
    soon = time.time() + 3_600
    assert normalise_timestamp(soon) == soon
    line = json.dumps({"user_id": 1, "item_id": 2, "timestamp": soon + 2 * 86_400})
    with pytest.raises(InvalidEventError, match="timestamp is in the future"):
        decode_event(line)


def test_parse_and_decode_pass_the_clock_on() -> None:
    # A click from 2096 is valid only for a clock in 2096.
    obj = {"user_id": 1, "item_id": 2, "timestamp": 4_000_000_000}
    for now in (NOW, None):
        with pytest.raises(InvalidEventError, match="timestamp is in the future"):
            parse_event(obj, now=now)
        with pytest.raises(InvalidEventError, match="timestamp is in the future"):
            decode_event(json.dumps(obj).encode(), now=now)
    later = 4_000_000_000.0
    assert parse_event(obj, now=later).timestamp == later
    assert decode_event(json.dumps(obj), now=later).timestamp == later


@given(st.integers(min_value=100_000_001, max_value=int(NOW + MAX_CLOCK_SKEW)))
def test_seconds_milliseconds_and_iso_agree(seconds: int) -> None:
    # From 1973 on, the same instant in seconds, milliseconds and ISO-8601.
    assert normalise_timestamp(seconds, now=NOW) == float(seconds)
    assert normalise_timestamp(seconds * 1000, now=NOW) == float(seconds)
    iso = datetime.fromtimestamp(seconds, UTC).isoformat()
    assert normalise_timestamp(iso, now=NOW) == float(seconds)


def test_parse_event_keeps_optional_fields() -> None:
    event = parse_event(
        {
            "user_id": 1,
            "item_id": "x",
            "timestamp": T0,
            "event_id": 99,
            "event_type": "click",
            "rating": "4.5",
        }
    )
    assert event == ClickEvent("1", "x", 1_700_000_000.0, "99", "click", 4.5)
    assert event.to_dict() == {
        "user_id": "1",
        "item_id": "x",
        "timestamp": 1_700_000_000.0,
        "event_id": "99",
        "event_type": "click",
        "rating": 4.5,
    }


def test_empty_optional_fields_become_none() -> None:
    event = parse_event(
        {
            "user_id": 1,
            "item_id": 2,
            "timestamp": T0,
            "event_id": "",
            "event_type": "",
            "rating": "",
        }
    )
    assert (event.event_id, event.event_type, event.rating) == (None, None, None)
    assert event.to_dict() == {"user_id": "1", "item_id": "2", "timestamp": T0}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1, 2, 3], "event must be a JSON object, got list"),
        ({"item_id": 1, "timestamp": T0}, "user_id is missing or null"),
        (
            {"user_id": 1, "item_id": None, "timestamp": T0},
            "item_id is missing or null",
        ),
        ({"user_id": 1, "item_id": 2}, "timestamp is missing or null"),
        (
            {"user_id": 1, "item_id": 2, "timestamp": T0, "event_type": 3},
            "event_type must be a string, got int",
        ),
        (
            {"user_id": 1, "item_id": 2, "timestamp": T0, "rating": "good"},
            "rating is not a number: 'good'",
        ),
        (
            {"user_id": 1, "item_id": 2, "timestamp": T0, "rating": True},
            "rating must be a number, got True",
        ),
        (
            {"user_id": 1, "item_id": 2, "timestamp": T0, "rating": "nan"},
            "rating is not finite: 'nan'",
        ),
    ],
)
def test_parse_event_rejects_contract_breaks(obj: object, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(obj)
    assert str(caught.value) == reason


def test_decode_event_from_bytes_and_text() -> None:
    line = json.dumps({"user_id": 3, "item_id": 4, "timestamp": "2023-11-14T22:13:20Z"})
    expected = ClickEvent("3", "4", 1_700_000_000.0)
    assert decode_event(line) == expected
    assert decode_event(line.encode()) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"user_id": "\xff"}', "not UTF-8: invalid start byte at byte 13"),
        ('{"user_id": 1, "item_id": 2, "timest', "not valid JSON: "),
        ("", "not valid JSON: Expecting value at column 1"),
        ("[1, 2]", "event must be a JSON object, got list"),
        ('"click"', "event must be a JSON object, got str"),
        ("null", "event must be a JSON object, got NoneType"),
        (
            '{"user_id": 1, "item_id": 2, "timestamp": 1' + "0" * 5000 + "}",
            "not valid JSON: a number has too many digits",
        ),
        ("[" * 100_000, "not valid JSON: nested too deeply"),
        (
            '{"user_id": 1, "item_id": 2, "timestamp": 1' + "0" * 400 + "}",
            "timestamp is in the future: too large to be a time",
        ),
        (
            '{"user_id": 1, "item_id": 2, "timestamp": 1, "rating": 1'
            + "0" * 400
            + "}",
            # The value is quoted shortened: it may be megabytes long.
            "rating is not a number: 1" + "0" * 37 + "..." + "0" * 39,
        ),
    ],
)
def test_decode_event_turns_every_bad_input_into_invalid_event(
    raw: bytes | str, reason: str
) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event(raw)
    assert str(caught.value).startswith(reason)


@pytest.mark.parametrize("field", ["user_id", "item_id", "event_id", "event_type"])
@pytest.mark.parametrize(
    ("escape", "code"),
    # A high half alone, a low half after a letter, a pair in the wrong order.
    [("\\ud800", "D800"), ("x\\udc00", "DC00"), ("\\ude00\\ud83d", "DE00")],
)
def test_decode_event_rejects_lone_surrogates(
    field: str, escape: str, code: str
) -> None:
    # Valid UTF-8 and valid JSON, but the string it decodes to has no UTF-8
    # form: accepted, it would crash whatever writes the id out.
    obj = {"user_id": "u", "item_id": "i", "timestamp": T0, field: "@"}
    line = json.dumps(obj).replace("@", escape)
    for raw in (line, line.encode("utf-8")):
        with pytest.raises(InvalidEventError) as caught:
            decode_event(raw)
        assert str(caught.value) == (
            f"{field} is not valid Unicode (lone surrogate U+{code})"
        )


@pytest.mark.parametrize("field", ["user_id", "item_id", "event_id", "event_type"])
def test_decode_event_rejects_an_id_too_long_for_a_kafka_message(field: str) -> None:
    # Each negative carries the ids in its key and value: 600,000 characters
    # would take it past Kafka's 1 MB message size.
    obj = {"user_id": "u", "item_id": "i", "timestamp": T0, field: "7" * 600_000}
    with pytest.raises(InvalidEventError) as caught:
        decode_event(json.dumps(obj).encode())
    assert str(caught.value) == (
        f"{field} is too long: 600,000 bytes in UTF-8, at most 1,024"
    )


def test_decode_event_keeps_a_surrogate_pair() -> None:
    # A pair of escapes spells one character outside the BMP, which is valid.
    line = '{"user_id": "\\ud83d\\ude00", "item_id": 1, "timestamp": 1700000000}'
    event = decode_event(line)
    assert event.user_id == "\U0001f600"
    assert event.user_id.encode("utf-8") == b"\xf0\x9f\x98\x80"


def test_decode_event_says_at_column_once() -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event('{"user_id": "abc')
    assert str(caught.value) == (
        "not valid JSON: Unterminated string starting at column 13"
    )


def test_decode_event_reports_where_json_breaks() -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event('{"user_id": 1,, "item_id": 2}')
    assert str(caught.value) == (
        "not valid JSON: Expecting property name enclosed in double quotes at column 15"
    )


def test_click_event_is_immutable() -> None:
    event = ClickEvent("1", "2", 3.0)
    with pytest.raises(AttributeError):
        event.user_id = "9"  # type: ignore[misc]
