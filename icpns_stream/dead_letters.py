"""Rejected input kept with its reason: dead letters and their JSON-lines file."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

__all__ = ["DeadLetter", "DeadLetterWriter", "RawEncoding"]

logger = logging.getLogger(__name__)

#: How a dead letter stores its raw input.
RawEncoding = Literal["text", "base64"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One input that broke the event contract, with where it came from and why.

    The same record serves a replayed file (``source`` is the path and
    ``line_number`` the 1-based line) and a Kafka dead-letter topic (``source``
    is the topic, with ``partition`` and ``offset``).

    Parameters
    ----------
    reason
        One-line reason, the message of the `InvalidEventError` that rejected it.
    raw
        The input as received: its text when it is UTF-8, else its bytes in base64.
    raw_encoding
        ``"text"`` or ``"base64"``, saying how to read ``raw``.
    line_number
        1-based line in the source file, for file replays.
    source
        File path or Kafka topic the input came from.
    partition
        Kafka partition, for messages.
    offset
        Kafka offset, for messages.

    Notes
    -----
    Building one costs O(n) in the size of the raw input (one UTF-8 check, and
    base64 when that fails). Keeping rejected messages aside with their reason
    instead of stopping the stream is the dead-letter channel of Hohpe and Woolf,
    *Enterprise Integration Patterns* (2003).

    Examples
    --------
    >>> dead = DeadLetter.from_raw(b'{"user_id": 1', "not valid JSON", line_number=3)
    >>> dead.to_dict()
    {'reason': 'not valid JSON', 'raw': '{"user_id": 1', 'raw_encoding': 'text', \
'line_number': 3}
    >>> DeadLetter.from_raw(b"\\xff\\xfe", "not UTF-8").raw
    '//4='
    >>> DeadLetter.from_raw(b"\\xff\\xfe", "not UTF-8").raw_bytes()
    b'\\xff\\xfe'
    """

    reason: str
    raw: str
    raw_encoding: RawEncoding
    line_number: int | None = None
    source: str | None = None
    partition: int | None = None
    offset: int | None = None

    def __post_init__(self) -> None:
        # A record that cannot say how to read its raw input cannot be replayed.
        if self.raw_encoding not in ("text", "base64"):
            raise ValueError(
                f"raw_encoding must be 'text' or 'base64', got {self.raw_encoding!r}"
            )

    @classmethod
    def from_raw(
        cls,
        raw: bytes | str,
        reason: str,
        *,
        line_number: int | None = None,
        source: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> DeadLetter:
        """Return a dead letter holding ``raw`` as text when possible, else base64."""
        # Text stays readable in the file; only bytes that are not UTF-8 (or text
        # with lone surrogates, which UTF-8 cannot hold) are kept as base64.
        data: bytes
        if isinstance(raw, str):
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:
                data = raw.encode("utf-8", "surrogatepass")
            else:
                return cls(reason, raw, "text", line_number, source, partition, offset)
        else:
            data = bytes(raw)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                return cls(reason, text, "text", line_number, source, partition, offset)
        encoded = base64.b64encode(data).decode("ascii")
        return cls(reason, encoded, "base64", line_number, source, partition, offset)

    def raw_bytes(self) -> bytes:
        """Return the original input bytes (UTF-8 of the text, or decoded base64)."""
        if self.raw_encoding == "text":
            return self.raw.encode("utf-8")
        try:
            return base64.b64decode(self.raw, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"raw is not valid base64: {self.raw[:40]!r}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-ready object, without the fields left None."""
        out: dict[str, Any] = {
            "reason": self.reason,
            "raw": self.raw,
            "raw_encoding": self.raw_encoding,
        }
        for name in ("line_number", "source", "partition", "offset"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> str:
        """Return the record as one line of JSON (no newline), non-ASCII kept."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


class DeadLetterWriter:
    """Write dead letters to a file as JSON lines, one record per line.

    The file is opened at construction (UTF-8), so a path that cannot be written
    fails before any input is read. By default earlier content is kept and new
    records are appended; ``append=False`` starts the file afresh.
    Every record is flushed as it is written, so a crash loses none of them.

    Parameters
    ----------
    path
        File to write; its directory must exist.
    append
        Keep what the file holds and add to it (True), or truncate it first.

    Attributes
    ----------
    path
        The file written.
    count
        Records written by this writer.

    Notes
    -----
    ``write`` costs O(n) in the record size plus one flush. Same dead-letter
    channel as `DeadLetter` (Hohpe and Woolf, 2003).

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "dead.jsonl"
    >>> with DeadLetterWriter(path) as writer:
    ...     writer.write(DeadLetter.from_raw("oops", "bad JSON", line_number=2))
    >>> writer.count
    1
    >>> print(path.read_text(encoding="utf-8"), end="")
    {"reason": "bad JSON", "raw": "oops", "raw_encoding": "text", "line_number": 2}
    >>> folder.cleanup()
    """

    def __init__(self, path: str | Path, *, append: bool = True) -> None:
        self.path = Path(path)
        self.count = 0
        mode = "a" if append else "w"
        self._file: IO[str] | None = self.path.open(mode, encoding="utf-8")
        logger.info("writing dead letters to %s", self.path)

    def write(self, dead: DeadLetter) -> None:
        """Append one record and flush it."""
        if self._file is None:
            raise ValueError(f"dead-letter file {self.path} is closed")
        self._file.write(dead.to_json() + "\n")

        # Flushed at once: dead letters are rare and each one matters.
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        if self._file is not None:
            self._file.close()
            self._file = None
            logger.info("wrote %d dead letters to %s", self.count, self.path)

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self._file is None

    def __enter__(self) -> DeadLetterWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check(self) -> None:
        assert self.count >= 0
        assert self._file is None or not self._file.closed
