"""Prometheus metrics of the consumer service."""

from __future__ import annotations

import errno
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from icpns_stream.exceptions import IcpnsError

__all__ = ["MetricsPortError", "ServiceMetrics"]

logger = logging.getLogger(__name__)


class MetricsPortError(IcpnsError):
    """The metrics endpoint cannot listen on the port and address asked."""


class ServiceMetrics:
    """Counters and gauges of one consumer service, served over HTTP if asked.

    The metrics live in their own registry, so several services (in tests)
    never share counters.

    Parameters
    ----------
    rate_window
        Seconds over which ``icpns_events_per_second`` is averaged.

    Attributes
    ----------
    registry
        The Prometheus registry holding every metric below.
    processed_count
        Input messages handled, as a plain integer.

    Notes
    -----
    Metric names, all prefixed ``icpns_``: ``events_processed_total`` (input
    messages handled, good or not), ``events_learned_total``,
    ``duplicate_events_total``, ``dead_letters_total``,
    ``negatives_produced_total``, ``checkpoints_total``,
    ``commit_failures_total``, ``consumer_lag`` (messages behind the high
    watermark, per partition), ``events_per_second``, ``window_ndcg_at_10``
    (prequential NDCG@10 over the engine's recent window) and
    ``last_checkpoint_timestamp_seconds``. Updates cost O(1) except
    `set_lag`, O(partitions). The exposition format is Prometheus' text format
    (https://prometheus.io/docs/instrumenting/exposition_formats/).

    Examples
    --------
    >>> metrics = ServiceMetrics()
    >>> metrics.count_event(learned=True, duplicate=False)
    >>> metrics.count_dead_letter()
    >>> metrics.value("icpns_events_processed_total")
    2.0
    >>> metrics.value("icpns_dead_letters_total")
    1.0
    """

    def __init__(self, rate_window: float = 10.0) -> None:
        if rate_window <= 0:
            raise ValueError(f"rate_window must be positive, got {rate_window}")
        self.rate_window = rate_window
        self.registry = registry = CollectorRegistry()
        self.processed = Counter(
            "icpns_events_processed",
            "Input messages handled, good or malformed.",
            registry=registry,
        )
        self.learned = Counter(
            "icpns_events_learned", "Clicks the engine learned.", registry=registry
        )
        self.duplicates = Counter(
            "icpns_duplicate_events",
            "Clicks skipped because their event id was seen already.",
            registry=registry,
        )
        self.dead_letters = Counter(
            "icpns_dead_letters",
            "Malformed messages sent to the dead-letter topic.",
            registry=registry,
        )
        self.negatives = Counter(
            "icpns_negatives_produced",
            "Negatives written to the negatives topic.",
            registry=registry,
        )
        self.checkpoints = Counter(
            "icpns_checkpoints", "Checkpoints saved.", registry=registry
        )
        self.commit_failures = Counter(
            "icpns_commit_failures",
            "Offset commits that failed (retried at the next checkpoint).",
            registry=registry,
        )
        self.lag = Gauge(
            "icpns_consumer_lag",
            "Messages between the service's position and the high watermark.",
            ["topic", "partition"],
            registry=registry,
        )
        self.events_per_second = Gauge(
            "icpns_events_per_second",
            "Input messages handled per second, recent average.",
            registry=registry,
        )
        self.window_ndcg = Gauge(
            "icpns_window_ndcg_at_10",
            "Prequential NDCG@10 over the engine's recent window of clicks.",
            registry=registry,
        )
        self.last_checkpoint = Gauge(
            "icpns_last_checkpoint_timestamp_seconds",
            "Unix time of the last checkpoint saved.",
            registry=registry,
        )
        self.processed_count = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._server: Any = None

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` over HTTP on ``port`` (0 picks one); return the port.

        Raises `MetricsPortError` when the port cannot be bound (taken by
        another process, or not allowed).
        """
        try:
            server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            # A port taken is a setup mistake: name it and the way out.
            reason = (
                "is already in use"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be used ({exc.strerror or exc})"
            )
            raise MetricsPortError(
                f"metrics port {port} on {host} {reason}; choose another "
                "--metrics-port (0 picks a free one)"
            ) from exc
        self._server = server
        bound: int = server.server_port
        logger.info("serving Prometheus metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        """Stop the HTTP server, if one runs."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def count_event(self, *, learned: bool, duplicate: bool) -> None:
        """Count one good input message."""
        self.processed.inc()
        self.processed_count += 1
        if learned:
            self.learned.inc()
        if duplicate:
            self.duplicates.inc()

    def count_dead_letter(self) -> None:
        """Count one malformed input message."""
        self.processed.inc()
        self.processed_count += 1
        self.dead_letters.inc()

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Publish the lag of each assigned partition."""
        self.lag.clear()
        for (topic, partition), behind in lag.items():
            self.lag.labels(topic=topic, partition=str(partition)).set(behind)

    def update_rate(self, now: float | None = None) -> float:
        """Recompute events/s from the processed counter; return it."""
        # Keep (time, count) samples of the last window and difference the ends.
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, self.processed_count))
        while len(samples) > 2 and now - samples[0][0] > self.rate_window:
            samples.popleft()
        first_time, first_count = samples[0]
        rate = (
            (samples[-1][1] - first_count) / (now - first_time)
            if now > first_time
            else 0.0
        )
        self.events_per_second.set(rate)
        return rate

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """Return a metric's current value by its exposed name (for tests, tools)."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        if found is None:
            raise KeyError(f"no metric sample named {name!r} with labels {labels}")
        return float(found)
