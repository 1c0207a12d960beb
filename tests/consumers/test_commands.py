"""The consume and produce commands, run as a user runs them."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_kit import (
    committed,
    new_topic,
    read_topic,
    send_events,
    synthetic_events,
    unique,
)

from icpns_stream.checkpoint import Checkpoint
from icpns_stream.cli import main
from icpns_stream.events import decode_event

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "--session-timeout-ms",
    "6000",
    "--heartbeat-interval-ms",
    "1000",
    "--max-poll-interval-ms",
    "10000",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=2
        ) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.kafka
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_batch_checkpoints_commits_and_exits_0(
    kafka_bootstrap: str, tmp_path: Path, signum: int
) -> None:
    topic = new_topic(kafka_bootstrap, "signal", partitions=2)
    send_events(kafka_bootstrap, topic, synthetic_events(400, seed=2))
    port = _free_port()
    state = tmp_path / "state"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "icpns_stream.cli",
            "--log-level",
            "info",
            "consume",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--group-id",
            f"{topic}-g",
            "--negatives-topic",
            f"{topic}-neg",
            "--dead-letter-topic",
            f"{topic}-dlq",
            "--create-output-topics",
            "--checkpoint-dir",
            str(state),
            "--checkpoint-every",
            "1000000",
            "--checkpoint-interval",
            "3600",
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            "--negatives",
            "2",
            *FAST,
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _metric(port, "icpns_events_processed_total") < 400:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.1)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert f"{signal.Signals(signum).name} received" in output
    assert "checkpoint 2 saved (stop)" in output

    # The only checkpoint after the initial one is the stop's, and it is committed.
    checkpoint = Checkpoint.load_latest(state)
    assert checkpoint is not None
    assert checkpoint.metadata["reason"] == "stop"
    assert sum(checkpoint.offsets[topic].values()) == 400
    assert committed(kafka_bootstrap, f"{topic}-g", topic) == checkpoint.offsets[topic]


def _consume(bootstrap: str, topic: str, state: Path, port: int, *extra: str) -> list:
    return [
        sys.executable,
        "-m",
        "icpns_stream.cli",
        "--log-level",
        "info",
        "consume",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group-id",
        f"{topic}-g",
        "--negatives-topic",
        f"{topic}-neg",
        "--dead-letter-topic",
        f"{topic}-dlq",
        "--create-output-topics",
        "--checkpoint-dir",
        str(state),
        "--checkpoint-every",
        "50",
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--negatives",
        "2",
        *extra,
    ]


@pytest.mark.kafka
def test_static_member_takes_its_partitions_back_before_the_session_expires(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # A session far longer than a join: a dynamic member restarted after a
    # crash waits for the dead member's session to expire before it is given
    # the partition; a static one replaces the dead member at once.
    session_ms = 40_000
    group = [
        "--group-instance-id",
        "icpns-1",
        "--session-timeout-ms",
        str(session_ms),
        "--heartbeat-interval-ms",
        "1000",
        "--max-poll-interval-ms",
        "10000",
    ]
    topic = new_topic(kafka_bootstrap, "static", partitions=1)
    events = synthetic_events(300, seed=4)
    send_events(kafka_bootstrap, topic, events[:200])
    state, log = tmp_path / "state", (tmp_path / "consume.log").open("w")
    port = _free_port()
    first = subprocess.Popen(
        _consume(kafka_bootstrap, topic, state, port, *group),
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while _metric(port, "icpns_events_processed_total") < 200:
            assert first.poll() is None, "the first consumer exited"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.1)
    finally:
        first.kill()
        first.wait(timeout=30)
    killed = time.monotonic()

    send_events(kafka_bootstrap, topic, events[200:])
    port = _free_port()
    second = subprocess.Popen(
        _consume(kafka_bootstrap, topic, state, port, *group, "--exit-when-idle", "2"),
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while _metric(port, "icpns_events_processed_total") < 100:
            assert second.poll() is None, "the restarted consumer exited"
            assert time.monotonic() - killed < session_ms / 1_000, (
                "the restarted member waited for the old session to expire"
            )
            time.sleep(0.1)
        assert second.wait(timeout=60) == 0
    finally:
        if second.poll() is None:
            second.kill()
        log.close()
    checkpoint = Checkpoint.load_latest(state)
    assert checkpoint is not None
    assert checkpoint.offsets[topic] == {0: 300}
    assert committed(kafka_bootstrap, f"{topic}-g", topic) == {0: 300}


@pytest.mark.kafka
def test_produce_writes_a_logged_file_in_time_order_keyed_by_user(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = synthetic_events(90, seed=11)
    shuffled = sorted(events, key=lambda e: (e.item_id, e.user_id))
    lines = [json.dumps({**e.to_dict(), "event_id": None}) for e in shuffled]
    lines.insert(7, '{"user_id": 1, "item_id": ')
    lines[3] = json.dumps(shuffled[3].to_dict())
    log = _jsonl(tmp_path / "clicks.jsonl", lines)
    topic = unique("produce")

    code = main(
        [
            "produce",
            str(log),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--create-topic",
            "--partitions",
            "3",
            "--add-event-ids",
            "--dead-letter",
            str(tmp_path / "bad.jsonl"),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "produced 90 events" in err
    assert "1 malformed rows skipped\n" in err
    [bad] = (tmp_path / "bad.jsonl").read_text().splitlines()
    assert json.loads(bad)["raw"] == lines[7]

    records = read_topic(kafka_bootstrap, topic)
    assert len({r.partition for r in records}) == 3
    decoded = [decode_event(r.value) for r in records]
    for record, event in zip(records, decoded, strict=True):
        assert record.key == event.user_id.encode()
    for partition in range(3):
        times = [
            e.timestamp
            for r, e in zip(records, decoded, strict=True)
            if r.partition == partition
        ]
        assert times == sorted(times)

    # Ids: the row's own where it had one, else the file name and time rank.
    in_time_order = sorted(events, key=lambda e: e.timestamp)
    expected_ids = {
        e.event_id if e.event_id == shuffled[3].event_id else f"clicks-{rank}"
        for rank, e in enumerate(in_time_order)
    }
    assert {e.event_id for e in decoded} == expected_ids
    assert {(e.user_id, e.item_id, e.timestamp) for e in decoded} == {
        (e.user_id, e.item_id, e.timestamp) for e in events
    }


@pytest.mark.kafka
def test_produce_skip_limit_and_rate(kafka_bootstrap: str, tmp_path: Path) -> None:
    events = synthetic_events(50, seed=12)
    log = _jsonl(tmp_path / "clicks.jsonl", [json.dumps(e.to_dict()) for e in events])
    topic = new_topic(kafka_bootstrap, "paced", partitions=1)
    started = time.perf_counter()
    code = main(
        [
            "produce",
            str(log),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--skip",
            "10",
            "--limit",
            "30",
            "--rate",
            "50",
        ]
    )
    elapsed = time.perf_counter() - started
    assert code == 0
    ids = [decode_event(r.value).event_id for r in read_topic(kafka_bootstrap, topic)]
    assert ids == [e.event_id for e in events[10:40]]
    # Thirty events at fifty per second: the last is due after 0.58 s.
    assert elapsed >= 0.55


@pytest.mark.kafka
def test_produce_to_a_missing_topic_says_how_to_create_it(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _jsonl(tmp_path / "c.jsonl", [json.dumps(synthetic_events(1)[0].to_dict())])
    code = main(
        [
            "produce",
            str(log),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            unique("absent"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert "--create-topic --partitions N" in err


def test_unreachable_broker_exits_2_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "consume",
            "--bootstrap-servers",
            "127.0.0.1:9",
            "--checkpoint-dir",
            str(tmp_path / "state"),
            "--connect-retries",
            "1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("icpns-stream: error: cannot reach Kafka at 127.0.0.1:9")
    assert "Traceback" not in err


def _consume_without_broker(state: Path, metrics_port: int) -> int:
    """Run consume against a port nothing listens on, with metrics."""
    return main(
        [
            "consume",
            "--bootstrap-servers",
            "127.0.0.1:9",
            "--checkpoint-dir",
            str(state),
            "--connect-retries",
            "1",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
        ]
    )


def test_metrics_port_in_use_exits_2_before_touching_state_or_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = _consume_without_broker(state, port)
    assert code == 2
    assert capsys.readouterr().err == (
        f"icpns-stream: error: metrics port {port} on 127.0.0.1 is already in use; "
        "choose another --metrics-port (0 picks a free one)\n"
    )
    # Refused before the (unreachable) broker was tried or the directory made.
    assert not state.exists()


def test_a_locked_checkpoint_dir_exits_2_and_frees_the_metrics_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (state / ".lock").open("w") as other_service:
        fcntl.flock(other_service, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = _consume_without_broker(state, port)
    assert code == 2
    assert capsys.readouterr().err == (
        f"icpns-stream: error: another service is using checkpoint directory {state}; "
        "give each service its own --checkpoint-dir\n"
    )
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_bootstrap_servers_default_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    log = _jsonl(tmp_path / "c.jsonl", [json.dumps(synthetic_events(1)[0].to_dict())])
    assert main(["produce", str(log), "--connect-retries", "1"]) == 2
    assert "cannot reach Kafka at 127.0.0.1:9" in capsys.readouterr().err


@pytest.fixture
def kafka_log_levels() -> Iterator[None]:
    """Put back the kafka-python logger levels a command sets."""
    loggers = [logging.getLogger(name) for name in ("kafka", "kafka.net.selector")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.usefixtures("kafka_log_levels")
@pytest.mark.parametrize(
    ("level", "timing_shown"), [("warning", False), ("info", False), ("debug", True)]
)
def test_event_loop_timing_warnings_show_only_at_debug(
    level: str, timing_shown: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Under pytest the root logger keeps its level: set it as the CLI would.
    caplog.set_level(getattr(logging, level.upper()))
    # The logs are set up before the input is read; a missing file ends it there.
    missing = str(tmp_path / "none.jsonl")
    args = ["--log-level", level, "produce", missing]
    assert main([*args, "--bootstrap-servers", "127.0.0.1:9"]) == 2

    caplog.clear()
    selector = logging.getLogger("kafka.net.selector")
    selector.warning("Task <x> ran for 0.275s (>0.100s threshold)")
    selector.error("a real selector error")
    logging.getLogger("kafka.conn").warning("a real connection warning")
    shown = [(r.name, r.levelname) for r in caplog.records]
    assert (("kafka.net.selector", "WARNING") in shown) is timing_shown
    assert ("kafka.net.selector", "ERROR") in shown
    assert ("kafka.conn", "WARNING") in shown


def test_consume_help_lists_the_service_and_engine_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["consume", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--bootstrap-servers",
        "--topic",
        "--group-id",
        "--group-instance-id",
        "--negatives-topic",
        "--dead-letter-topic",
        "--checkpoint-dir",
        "--checkpoint-every",
        "--metrics-port",
        "--auto-offset-reset",
        "--session-timeout-ms",
        "--stop-timeout",
        "--sampler",
        "--negatives",
    ):
        assert option in out


def test_signal_while_still_connecting_gives_up_at_once(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "icpns_stream.cli",
            "--log-level",
            "info",
            "consume",
            "--bootstrap-servers",
            "127.0.0.1:9",
            "--checkpoint-dir",
            str(tmp_path / "state"),
            "--connect-retries",
            "50",
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - started < 10
    assert process.returncode == 130, output
    assert "SIGTERM received while starting: giving up" in output
    assert "icpns-stream: interrupted" in output
