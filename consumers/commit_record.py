"""The input offsets this state last committed, kept beside its checkpoints.

A group's committed offset past a state's checkpoint is either this state's
own (a newer checkpoint was lost, so the state learns again from its own) or
another member's (which learned those events already). Kafka cannot say which
(brokers need not keep commit metadata), so each state records its commits.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from icpns_stream.checkpoint import fsync_directory

__all__ = ["FILENAME", "load_commits", "save_commits"]

logger = logging.getLogger(__name__)

FILENAME = "committed.json"


def load_commits(directory: Path, topic: str) -> dict[int, int]:
    """Return the offsets last committed for each partition of ``topic``.

    Empty when nothing was recorded; an unreadable record is reported and
    taken as empty, so the group's offsets count as another member's.
    """
    path = directory / FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["topic"] != topic:
            return {}
        return {int(p): int(offset) for p, offset in data["offsets"].items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning(
            "%s cannot be read (%s): group offsets ahead of the checkpoint are "
            "taken as another member's",
            path,
            exc,
        )
        return {}


def save_commits(directory: Path, topic: str, offsets: Mapping[int, int]) -> None:
    """Record ``offsets`` as the last committed, atomically (write, sync, rename)."""
    path = directory / FILENAME
    temp = path.with_name(FILENAME + ".tmp")
    body = {"topic": topic, "offsets": {str(p): o for p, o in sorted(offsets.items())}}
    with temp.open("w", encoding="utf-8") as file:
        json.dump(body, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    fsync_directory(directory)
