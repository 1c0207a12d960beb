"""The consumer service against a real broker: outputs, offsets, restarts, errors."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka_kit import (
    FAST_GROUP,
    TEST_CONFIG,
    ServiceThread,
    TcpProxy,
    clean_run,
    committed,
    make_settings,
    new_topic,
    read_topic,
    send_events,
    send_raw,
    synthetic_events,
)

from consumers.connection import BrokerUnavailableError, TopicMissingError
from consumers.local_broker import LocalBroker
from consumers.output_ledger import SOURCE_HEADER
from consumers.service import (
    ConsumerService,
    DeliveryError,
    ServiceSettings,
    _bounded_dead_letter,
)
from icpns_stream.checkpoint import Checkpoint
from icpns_stream.dead_letters import DeadLetter
from icpns_stream.engine import EngineConfig
from icpns_stream.exceptions import CheckpointError

pytestmark = pytest.mark.kafka

NEGATIVE_FIELDS = {
    "user_id",
    "item_id",
    "positive_item_id",
    "timestamp",
    "community",
    "popularity",
    "probability",
    "fallback",
}

MALFORMED: list[tuple[bytes | None, str]] = [
    (b"\xff\xfe\x00not utf-8", "not UTF-8"),
    (b'{"user_id": 1, "item_id": 2, "timest', "not valid JSON"),
    (b'{"user_id": 1, "timestamp": 880000000}', "item_id is missing"),
    (b'{"user_id": 1, "item_id": 2, "timestamp": 99999999999999}', "in the future"),
    (None, "no value"),
]


def _sources(records: list) -> Counter[bytes]:
    return Counter(dict(r.headers)[SOURCE_HEADER] for r in records)


def test_negatives_and_dead_letters_reach_their_topics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "clicks", partitions=1)
    events = synthetic_events(150)
    send_events(kafka_bootstrap, topic, events[:100])
    send_raw(kafka_bootstrap, topic, [(b"bad", value) for value, _ in MALFORMED])
    send_events(kafka_bootstrap, topic, events[100:])
    settings = make_settings(kafka_bootstrap, tmp_path / "state", topic)

    runner = ServiceThread(settings).start()
    assert runner.join() == 0
    engine = runner.service.engine
    assert engine is not None

    # Every good click was learned, in order, exactly like a plain replay.
    expected = clean_run(events, TEST_CONFIG)
    assert engine.events == 150
    assert engine.state_summary() == expected.state_summary()

    # Negatives: keyed by user, the replay's explanation fields, none twice.
    negatives = read_topic(kafka_bootstrap, settings.negatives_topic)
    assert len(negatives) == expected.negatives_drawn
    assert max(_sources(negatives).values()) == 1
    for record in negatives:
        body = json.loads(record.value)
        assert set(body) == NEGATIVE_FIELDS
        assert record.key == body["user_id"].encode()
        assert body["item_id"] != body["positive_item_id"]

    # Dead letters: reason, partition, offset and the original bytes.
    dead = [
        json.loads(r.value)
        for r in read_topic(kafka_bootstrap, settings.dead_letter_topic)
    ]
    dead.sort(key=lambda letter: letter["offset"])
    assert [letter["offset"] for letter in dead] == list(range(100, 105))
    for body, (value, reason) in zip(dead, MALFORMED, strict=True):
        letter = DeadLetter(**body)
        assert reason in letter.reason
        assert (letter.source, letter.partition) == (topic, 0)
        assert letter.raw_bytes() == (value or b"")
    assert dead[0]["raw_encoding"] == "base64"
    assert base64.b64decode(dead[0]["raw"]) == MALFORMED[0][0]
    assert {letter["raw_encoding"] for letter in dead[1:]} == {"text"}

    # The offsets committed are those of the last checkpoint: the topic's end.
    checkpoint = Checkpoint.load_latest(settings.checkpoint_dir)
    assert checkpoint is not None
    assert checkpoint.offsets == {topic: {0: 155}}
    assert checkpoint.metadata["totals"] == {
        "messages": 155,
        "dead_letters": 5,
        "negatives": expected.negatives_drawn,
    }
    assert committed(kafka_bootstrap, settings.group_id, topic) == {0: 155}


def test_a_message_too_large_to_dead_letter_whole_is_kept_cut(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # In base64 it would pass Kafka's 1 MB limit on a message.
    huge = bytes(range(256)) * 3_500
    topic = new_topic(kafka_bootstrap, "huge", partitions=1)
    events = synthetic_events(20, seed=9)
    send_events(kafka_bootstrap, topic, events[:10])
    send_raw(kafka_bootstrap, topic, [(b"k", huge)])
    send_events(kafka_bootstrap, topic, events[10:])
    settings = make_settings(kafka_bootstrap, tmp_path / "state", topic)

    runner = ServiceThread(settings).start()
    assert runner.join() == 0
    assert runner.service.engine is not None
    assert runner.service.engine.events == 20
    [record] = read_topic(kafka_bootstrap, settings.dead_letter_topic)
    assert len(record.value) <= 512 * 1024
    letter = DeadLetter(**json.loads(record.value))
    assert letter.offset == 10
    kept = letter.raw_bytes()
    assert 0 < len(kept) < len(huge) and huge.startswith(kept)
    assert f"raw cut to its first {len(kept):,} of {len(huge):,} bytes" in (
        letter.reason
    )


def test_a_dead_letter_fits_whatever_its_key_reason_and_value() -> None:
    record = SimpleNamespace(
        topic="clicks", partition=2, offset=7, key=b"k" * 900_000, value=b"x" * 900_000
    )
    reason = "timestamp is not parseable: " + "x" * 600_000
    key, value = _bounded_dead_letter(record, reason)
    letter = DeadLetter(**json.loads(value))
    assert key is None
    assert len(value) <= 512 * 1024
    assert letter.reason.startswith("timestamp is not parseable: xxx")
    assert letter.reason.endswith(
        "... (600,028 characters); its key of 900,000 bytes is left out"
        f" (raw cut to its first {len(letter.raw):,} of 900,000 bytes; the whole "
        "message is at its source offset)"
    )
    assert letter.raw_bytes() == b"x" * len(letter.raw)
    assert (letter.source, letter.partition, letter.offset) == ("clicks", 2, 7)

    # A short key is the input's; a short reason is kept whole.
    record.key = b"user-1"
    assert _bounded_dead_letter(record, "not valid JSON")[0] == b"user-1"


def test_an_output_the_client_refuses_at_once_is_a_delivery_error(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(kafka_bootstrap, "refused", partitions=1)
    service = ConsumerService(make_settings(kafka_bootstrap, Path("unused"), topic))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=200)
    service._producer = producer
    try:
        with pytest.raises(DeliveryError, match=f"cannot write to {topic}: .*Size"):
            service._send(topic, value=b"x" * 1_000)
    finally:
        producer.close(timeout=30)


def test_restart_resumes_from_the_checkpoint_without_double_counting(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "resume", partitions=1)
    events = synthetic_events(240, seed=4)
    settings = make_settings(
        kafka_bootstrap, tmp_path / "state", topic, checkpoint_every=50
    )

    send_events(kafka_bootstrap, topic, events[:150])
    assert ServiceThread(settings).start().join() == 0

    # Later events, plus twenty redelivered ones with ids already learned.
    send_events(kafka_bootstrap, topic, events[150:] + events[130:150])
    second = ServiceThread(settings).start()
    assert second.join() == 0
    engine = second.service.engine
    assert engine is not None

    expected = clean_run(events + events[130:150], TEST_CONFIG)
    assert engine.events == 240
    assert engine.duplicates == 20
    assert engine.state_summary() == expected.state_summary()
    negatives = read_topic(kafka_bootstrap, settings.negatives_topic)
    assert len(negatives) == expected.negatives_drawn
    assert max(_sources(negatives).values()) == 1
    assert committed(kafka_bootstrap, settings.group_id, topic) == {0: 260}


def test_restart_reports_the_checkpoint_it_resumed_from(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "gauge", partitions=1)
    send_events(kafka_bootstrap, topic, synthetic_events(40, seed=6))
    settings = make_settings(kafka_bootstrap, tmp_path / "state", topic)
    assert ServiceThread(settings).start().join() == 0
    saved = Checkpoint.load_latest(settings.checkpoint_dir)
    assert saved is not None and saved.created > 0

    # Nothing new to read: the restart saves no checkpoint of its own, and its
    # gauge shows the one it resumed from.
    second = ServiceThread(settings).start()
    gauge = "icpns_last_checkpoint_timestamp_seconds"
    assert second.service.metrics.value(gauge) == saved.created
    assert second.join() == 0
    assert second.service.metrics.value("icpns_checkpoints_total") == 0
    assert second.service.metrics.value(gauge) == saved.created


def test_progress_says_when_it_waits_for_the_group_instead_of_lag_0(
    kafka_bootstrap: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = new_topic(kafka_bootstrap, "progress", partitions=1)
    send_events(kafka_bootstrap, topic, synthetic_events(30, seed=7))
    settings = make_settings(kafka_bootstrap, tmp_path / "state", topic)

    # A progress line at every metrics update (once a second), not every minute.
    monkeypatch.setattr("consumers.service._PROGRESS_LOG_EVERY", 0.0)
    with caplog.at_level(logging.INFO, logger="consumers.service"):
        assert ServiceThread(settings).start().join() == 0
    messages = [r.getMessage() for r in caplog.records]
    assigned = next(
        i for i, m in enumerate(messages) if m.startswith("partitions assigned")
    )
    before = [m for m in messages[:assigned] if "messages/s" in m]
    after = [m for m in messages[assigned:] if "messages/s" in m]
    assert before and after
    for message in before:
        assert "no partitions assigned yet: waiting for the group" in message
        assert "lag" not in message
    assert all(", lag " in m for m in after)


def test_damaged_newest_checkpoint_falls_back_without_duplicate_outputs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "fallback", partitions=1)
    events = synthetic_events(200, seed=5)
    send_events(kafka_bootstrap, topic, events[:120])
    send_raw(kafka_bootstrap, topic, [(None, b"oops")])
    settings = make_settings(
        kafka_bootstrap, tmp_path / "state", topic, checkpoint_every=60
    )
    assert ServiceThread(settings).start().join() == 0

    # Truncate the newest file: the service must go back one checkpoint,
    # learn the events after it again, and write none of their outputs twice.
    newest = Checkpoint.load_latest(settings.checkpoint_dir)
    assert newest is not None and newest.path is not None
    newest.path.write_bytes(newest.path.read_bytes()[:-100])
    send_events(kafka_bootstrap, topic, events[120:])
    runner = ServiceThread(settings).start()
    assert runner.join() == 0

    engine = runner.service.engine
    assert engine is not None
    expected = clean_run(events, TEST_CONFIG)
    assert engine.state_summary() == expected.state_summary()
    negatives = read_topic(kafka_bootstrap, settings.negatives_topic)
    assert len(negatives) == expected.negatives_drawn
    assert max(_sources(negatives).values()) == 1
    assert len(read_topic(kafka_bootstrap, settings.dead_letter_topic)) == 1


def test_all_checkpoints_damaged_stops_with_a_clear_error(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "damaged", partitions=1)
    send_events(kafka_bootstrap, topic, synthetic_events(30))
    settings = make_settings(kafka_bootstrap, tmp_path / "state", topic)
    assert ServiceThread(settings).start().join() == 0
    for path in settings.checkpoint_dir.glob("checkpoint-*.ckpt"):
        path.write_bytes(b"garbage")

    with pytest.raises(CheckpointError, match="no good checkpoint"):
        ServiceThread(settings).start().join()


def test_other_engine_options_than_the_checkpoint_are_refused(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "options", partitions=1)
    settings = make_settings(kafka_bootstrap, tmp_path / "state", topic)
    send_events(kafka_bootstrap, topic, synthetic_events(10))
    assert ServiceThread(settings).start().join() == 0

    other = EngineConfig(negatives=5, n_factors=8, seed=3, refresh_every=200)
    with pytest.raises(CheckpointError, match=r"negatives=2 \(asked 5\)"):
        ServiceThread(settings, other).start().join()


def test_revoked_partitions_are_checkpointed_and_committed_first(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "rebalance", partitions=2)
    send_events(kafka_bootstrap, topic, synthetic_events(120, seed=6))
    # Only a rebalance can checkpoint here: counts and intervals are huge.
    quiet = {"checkpoint_every": 1_000_000, "checkpoint_interval": 3_600.0}
    first = ServiceThread(
        make_settings(
            kafka_bootstrap, tmp_path / "a", topic, exit_when_idle=None, **quiet
        )
    ).start()
    service = first.service
    _wait_for(lambda: sum(service.positions.values()) == 120, "first consumer")
    assert service.last_checkpoint is not None
    assert service.last_checkpoint.metadata["reason"] == "initial"

    # A second member joins: the first must checkpoint and commit at revoke.
    second = ServiceThread(
        make_settings(
            kafka_bootstrap, tmp_path / "b", topic, exit_when_idle=None, **quiet
        )
    ).start()
    _wait_for(
        lambda: (
            service.last_checkpoint is not None
            and service.last_checkpoint.metadata["reason"] == "revoke"
        ),
        "checkpoint at revoke",
    )
    saved = service.last_checkpoint
    assert saved is not None
    assert sum(saved.offsets[topic].values()) == 120
    group = f"{topic}-group"
    _wait_for(
        lambda: committed(kafka_bootstrap, group, topic) == saved.offsets[topic],
        "commit at revoke",
    )

    # The second member starts where the first stopped, though its own fresh
    # state began at offset 0: nothing is learned twice in the group, and the
    # group's offsets never go back.
    joined = second.service
    _wait_for(
        lambda: bool(lag := joined.lag()) and not any(lag.values()),
        "second member at the end of its partitions",
    )
    time.sleep(1.0)
    assert committed(kafka_bootstrap, group, topic) == saved.offsets[topic]
    assert first.stop() == 0
    assert second.stop() == 0
    assert joined.engine is not None and joined.engine.events == 0
    assert committed(kafka_bootstrap, group, topic) == saved.offsets[topic]
    negatives = read_topic(kafka_bootstrap, f"{topic}-negatives")
    assert set(_sources(negatives).values()) == {1}


def test_a_member_back_after_another_read_on_learns_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "back", partitions=2)
    events = synthetic_events(160, seed=12)
    first = make_settings(kafka_bootstrap, tmp_path / "a", topic)
    second = replace(first, checkpoint_dir=tmp_path / "b")
    send_events(kafka_bootstrap, topic, events[:80])
    assert ServiceThread(first).start().join() == 0

    # Another member of the group reads on while the first is away.
    send_events(kafka_bootstrap, topic, events[80:])
    other = ServiceThread(second).start()
    assert other.join() == 0
    group = committed(kafka_bootstrap, first.group_id, topic)
    assert sum(group.values()) == 160

    back = ServiceThread(first).start()
    assert back.join() == 0
    learned = [run.service.engine.events for run in (other, back) if run.service.engine]
    assert learned == [80, 80]
    assert committed(kafka_bootstrap, first.group_id, topic) == group
    negatives = read_topic(kafka_bootstrap, first.negatives_topic)
    assert set(_sources(negatives).values()) == {1}


def test_a_partition_ending_in_a_transaction_marker_is_read_to_its_end(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # A committed transaction ends with a marker: an offset no message is
    # returned for. Partition 1 is two hours ahead, so time alignment holds
    # it back for as long as partition 0 seems to have more to read.
    topic = new_topic(kafka_bootstrap, "transactions", partitions=2)

    def click(user: str, item: str, timestamp: int) -> bytes:
        return json.dumps(
            {"user_id": user, "item_id": item, "timestamp": timestamp}
        ).encode()

    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-tx"
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(5):
            producer.send(
                topic, click(f"a{i}", f"i{i % 3}", 900_000_000 + i), partition=0
            )
        producer.commit_transaction()
    finally:
        producer.close(timeout=30)
    later = [
        (None, click(f"b{i % 7}", f"i{i % 5}", 900_007_200 + i)) for i in range(100)
    ]
    send_raw(kafka_bootstrap, topic, later, partition=1)

    settings = make_settings(kafka_bootstrap, tmp_path / "state", topic)
    run = ServiceThread(settings).start()
    assert run.join() == 0
    engine = run.service.engine
    assert engine is not None and engine.events == 105
    assert committed(kafka_bootstrap, settings.group_id, topic) == {0: 6, 1: 100}


def test_unreachable_broker_is_a_clear_error_after_bounded_retries(
    tmp_path: Path,
) -> None:
    settings = ServiceSettings(
        "127.0.0.1:9",
        "clicks",
        "g",
        "negatives",
        "clicks.dlq",
        tmp_path / "state",
        connect_retries=2,
        retry_backoff=0.1,
    )
    with pytest.raises(BrokerUnavailableError) as info:
        ConsumerService(settings, TEST_CONFIG).run()
    assert "cannot reach Kafka at 127.0.0.1:9" in str(info.value)
    assert "after 2 attempts" in str(info.value)


def test_missing_topics_are_named_with_what_to_do(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = make_settings(
        kafka_bootstrap, tmp_path / "state", "no-such-topic-here", connect_retries=1
    )
    with pytest.raises(TopicMissingError, match="'no-such-topic-here' does not exist"):
        ConsumerService(settings, TEST_CONFIG).run()

    topic = new_topic(kafka_bootstrap, "no-outputs", partitions=1)
    settings = make_settings(
        kafka_bootstrap, tmp_path / "state2", topic, create_output_topics=False
    )
    with pytest.raises(TopicMissingError, match="--create-output-topics"):
        ConsumerService(settings, TEST_CONFIG).run()


def test_one_service_per_checkpoint_directory(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "lock", partitions=1)
    settings = make_settings(
        kafka_bootstrap, tmp_path / "state", topic, exit_when_idle=None
    )
    first = ServiceThread(settings).start()
    with pytest.raises(CheckpointError, match="another service"):
        ConsumerService(settings, TEST_CONFIG).run()
    assert first.stop() == 0


def test_slow_batches_are_cut_and_handed_back(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topic = new_topic(kafka_bootstrap, "slow", partitions=1)
    events = synthetic_events(1_500, seed=8)
    send_events(kafka_bootstrap, topic, events)
    # Half of a 400 ms poll interval is far less than 1,500 clicks take.
    settings = make_settings(
        kafka_bootstrap,
        tmp_path / "state",
        topic,
        max_poll_records=1_500,
        max_poll_interval_ms=400,
    )
    with caplog.at_level(logging.WARNING, logger="consumers.service"):
        runner = ServiceThread(settings).start()
        assert runner.join() == 0
    assert any("waits for the next step" in r.getMessage() for r in caplog.records)
    engine = runner.service.engine
    assert engine is not None
    assert engine.state_summary() == clean_run(events, TEST_CONFIG).state_summary()


def test_metrics_endpoint_serves_the_service_figures(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "metrics", partitions=1)
    send_events(kafka_bootstrap, topic, synthetic_events(80))
    send_raw(kafka_bootstrap, topic, [(None, b"{}")])
    settings = make_settings(
        kafka_bootstrap, tmp_path / "state", topic, metrics_port=0, exit_when_idle=None
    )
    runner = ServiceThread(settings).start()
    service = runner.service
    _wait_for(lambda: sum(service.positions.values()) == 81, "consumption")
    _wait_for(lambda: _lag(service, topic) == 0.0, "lag published")
    assert service.metrics_port is not None
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = _parse_samples(text)
    assert samples["icpns_events_processed_total"] == 81
    assert samples["icpns_events_learned_total"] == 80
    assert samples["icpns_dead_letters_total"] == 1
    assert samples[f'icpns_consumer_lag{{partition="0",topic="{topic}"}}'] == 0
    assert "icpns_events_per_second" in samples
    assert 0.0 <= samples["icpns_window_ndcg_at_10"] <= 1.0
    assert runner.stop() == 0


def test_redelivered_events_with_ids_are_learned_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(kafka_bootstrap, "dupes", partitions=1)
    events = synthetic_events(60, seed=9)
    send_events(kafka_bootstrap, topic, events + events[:25])
    runner = ServiceThread(make_settings(kafka_bootstrap, tmp_path / "s", topic))
    assert runner.start().join() == 0
    engine = runner.service.engine
    assert engine is not None
    assert (engine.events, engine.duplicates) == (60, 25)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _lag(service: ConsumerService, topic: str) -> float | None:
    try:
        return service.metrics.value(
            "icpns_consumer_lag", {"topic": topic, "partition": "0"}
        )
    except KeyError:
        return None


def _parse_samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_broker_lost_mid_run_is_waited_out_not_crashed_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Clients reach this broker only through a proxy that the test can cut.
    proxy_target = LocalBroker(log_path=tmp_path / "tansu.log")
    proxy_target.port = _free_port()
    proxy = TcpProxy(proxy_target.port)
    proxy_target.advertised_port = proxy.port
    with proxy_target:
        proxy.restore()
        bootstrap = f"127.0.0.1:{proxy.port}"
        topic = new_topic(bootstrap, "outage", partitions=1)
        events = synthetic_events(200, seed=10)
        send_events(bootstrap, topic, events[:100])
        settings = make_settings(
            bootstrap,
            tmp_path / "state",
            topic,
            exit_when_idle=None,
            checkpoint_every=40,
            flush_timeout=1.0,
        )
        runner = ServiceThread(settings).start()
        service = runner.service
        _wait_for(lambda: sum(service.positions.values()) == 100, "first half")

        # Longer than the session timeout: every connection is lost, and the
        # outputs of what was read before wait for the broker.
        with caplog.at_level(logging.WARNING):
            proxy.cut()
            time.sleep(8)
            assert runner.alive
            proxy.restore()
        assert any(r.levelno >= logging.WARNING for r in caplog.records)
        send_events(bootstrap, topic, events[100:])
        _wait_for(lambda: sum(service.positions.values()) == 200, "second half")
        assert runner.stop() == 0

        engine = service.engine
        assert engine is not None
        assert engine.state_summary() == clean_run(events, TEST_CONFIG).state_summary()
        # A clean stop means every output was acknowledged: all are there now.
        negatives = read_topic(bootstrap, settings.negatives_topic)
        assert len(negatives) == engine.negatives_drawn
        assert max(_sources(negatives).values()) == 1
        assert committed(bootstrap, settings.group_id, topic) == {0: 200}
        proxy.cut()


def test_member_dropped_for_a_slow_step_rejoins_and_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topic = new_topic(kafka_bootstrap, "stall", partitions=1)
    events = synthetic_events(200, seed=11)
    send_events(kafka_bootstrap, topic, events[:100])
    settings = make_settings(
        kafka_bootstrap, tmp_path / "state", topic, exit_when_idle=None
    )
    runner = ServiceThread(settings)
    service = runner.service
    stall = FAST_GROUP["max_poll_interval_ms"] / 1_000 + 3

    def slow_click(record: Any, outcome: object) -> None:
        # One click slower than the poll interval: the client leaves the
        # group, and the partition is the group's to give again.
        if record.offset == 60:
            time.sleep(stall)

    service.on_outcome = slow_click
    with caplog.at_level(logging.INFO):
        runner.start()
        _wait_for(lambda: sum(service.positions.values()) == 100, "first half")
        send_events(kafka_bootstrap, topic, events[100:])
        _wait_for(lambda: sum(service.positions.values()) == 200, "second half")
        assert runner.stop() == 0
    assigned = [r for r in caplog.records if "partitions assigned" in r.message]
    assert len(assigned) >= 2, "the member was never dropped and given back"

    engine = service.engine
    assert engine is not None
    assert engine.state_summary() == clean_run(events, TEST_CONFIG).state_summary()
    negatives = read_topic(kafka_bootstrap, settings.negatives_topic)
    assert len(negatives) == engine.negatives_drawn
    assert max(_sources(negatives).values()) == 1
    assert committed(kafka_bootstrap, settings.group_id, topic) == {0: 200}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_stop_while_the_broker_is_away_is_not_a_clean_exit(tmp_path: Path) -> None:
    proxy_target = LocalBroker(log_path=tmp_path / "tansu.log")
    proxy_target.port = _free_port()
    proxy = TcpProxy(proxy_target.port)
    proxy_target.advertised_port = proxy.port
    with proxy_target:
        proxy.restore()
        bootstrap = f"127.0.0.1:{proxy.port}"
        topic = new_topic(bootstrap, "away", partitions=1)
        events = synthetic_events(100, seed=11)
        send_events(bootstrap, topic, events)
        settings = make_settings(
            bootstrap,
            tmp_path / "state",
            topic,
            exit_when_idle=None,
            checkpoint_every=1_000,
            flush_timeout=1.0,
            stop_timeout=2.0,
        )
        runner = ServiceThread(settings).start()
        service = runner.service
        _wait_for(lambda: sum(service.positions.values()) == 100, "every event")

        # The final checkpoint or its commit cannot land: exit code 1, not 0.
        proxy.cut()
        assert runner.stop() == 1
        proxy.restore()
        assert committed(bootstrap, settings.group_id, topic)[0] in (None, 0)

        # Nothing was lost: a restart ends where a clean run would, every
        # negative written once.
        second = ServiceThread(replace(settings, exit_when_idle=1.5)).start()
        assert second.join() == 0
        engine = second.service.engine
        assert engine is not None
        assert engine.state_summary() == clean_run(events, TEST_CONFIG).state_summary()
        negatives = read_topic(bootstrap, settings.negatives_topic)
        assert len(negatives) == engine.negatives_drawn
        assert max(_sources(negatives).values()) == 1
        assert committed(bootstrap, settings.group_id, topic) == {0: 100}
        proxy.cut()


def test_partitions_are_kept_close_in_event_time(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # 100 hours of clicks over three partitions, read five at a time.
    topic = new_topic(kafka_bootstrap, "aligned", partitions=3)
    events = synthetic_events(600, seed=13, spacing=600.0)
    send_events(kafka_bootstrap, topic, events)
    order: list[tuple[int, float]] = []
    settings = make_settings(
        kafka_bootstrap,
        tmp_path / "state",
        topic,
        max_poll_records=5,
        max_time_skew=7_200.0,
    )
    service = ConsumerService(
        settings,
        TEST_CONFIG,
        on_outcome=lambda record, outcome: order.append(
            (record.partition, outcome.event.timestamp)
        ),
    )
    assert service.run() == 0
    assert len(order) == 600
    assert {partition for partition, _ in order} == {0, 1, 2}

    # Lateness: how far behind the newest click learned so far a click comes.
    newest, lateness = float("-inf"), 0.0
    for _, timestamp in order:
        lateness = max(lateness, newest - timestamp)
        newest = max(newest, timestamp)
    assert lateness < 12 * 3_600
