"""Click events: the contract every source is parsed into."""

from __future__ import annotations

import json
import math
import reprlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from icpns_stream.exceptions import InvalidEventError
from icpns_stream.types import ItemId, UserId

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_ID_BYTES",
    "ClickEvent",
    "decode_event",
    "normalise_id",
    "normalise_timestamp",
    "parse_event",
]

#: Seconds a timestamp may lie ahead of this host's clock (one day), to allow for
#: skew between the producers' clocks and ours. A later one is taken as corrupt:
#: a click years ahead would move the stream clock there and decay every counter
#: away for the rest of the stream.
MAX_CLOCK_SKEW = 86_400.0

#: Longest id (and event type) accepted, in bytes of UTF-8. Every negative
#: carries its user and item ids in its Kafka key and value, so one huge id
#: would push each past Kafka's 1 MB default message size, and event ids fill
#: the engine's memory of recent ids. Bytes, not characters, since Kafka counts
#: bytes; real ids (numbers, UUIDs, SKUs) are far shorter.
MAX_ID_BYTES = 1_024

# Reasons quote the bad value, shortened: it may be megabytes long.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 80
_shown = _REPR.repr

# Numbers above this are taken as milliseconds: in seconds it would be year 5138.
_MILLISECONDS_ABOVE = 1e11


@dataclass(frozen=True, slots=True)
class ClickEvent:
    """One click of a user on an item.

    Parameters
    ----------
    user_id
        The clicking user, normalised to a string.
    item_id
        The clicked item, normalised to a string.
    timestamp
        Event time in Unix seconds.
    event_id
        Optional unique id; an event whose id was seen already is learned once.
    event_type
        Optional free-form type (``"click"``, ``"purchase"``...), carried through.
    rating
        Optional explicit rating, used only to filter with a minimum rating.

    Examples
    --------
    >>> parse_event({"user_id": 7, "item_id": "a", "timestamp": 1_700_000_000_000})
    ClickEvent(user_id='7', item_id='a', timestamp=1700000000.0, event_id=None, \
event_type=None, rating=None)
    """

    user_id: UserId
    item_id: ItemId
    timestamp: float
    event_id: str | None = None
    event_type: str | None = None
    rating: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready object in the contract's field names."""
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "timestamp": self.timestamp,
        }
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.event_type is not None:
            out["event_type"] = self.event_type
        if self.rating is not None:
            out["rating"] = self.rating
        return out


def normalise_id(value: object, field: str) -> str:
    """Return an id as a string, or raise `InvalidEventError` naming the field.

    Integers (and integral floats such as ``196.0`` from CSV tools) become their
    decimal string; strings are stripped, must not be empty, and must be valid
    Unicode: a lone surrogate (which a JSON escape can spell) is rejected. An id
    longer than `MAX_ID_BYTES` in UTF-8 is rejected too.
    """
    if value is None:
        raise InvalidEventError(f"{field} is missing or null")
    if isinstance(value, bool):
        raise InvalidEventError(
            f"{field} must be a string or integer, got {_shown(value)}"
        )
    # A JSON integer may have thousands of digits; a float has at most 309.
    if isinstance(value, int):
        return _check_text(str(value), field)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidEventError(f"{field} is empty")
        return _check_text(text, field)
    raise InvalidEventError(
        f"{field} must be a string or integer, got {type(value).__name__}"
    )


def _check_text(text: str, field: str) -> str:
    """Return ``text`` if UTF-8 can encode it in at most `MAX_ID_BYTES` bytes.

    Otherwise raise `InvalidEventError` naming ``field``.
    """
    # JSON's \u escapes can spell a lone surrogate: valid JSON in valid UTF-8
    # that decodes to a string no output (a Kafka key, a JSON line) can encode.
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise InvalidEventError(
            f"{field} is not valid Unicode (lone surrogate U+{code:04X})"
        ) from exc
    if size > MAX_ID_BYTES:
        raise InvalidEventError(
            f"{field} is too long: {size:,} bytes in UTF-8, at most {MAX_ID_BYTES:,}"
        )
    return text


def normalise_timestamp(value: object, *, now: float | None = None) -> float:
    """Return a timestamp in Unix seconds.

    Accepts seconds or milliseconds (int, float or numeric string) and ISO-8601
    strings; a naive ISO time is read as UTC. Raises `InvalidEventError` for
    anything unparseable, non-finite, before 1970, or more than `MAX_CLOCK_SKEW`
    seconds after ``now``, the wall clock in Unix seconds (``time.time()`` at
    the call when None).
    """
    if value is None:
        raise InvalidEventError("timestamp is missing or null")
    if isinstance(value, bool):
        raise InvalidEventError(f"timestamp must be a number or ISO-8601, got {value}")
    seconds: float
    if isinstance(value, int | float):
        seconds = _number_seconds(value)
    elif isinstance(value, str):
        seconds = _parse_timestamp_text(value.strip())
    else:
        raise InvalidEventError(
            f"timestamp must be a number or ISO-8601, got {type(value).__name__}"
        )
    if not math.isfinite(seconds):
        raise InvalidEventError(f"timestamp is not finite: {_shown(value)}")
    if seconds < 0:
        raise InvalidEventError(f"timestamp is before 1970: {_shown(value)}")
    if now is None:
        now = time.time()
    if seconds > now + MAX_CLOCK_SKEW:
        raise InvalidEventError(
            f"timestamp is in the future: {_shown(value)} (more than "
            f"{MAX_CLOCK_SKEW / 3600:g} h ahead of this host's clock)"
        )
    return seconds


def _parse_timestamp_text(text: str) -> float:
    if not text:
        raise InvalidEventError("timestamp is empty")
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return _number_seconds(number)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEventError(f"timestamp is not parseable: {_shown(text)}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _number_seconds(value: int | float) -> float:
    # Only numbers can be milliseconds: an ISO date in year 5138 must stay absurd.
    try:
        seconds = float(value)
    except OverflowError as exc:
        raise InvalidEventError(
            "timestamp is in the future: too large to be a time"
        ) from exc
    if seconds > _MILLISECONDS_ABOVE:
        seconds /= 1000.0
    return seconds


def parse_event(obj: object, *, now: float | None = None) -> ClickEvent:
    """Validate a decoded JSON value (or CSV row dict) and return its event.

    Parameters
    ----------
    obj
        The decoded value.
    now
        Wall clock in Unix seconds that the timestamp may not pass by more than
        `MAX_CLOCK_SKEW`; ``time.time()`` at the call when None.

    Raises
    ------
    InvalidEventError
        With a one-line reason, when ``obj`` is not an object or a field is bad.
    """
    if not isinstance(obj, dict):
        raise InvalidEventError(
            f"event must be a JSON object, got {type(obj).__name__}"
        )
    user_id = normalise_id(obj.get("user_id"), "user_id")
    item_id = normalise_id(obj.get("item_id"), "item_id")
    timestamp = normalise_timestamp(obj.get("timestamp"), now=now)
    event_id = obj.get("event_id")
    if event_id is not None and event_id != "":
        event_id = normalise_id(event_id, "event_id")
    else:
        event_id = None
    event_type = obj.get("event_type")
    if event_type is not None and not isinstance(event_type, str):
        raise InvalidEventError(
            f"event_type must be a string, got {type(event_type).__name__}"
        )
    if event_type:
        _check_text(event_type, "event_type")
    return ClickEvent(
        user_id=user_id,
        item_id=item_id,
        timestamp=timestamp,
        event_id=event_id,
        event_type=event_type or None,
        rating=_parse_rating(obj.get("rating")),
    )


def _parse_rating(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidEventError(f"rating must be a number, got {value}")
    try:
        rating = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidEventError(f"rating is not a number: {_shown(value)}") from exc
    if not math.isfinite(rating):
        raise InvalidEventError(f"rating is not finite: {_shown(value)}")
    return rating


def decode_event(raw: bytes | str, *, now: float | None = None) -> ClickEvent:
    """Decode one serialised event (a Kafka message value or a JSONL line).

    Raises `InvalidEventError` for bytes that are not UTF-8, text that is not
    JSON, and JSON that breaks the contract; ``now`` is passed to `parse_event`.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEventError(
                f"not UTF-8: {exc.reason} at byte {exc.start}"
            ) from exc
    else:
        text = raw
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" already ("Unterminated string
        # starting at"); without the strip the reason would read "at at".
        message = exc.msg.removesuffix(" at")
        raise InvalidEventError(
            f"not valid JSON: {message} at column {exc.colno}"
        ) from exc
    except ValueError as exc:
        # The only other ValueError json raises: an integer past Python's digit limit.
        raise InvalidEventError("not valid JSON: a number has too many digits") from exc
    except RecursionError as exc:
        # Hostile nesting must become a dead letter, not stop the consumer.
        raise InvalidEventError("not valid JSON: nested too deeply") from exc
    return parse_event(obj, now=now)
