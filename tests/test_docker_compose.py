"""docker-compose.yml and Dockerfile: structure, images, commands and environment.

No Docker engine runs in the tests, so the file is checked for what running it
relies on, and every icpns-stream command in it is parsed by the real CLI.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.commands import add_parsers, run_consume, run_produce

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service.get("environment", {}).items()}


def _parse(command: list[str]) -> argparse.Namespace:
    """Parse an icpns-stream command line the way the CLI does."""
    parser = argparse.ArgumentParser(prog="icpns-stream")
    parser.add_argument("--log-level")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(command)


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "topics", "producer", "consumer"}
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert services["topics"]["image"] == services["kafka"]["image"]
    for name in ("producer", "consumer"):
        assert services[name]["build"] == "."
        assert services[name]["image"] == "icpns-stream:latest"


def test_kafka_is_a_single_kraft_node_reachable_inside_and_outside(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(
        item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert listeners["CONTROLLER"] == ":9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert set(advertised) <= set(listeners)
    protocols = dict(
        item.split(":")
        for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(protocols) == set(listeners)
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:9092"
    assert advertised["EXTERNAL"] == "localhost:9094"
    assert "9094:9094" in kafka["ports"]

    # One node: internal topics cannot ask for more replicas than that.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_topics_are_created_before_producer_and_consumer(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    topics = services["topics"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    script = " ".join(topics["command"])
    assert "kafka-topics.sh --bootstrap-server kafka:9092" in script
    assert "--create --if-not-exists" in script
    created = re.search(r"for topic in ([^;]+);", script)
    assert created is not None
    assert set(created.group(1).split()) == {"clicks", "negatives", "clicks.dlq"}
    assert topics["restart"] == "no"
    for name in ("producer", "consumer"):
        assert services[name]["depends_on"] == {
            "topics": {"condition": "service_completed_successfully"}
        }


def test_producer_replays_the_bundled_sample_once(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = compose["services"]["producer"]
    env = _environment(producer)
    assert env == {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    assert producer["restart"] == "no"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", env["KAFKA_BOOTSTRAP_SERVERS"])
    args = _parse(producer["command"])
    assert args.handler is run_produce
    assert args.bootstrap_servers == "kafka:9092"
    assert args.topic == "clicks"
    assert args.add_event_ids
    # The Dockerfile copies the repository to /app: the sample must be there.
    assert args.path.parts[:2] == ("/", "app")
    assert ROOT.joinpath(*args.path.parts[2:]).is_file()


def test_consumer_runs_the_service_with_state_on_a_volume(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = compose["services"]["consumer"]
    env = _environment(consumer)
    assert env == {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", env["KAFKA_BOOTSTRAP_SERVERS"])
    args = _parse(consumer["command"])
    assert args.handler is run_consume
    assert args.bootstrap_servers == "kafka:9092"
    assert (args.topic, args.negatives_topic, args.dead_letter_topic) == (
        "clicks",
        "negatives",
        "clicks.dlq",
    )
    assert args.auto_offset_reset == "earliest"
    # One consumer, a static member: a restart is not held up by its old session.
    assert args.group_instance_id == "icpns-stream-1"
    assert str(args.checkpoint_dir) == "/state"
    assert "consumer-state:/state" in consumer["volumes"]
    assert "consumer-state" in compose["volumes"]
    assert f"{args.metrics_port}:{args.metrics_port}" in consumer["ports"]
    assert str(args.metrics_port) in " ".join(consumer["healthcheck"]["test"])

    # A stop is a SIGTERM with time to checkpoint; crashes restart, boundedly.
    assert consumer["stop_signal"] == "SIGTERM"
    assert consumer["stop_grace_period"] == "60s"
    assert consumer["restart"].startswith("on-failure:")


def test_dockerfile_installs_the_package_with_the_cli_as_entrypoint() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert re.fullmatch(r"FROM python:3\.1[1-9]-slim", lines[0])
    assert "COPY icpns_stream ./icpns_stream" in lines
    assert "COPY consumers ./consumers" in lines
    assert "WORKDIR /app" in lines
    assert "RUN pip install ." in lines
    assert 'ENTRYPOINT ["icpns-stream"]' in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert 'VOLUME ["/state"]' in lines
