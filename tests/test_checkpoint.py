"""Checkpoints: atomic saves, integrity checks, fallback to the previous good file."""

from __future__ import annotations

import hashlib
import pickle
import random
import struct
from pathlib import Path

import pytest

from icpns_stream.checkpoint import FORMAT_VERSION, Checkpoint
from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent
from icpns_stream.exceptions import CheckpointError

CONFIG = EngineConfig(negatives=3, seed=7, n_factors=8, refresh_every=50)


def _events(count: int, seed: int = 0) -> list[ClickEvent]:
    """A small stream: 40 users, 60 items, popular items clicked more."""
    rng = random.Random(seed)
    return [
        ClickEvent(
            f"u{rng.randrange(40)}",
            f"i{int(rng.paretovariate(1.2)) % 60}",
            1_000_000.0 + 60.0 * t,
            event_id=f"e{seed}-{t}",
        )
        for t in range(count)
    ]


def _engine(events: list[ClickEvent]) -> Engine:
    engine = Engine(CONFIG)
    for event in events:
        engine.process(event)
    return engine


def _negatives(engine: Engine, events: list[ClickEvent]) -> list[tuple[str, ...]]:
    return [
        tuple(n.item_id for n in engine.process(event).negatives) for event in events
    ]


def test_round_trip_keeps_state_offsets_and_metadata(tmp_path: Path) -> None:
    engine = _engine(_events(300))
    path = Checkpoint(
        engine, {"clicks": {0: 120, 1: 180}}, {"lineage": "abc", "totals": {"x": 1}}
    ).save(tmp_path)

    loaded = Checkpoint.load_latest(tmp_path)
    assert loaded is not None
    assert loaded.path == path
    assert loaded.sequence == 1
    assert loaded.offsets == {"clicks": {0: 120, 1: 180}}
    assert loaded.metadata == {"lineage": "abc", "totals": {"x": 1}}
    assert loaded.rejected == []
    assert loaded.engine.state_summary() == engine.state_summary()
    assert loaded.engine.report() == engine.report()
    assert loaded.created > 0


def test_restored_engine_continues_exactly_like_the_original(tmp_path: Path) -> None:
    # Same random state, same counters: the next negatives must be identical.
    first, rest = _events(250), _events(150, seed=1)
    engine = _engine(first)
    Checkpoint(engine).save(tmp_path)
    restored = Checkpoint.load_latest(tmp_path)
    assert restored is not None

    assert _negatives(restored.engine, rest) == _negatives(engine, rest)
    assert restored.engine.state_summary() == engine.state_summary()


def test_sequence_grows_and_only_the_newest_files_are_kept(tmp_path: Path) -> None:
    engine = Engine(CONFIG)
    names = [Checkpoint(engine).save(tmp_path, keep=2).name for _ in range(4)]

    assert names == [f"checkpoint-{n:010d}.ckpt" for n in (1, 2, 3, 4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names[2:]
    latest = Checkpoint.load_latest(tmp_path)
    assert latest is not None and latest.sequence == 4


def test_missing_or_empty_directory_means_no_checkpoint(tmp_path: Path) -> None:
    assert Checkpoint.load_latest(tmp_path / "absent") is None
    assert Checkpoint.load_latest(tmp_path) is None


def test_truncated_newest_falls_back_to_the_previous_good_one(tmp_path: Path) -> None:
    events = _events(200)
    Checkpoint(_engine(events[:100]), {"clicks": {0: 100}}).save(tmp_path)
    newest = Checkpoint(_engine(events), {"clicks": {0: 200}}).save(tmp_path)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])

    loaded = Checkpoint.load_latest(tmp_path)
    assert loaded is not None
    assert loaded.offsets == {"clicks": {0: 100}}
    assert loaded.engine.events == 100
    assert [(path, "truncated" in reason) for path, reason in loaded.rejected] == [
        (newest, True)
    ]


@pytest.mark.parametrize("position", [0, 10, 60, -1])
def test_any_flipped_byte_is_detected(tmp_path: Path, position: int) -> None:
    path = Checkpoint(_engine(_events(50))).save(tmp_path)
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(CheckpointError) as info:
        Checkpoint.load_latest(tmp_path)
    message = str(info.value)
    assert "no good checkpoint" in message
    assert path.name in message
    assert "--checkpoint-dir" in message


def test_damaged_payload_names_the_hash(tmp_path: Path) -> None:
    data = bytearray(Checkpoint(Engine(CONFIG)).to_bytes())
    data[-5] ^= 0xFF
    with pytest.raises(CheckpointError, match="SHA-256"):
        Checkpoint.from_bytes(bytes(data))


def test_header_problems_are_named() -> None:
    data = Checkpoint(Engine(CONFIG)).to_bytes()
    with pytest.raises(CheckpointError, match="shorter than the header"):
        Checkpoint.from_bytes(data[:20])
    with pytest.raises(CheckpointError, match="magic"):
        Checkpoint.from_bytes(b"NOTACKPT" + data[8:])
    other = data[:8] + struct.pack(">H", FORMAT_VERSION + 1) + data[10:]
    with pytest.raises(CheckpointError, match=f"layout version {FORMAT_VERSION + 1}"):
        Checkpoint.from_bytes(other)


def test_good_hash_over_something_else_than_an_engine_is_refused() -> None:
    payload = pickle.dumps({"engine": "not an engine"})
    header = struct.pack(
        ">8sHQ32s",
        b"ICPNSCKP",
        FORMAT_VERSION,
        len(payload),
        hashlib.sha256(payload).digest(),
    )
    with pytest.raises(CheckpointError, match="does not hold an engine"):
        Checkpoint.from_bytes(header + payload)


def test_unpicklable_payload_with_good_hash_is_refused() -> None:
    payload = b"\x80\x05garbage"
    header = struct.pack(
        ">8sHQ32s",
        b"ICPNSCKP",
        FORMAT_VERSION,
        len(payload),
        hashlib.sha256(payload).digest(),
    )
    with pytest.raises(CheckpointError, match="cannot be unpickled"):
        Checkpoint.from_bytes(header + payload)


def test_a_save_that_crashed_before_its_rename_is_ignored(tmp_path: Path) -> None:
    # A crash mid-write leaves only the temporary file behind.
    Checkpoint(_engine(_events(30)), {"clicks": {0: 30}}).save(tmp_path)
    partial = Checkpoint(_engine(_events(60)), {"clicks": {0: 60}}).to_bytes()
    leftover = tmp_path / ".checkpoint-0000000002.999.tmp"
    leftover.write_bytes(partial[:1000])

    loaded = Checkpoint.load_latest(tmp_path)
    assert loaded is not None and loaded.offsets == {"clicks": {0: 30}}
    assert loaded.rejected == []

    # The next save takes number 2 and clears the leftover.
    assert Checkpoint(loaded.engine).save(tmp_path).name == "checkpoint-0000000002.ckpt"
    assert not leftover.exists()


def test_unwritable_directory_raises_checkpoint_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot write a checkpoint"):
        Checkpoint(Engine(CONFIG)).save(blocker)
    with pytest.raises(CheckpointError, match="not a directory"):
        Checkpoint.load_latest(blocker)


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be positive, got 0"):
        Checkpoint(Engine(CONFIG)).save(tmp_path, keep=0)


def test_files_that_are_not_checkpoints_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text("123\n")
    (tmp_path / "notes.txt").write_text("mine")
    Checkpoint(Engine(CONFIG)).save(tmp_path, keep=1)
    Checkpoint(Engine(CONFIG)).save(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock",
        "checkpoint-0000000002.ckpt",
        "notes.txt",
    ]
