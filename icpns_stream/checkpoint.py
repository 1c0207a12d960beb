"""Atomic, integrity-checked checkpoints of the whole engine and its offsets."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icpns_stream.engine import Engine
from icpns_stream.exceptions import CheckpointError

__all__ = ["FORMAT_VERSION", "Checkpoint", "fsync_directory"]

#: Version of the file layout; a file of another version is refused, not guessed.
FORMAT_VERSION = 1

_MAGIC = b"ICPNSCKP"
# Magic, layout version, payload length in bytes, SHA-256 of the payload.
_HEADER = struct.Struct(">8sHQ32s")
_NAME = re.compile(r"^checkpoint-(\d{10})\.ckpt$")
_TEMP_PREFIX = ".checkpoint-"


@dataclass(slots=True)
class Checkpoint:
    """The engine, the source offsets it covers, and metadata, saved as one file.

    A checkpoint is written atomically: to a temporary file in the same
    directory, flushed and fsynced, renamed over its final name, and the
    directory fsynced, so a crash at any moment leaves either the previous
    files or the new one, never half of it. Each file starts with a header
    holding the payload's length and SHA-256, so a truncated or damaged file
    is detected on load; `load_latest` then falls back to the newest good one
    and raises `CheckpointError` when there is none, so the state never
    silently starts empty.

    Parameters
    ----------
    engine
        The whole engine: communities, popularity counters, histories, model,
        sampler random state and evaluation metrics.
    offsets
        Source positions the engine's state covers, ``{topic: {partition:
        next offset to read}}``: every message below them has been learned.
    metadata
        JSON-like facts about the run (configuration, counters, sink offsets).
    sequence
        Number of the checkpoint in its directory, increasing; set by `save`.
    created
        Wall-clock time of the save, in Unix seconds; set by `save`.

    Attributes
    ----------
    path
        File the checkpoint was saved to or loaded from (None before either).
    rejected
        Newer files `load_latest` skipped, as ``(path, reason)`` pairs.

    Notes
    -----
    Saving costs one pickle of the engine (O(state size)), one SHA-256 pass
    and two fsyncs; loading costs the same hash and one unpickling. The files
    are pickles: the checksum detects damage, not tampering, so only load
    checkpoints from a directory you trust. The write-rename protocol is the
    one described by Pillai et al., "All File Systems Are Not Created Equal"
    (OSDI 2014).

    Examples
    --------
    >>> import tempfile
    >>> from icpns_stream.events import ClickEvent
    >>> folder = tempfile.TemporaryDirectory()
    >>> engine = Engine()
    >>> _ = engine.process(ClickEvent("u", "a", 1_000.0))
    >>> saved = Checkpoint(engine, {"clicks": {0: 1}}).save(folder.name)
    >>> saved.name
    'checkpoint-0000000001.ckpt'
    >>> loaded = Checkpoint.load_latest(folder.name)
    >>> loaded.engine.events, loaded.offsets, loaded.sequence
    (1, {'clicks': {0: 1}}, 1)
    >>> folder.cleanup()
    """

    engine: Engine
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0
    created: float = 0.0
    path: Path | None = field(default=None, compare=False)
    rejected: list[tuple[Path, str]] = field(default_factory=list, compare=False)

    def to_bytes(self) -> bytes:
        """Return the file content: header, then the pickled payload."""
        payload = pickle.dumps(
            {
                "engine": self.engine,
                "offsets": self.offsets,
                "metadata": self.metadata,
                "sequence": self.sequence,
                "created": self.created,
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        digest = hashlib.sha256(payload).digest()
        return _HEADER.pack(_MAGIC, FORMAT_VERSION, len(payload), digest) + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """Check and decode a file's content.

        Raises
        ------
        CheckpointError
            When the content is truncated, damaged, of another layout version,
            or does not hold an engine.
        """
        # The header says how long the payload must be and what it hashes to.
        if len(data) < _HEADER.size:
            raise CheckpointError(
                f"truncated: {len(data)} bytes, shorter than the header"
            )
        magic, version, length, digest = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise CheckpointError("not a checkpoint file (bad magic bytes)")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"layout version {version}, this program reads {FORMAT_VERSION}"
            )
        payload = data[_HEADER.size :]
        if len(payload) != length:
            raise CheckpointError(
                f"truncated: payload holds {len(payload)} of {length} bytes"
            )
        if hashlib.sha256(payload).digest() != digest:
            raise CheckpointError("damaged: payload does not match its SHA-256")

        # A good hash with an unreadable pickle means the code changed under it.
        try:
            state = pickle.loads(payload)
        except Exception as exc:
            raise CheckpointError(
                f"cannot be unpickled by this version of the code: {exc}"
            ) from exc
        if not isinstance(state, dict) or not isinstance(state.get("engine"), Engine):
            raise CheckpointError("does not hold an engine")
        return cls(
            engine=state["engine"],
            offsets=state["offsets"],
            metadata=state["metadata"],
            sequence=state["sequence"],
            created=state["created"],
        )

    def save(self, directory: str | Path, *, keep: int = 3) -> Path:
        """Write the checkpoint atomically into ``directory`` and return its path.

        The checkpoint takes the sequence number after the highest one in the
        directory. Only the ``keep`` newest checkpoints are kept afterwards.

        Raises
        ------
        CheckpointError
            When the directory or file cannot be written.
        """
        if keep < 1:
            raise ValueError(f"keep must be positive, got {keep}")
        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            existing = _checkpoint_files(folder)

            # Leftovers of a save that crashed before its rename are garbage.
            for leftover in folder.glob(f"{_TEMP_PREFIX}*.tmp"):
                leftover.unlink(missing_ok=True)

            self.sequence = existing[0][0] + 1 if existing else 1
            self.created = time.time()
            final = folder / f"checkpoint-{self.sequence:010d}.ckpt"
            temp = folder / f"{_TEMP_PREFIX}{self.sequence:010d}.{os.getpid()}.tmp"
            data = self.to_bytes()

            # Bytes on disk before the rename, the rename on disk before success.
            with temp.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, final)
            fsync_directory(folder)

            # Older files go only once the new one is durable.
            for _, old in existing[keep - 1 :]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            raise CheckpointError(
                f"cannot write a checkpoint in {folder}: {exc}"
            ) from exc
        self.path = final
        return final

    @classmethod
    def load_latest(cls, directory: str | Path) -> Checkpoint | None:
        """Return the newest good checkpoint in ``directory``, or None if it has none.

        Newer files that fail their integrity check are skipped and listed in
        the result's ``rejected``.

        Raises
        ------
        CheckpointError
            When checkpoint files exist but none of them is good: starting empty
            would silently throw the state away.
        """
        folder = Path(directory)
        if not folder.exists():
            return None
        if not folder.is_dir():
            raise CheckpointError(f"checkpoint directory {folder} is not a directory")
        rejected: list[tuple[Path, str]] = []
        for _, path in _checkpoint_files(folder):
            # Try newest first; a damaged file yields to the one before it.
            try:
                checkpoint = cls.from_bytes(path.read_bytes())
            except (CheckpointError, OSError) as exc:
                rejected.append((path, str(exc)))
                continue
            checkpoint.path = path
            checkpoint.rejected = rejected
            return checkpoint
        if rejected:
            reasons = "; ".join(f"{path.name}: {reason}" for path, reason in rejected)
            raise CheckpointError(
                f"no good checkpoint in {folder} ({reasons}). Restore a good file, "
                "or point --checkpoint-dir at an empty directory to start over "
                "on purpose."
            )
        return None


def _checkpoint_files(folder: Path) -> list[tuple[int, Path]]:
    """Return ``(sequence, path)`` of the checkpoint files, newest first."""
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match is not None:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot sync)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
