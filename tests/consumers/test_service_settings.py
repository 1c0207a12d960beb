"""ServiceSettings refuses values the service could not run with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumers.service import ServiceSettings


def _settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": "127.0.0.1:9092",
        "topic": "clicks",
        "group_id": "icpns",
        "negatives_topic": "negatives",
        "dead_letter_topic": "clicks.dlq",
        "checkpoint_dir": Path("state"),
    }
    values.update(overrides)
    return ServiceSettings(**values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"group_id": ""}, "group_id must not be empty"),
        ({"group_instance_id": ""}, "group_instance_id must not be empty"),
        ({"negatives_topic": "clicks"}, "must differ"),
        ({"auto_offset_reset": "middle"}, "auto_offset_reset must be"),
        ({"checkpoint_every": 0}, "checkpoint_every must be positive, got 0"),
        ({"stop_timeout": 0.0}, "stop_timeout must be positive, got 0.0"),
        ({"retry_backoff": -1.0}, "retry_backoff must be non-negative"),
        (
            {"session_timeout_ms": 1_000, "heartbeat_interval_ms": 1_000},
            "heartbeat_interval_ms must be below session_timeout_ms",
        ),
        ({"metrics_port": 70_000}, "metrics_port must be between 0 and 65535"),
        ({"max_time_skew": 0.0}, "max_time_skew must be positive"),
    ],
)
def test_invalid_settings_are_refused_with_the_name_and_value(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(**overrides)


def test_defaults_join_as_a_dynamic_member_and_accept_a_static_id() -> None:
    assert _settings().group_instance_id is None
    assert _settings(group_instance_id="icpns-1").group_instance_id == "icpns-1"
