"""The throwaway local broker: starts on a free port, stops cleanly."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consumers.local_broker import LocalBroker


def test_starts_accepts_connections_and_stops(tmp_path: Path) -> None:
    broker = LocalBroker(log_path=tmp_path / "tansu.log")
    with broker:
        assert broker.running
        assert broker.port > 0
        assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
        socket.create_connection(("127.0.0.1", broker.port), timeout=2).close()
        assert broker.start() is broker
    assert not broker.running
    broker.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=2).close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": -1}, "port must be between 0 and 65535, got -1"),
        ({"start_timeout": 0}, "start_timeout must be positive, got 0"),
    ],
)
def test_arguments_are_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalBroker(**kwargs)  # type: ignore[arg-type]
