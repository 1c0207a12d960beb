"""Crash test: SIGKILL the consumer at random points; nothing lost, nothing twice.

The bundled MovieLens-100k stream is produced with event ids (the ``produce``
command), malformed messages are mixed in, and the consumer (the ``consume``
command, a real process) is killed with SIGKILL twice at random points while
more events, and a re-sent stretch of old ones, are produced during each
outage. After a clean final stop the state must equal that of one
uninterrupted engine run over the same messages, the dead-letter topic must
hold exactly the malformed messages, and the negatives topic exactly one copy
of each negative.

Cost: 2.5 to 3 minutes on a 2-core machine for the whole stream, up to 4.5
when the machine is busy (``ICPNS_CRASH_EVENTS=20000`` runs the first 20,000
events in about a minute).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka_kit import committed, read_topic, send_raw, unique

from consumers.output_ledger import SOURCE_HEADER
from icpns_stream.checkpoint import Checkpoint
from icpns_stream.dead_letters import DeadLetter
from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent, decode_event
from icpns_stream.exceptions import InvalidEventError
from icpns_stream.readers import load_replay

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "icpns_stream" / "data" / "ml-100k.inter"
EVENTS = int(os.environ.get("ICPNS_CRASH_EVENTS", "100000"))
SEED = int(os.environ.get("ICPNS_CRASH_SEED", "20261203"))
CHECKPOINT_EVERY = 1_000
RESENT = 300

MALFORMED = [
    b"\xc3\x28 invalid utf-8",
    b"not json at all",
    b'{"user_id": 5, "item_id": 7}',
    b'{"user_id": 5, "item_id": 7, "timestamp": 253402300800000}',
    b"[1, 2, 3]",
    b'{"user_id": "", "item_id": 7, "timestamp": 880000000}',
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "icpns_stream.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def _produce(bootstrap: str, topic: str, skip: int, limit: int, *extra: str) -> None:
    done = subprocess.run(
        _cli(
            "produce",
            str(SAMPLE),
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--add-event-ids",
            "--skip",
            str(skip),
            "--limit",
            str(limit),
            *extra,
        ),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"produced {limit:,} events" in done.stderr


class Consumer:
    """One ``icpns-stream consume`` process with its metrics endpoint."""

    def __init__(self, bootstrap: str, topic: str, state: Path, log: Path) -> None:
        self.port = _free_port()
        self.log = log.open("a")
        self.process = subprocess.Popen(
            _cli(
                "--log-level",
                "info",
                "consume",
                "--bootstrap-servers",
                bootstrap,
                "--topic",
                topic,
                "--group-id",
                f"{topic}-group",
                "--negatives-topic",
                f"{topic}-negatives",
                "--dead-letter-topic",
                f"{topic}-dlq",
                "--create-output-topics",
                "--output-partitions",
                "3",
                "--checkpoint-dir",
                str(state),
                "--checkpoint-every",
                str(CHECKPOINT_EVERY),
                "--max-poll-records",
                "250",
                "--session-timeout-ms",
                "6000",
                "--heartbeat-interval-ms",
                "1000",
                "--max-poll-interval-ms",
                "10000",
                "--metrics-port",
                str(self.port),
                "--metrics-host",
                "127.0.0.1",
                "--exit-when-idle",
                "3",
            ),
            env=_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def processed(self) -> float:
        """Messages handled by this process so far (0 before it serves)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith("icpns_events_processed_total "):
                return float(line.split()[1])
        return 0.0

    def kill_after(self, messages: int, extra_sleep: float) -> float:
        """SIGKILL once ``messages`` are handled, plus a little; return the count."""
        deadline = time.monotonic() + 300
        while self.processed() < messages:
            assert self.process.poll() is None, "consumer exited before the kill"
            assert time.monotonic() < deadline, "consumer made no progress"
            time.sleep(0.05)
        time.sleep(extra_sleep)
        seen = self.processed()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()
        return seen

    def wait(self, timeout: float = 900) -> int:
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code


def test_sigkill_at_random_points_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    topic = unique("crash")
    state = tmp_path / "state"
    log = tmp_path / "consumer.log"
    total = min(EVENTS, 100_000)
    first, second = int(total * 0.4), int(total * 0.3)
    third = total - first - second

    # The messages, in the order the topic will hold them (one partition).
    events = _with_ids(load_replay(SAMPLE).events)[:total]
    planned: list[ClickEvent | bytes] = []

    def produce(skip: int, limit: int, *extra: str) -> None:
        _produce(kafka_bootstrap, topic, skip, limit, *extra)
        planned.extend(events[skip : skip + limit])

    def malformed(messages: list[bytes]) -> None:
        send_raw(kafka_bootstrap, topic, [(b"bad", m) for m in messages])
        planned.extend(messages)

    # Phase 1: the first stretch, with malformed messages inside it.
    produce(0, first // 2, "--create-topic", "--partitions", "1")
    malformed(MALFORMED[:3])
    produce(first // 2, first - first // 2)

    consumer = Consumer(kafka_bootstrap, topic, state, log)
    kill_at = rng.randrange(CHECKPOINT_EVERY, int(first * 0.8))
    consumer.kill_after(kill_at, rng.uniform(0.0, 0.5))

    # While it is down: more events, and a re-sent stretch already produced.
    malformed(MALFORMED[3:5])
    produce(first, second)
    produce(first - RESENT, RESENT)

    consumer = Consumer(kafka_bootstrap, topic, state, log)
    kill_at = rng.randrange(CHECKPOINT_EVERY, int(second * 0.8))
    consumer.kill_after(kill_at, rng.uniform(0.0, 0.5))

    # Down again: the rest of the stream; then a run to the end.
    produce(first + second, third)
    malformed(MALFORMED[5:])

    # The uninterrupted reference runs alongside the final consumer.
    reference: dict[str, Engine] = {}
    clean = threading.Thread(
        target=lambda: reference.setdefault("engine", _clean_run(planned))
    )
    clean.start()
    consumer = Consumer(kafka_bootstrap, topic, state, log)
    assert consumer.wait() == 0, log.read_text()[-3_000:]
    clean.join()
    expected = reference["engine"]

    # The topic holds exactly the planned messages, in order.
    records = read_topic(kafka_bootstrap, topic)
    assert [_identity(r.value) for r in records] == [_identity(m) for m in planned]

    # The state: every good event once, equal to the uninterrupted run.
    checkpoint = Checkpoint.load_latest(state)
    assert checkpoint is not None
    engine = checkpoint.engine
    good = [m for m in planned if isinstance(m, ClickEvent)]
    assert engine.events == len({e.event_id for e in good}) == total
    assert engine.duplicates == RESENT
    assert engine.state_summary() == expected.state_summary()
    assert checkpoint.offsets == {topic: {0: len(planned)}}
    assert committed(kafka_bootstrap, f"{topic}-group", topic) == {0: len(planned)}

    # The dead-letter topic holds exactly the malformed messages, once each.
    dead = [
        DeadLetter(**json.loads(r.value))
        for r in read_topic(kafka_bootstrap, f"{topic}-dlq")
    ]
    assert sorted(d.raw_bytes() for d in dead) == sorted(MALFORMED)
    assert sorted(d.offset for d in dead if d.offset is not None) == [
        i for i, m in enumerate(planned) if isinstance(m, bytes)
    ]

    # The negatives topic: each negative of the reference run exactly once.
    negatives = read_topic(kafka_bootstrap, f"{topic}-negatives")
    sources = Counter(dict(r.headers)[SOURCE_HEADER] for r in negatives)
    assert len(negatives) == expected.negatives_drawn
    assert max(sources.values()) == 1

    # The two kills happened where the log says they did.
    text = log.read_text()
    assert text.count("resuming from checkpoint") == 2


def _with_ids(events: list[ClickEvent]) -> list[ClickEvent]:
    # The ids the produce command gives with --add-event-ids.
    from dataclasses import replace

    stem = SAMPLE.stem
    return [replace(e, event_id=f"{stem}-{rank}") for rank, e in enumerate(events)]


def _clean_run(planned: list[ClickEvent | bytes]) -> Engine:
    engine = Engine(EngineConfig())
    for message in planned:
        if isinstance(message, ClickEvent):
            engine.process(message)
    return engine


def _identity(message: Any) -> Any:
    """A message's decoded event (its id), or its raw bytes if malformed."""
    if isinstance(message, ClickEvent):
        return message.event_id
    try:
        return decode_event(message).event_id
    except InvalidEventError:
        return message
