"""Prometheus metrics of the service: counts, lag, rate, and the HTTP endpoint."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from consumers.metrics import MetricsPortError, ServiceMetrics
from icpns_stream.exceptions import IcpnsError


def test_counts_follow_the_events() -> None:
    metrics = ServiceMetrics()
    metrics.count_event(learned=True, duplicate=False)
    metrics.count_event(learned=False, duplicate=True)
    metrics.count_dead_letter()
    assert metrics.value("icpns_events_processed_total") == 3
    assert metrics.value("icpns_events_learned_total") == 1
    assert metrics.value("icpns_duplicate_events_total") == 1
    assert metrics.value("icpns_dead_letters_total") == 1
    assert metrics.processed_count == 3


def test_lag_labels_are_replaced_not_accumulated() -> None:
    metrics = ServiceMetrics()
    metrics.set_lag({("clicks", 0): 5, ("clicks", 1): 7})
    metrics.set_lag({("clicks", 1): 2})
    assert (
        metrics.value("icpns_consumer_lag", {"topic": "clicks", "partition": "1"}) == 2
    )
    with pytest.raises(KeyError):
        metrics.value("icpns_consumer_lag", {"topic": "clicks", "partition": "0"})


def test_rate_is_the_count_over_the_recent_window() -> None:
    metrics = ServiceMetrics(rate_window=10.0)
    assert metrics.update_rate(now=100.0) == 0.0
    for _ in range(50):
        metrics.count_event(learned=True, duplicate=False)
    assert metrics.update_rate(now=105.0) == pytest.approx(10.0)
    for _ in range(30):
        metrics.count_event(learned=True, duplicate=False)
    # The sample at t=100 falls out of the window: (80 - 50) / (120 - 105).
    assert metrics.update_rate(now=120.0) == pytest.approx(2.0)
    assert metrics.value("icpns_events_per_second") == pytest.approx(2.0)


def test_separate_services_do_not_share_counters() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.count_dead_letter()
    assert second.value("icpns_dead_letters_total") == 0


def test_http_endpoint_serves_and_stops() -> None:
    metrics = ServiceMetrics()
    metrics.count_event(learned=True, duplicate=False)
    metrics.window_ndcg.set(0.25)
    port = metrics.serve(0, "127.0.0.1")
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert "icpns_events_processed_total 1.0" in text
    assert "icpns_window_ndcg_at_10 0.25" in text
    metrics.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_port_in_use_is_a_clear_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = ServiceMetrics()
        with pytest.raises(MetricsPortError) as info:
            metrics.serve(port, "127.0.0.1")
    assert isinstance(info.value, IcpnsError)
    assert str(info.value) == (
        f"metrics port {port} on 127.0.0.1 is already in use; choose another "
        "--metrics-port (0 picks a free one)"
    )
    # Nothing was left serving: close is a no-op.
    metrics.close()


def test_rate_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate_window must be positive, got 0"):
        ServiceMetrics(rate_window=0)
