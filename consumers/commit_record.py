"""The input offsets this state committed and adopted, kept beside its checkpoints.

A group's committed offset past a state's checkpoint is either this state's
own (a newer checkpoint was lost, so the state learns again from its own) or
another member's (which learned those events already). Kafka cannot say which
(brokers need not keep commit metadata), so each state records its commits,
and where it took a partition over from another member.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from icpns_stream.checkpoint import fsync_directory

__all__ = ["FILENAME", "CommitRecord"]

logger = logging.getLogger(__name__)

FILENAME = "committed.json"


@dataclass
class CommitRecord:
    """What one state committed, and where it took partitions over.

    Attributes
    ----------
    offsets
        The offset last committed, by partition.
    adopted
        By partition, the offset this state last started from because another
        member had learned up to it: what came before is not this state's.

    Notes
    -----
    `save` writes one small JSON file and makes two fsyncs (the file, then
    its directory); the service saves after each commit and each takeover.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> CommitRecord({0: 120, 1: 98}, {1: 40}).save(folder, "clicks")
    >>> CommitRecord.load(folder, "clicks")
    CommitRecord(offsets={0: 120, 1: 98}, adopted={1: 40})
    >>> CommitRecord.load(folder, "other topic")
    CommitRecord(offsets={}, adopted={})
    """

    offsets: dict[int, int] = field(default_factory=dict)
    adopted: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, topic: str) -> CommitRecord:
        """Return the record of ``topic`` in ``directory``, empty if none.

        An unreadable record is reported and taken as empty, so the group's
        offsets count as another member's.
        """
        path = directory / FILENAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["topic"] != topic:
                return cls()
            return cls(
                {int(p): int(o) for p, o in data["offsets"].items()},
                {int(p): int(o) for p, o in data["adopted"].items()},
            )
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning(
                "%s cannot be read (%s): group offsets ahead of the checkpoint are "
                "taken as another member's",
                path,
                exc,
            )
            return cls()

    def save(self, directory: Path, topic: str) -> None:
        """Write the record atomically (write, sync, rename)."""
        path = directory / FILENAME
        temp = path.with_name(FILENAME + ".tmp")
        body = {
            "topic": topic,
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
            "adopted": {str(p): o for p, o in sorted(self.adopted.items())},
        }
        with temp.open("w", encoding="utf-8") as file:
            json.dump(body, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
        fsync_directory(directory)
