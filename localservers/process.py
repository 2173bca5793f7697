"""Start a local server as a child process on a free loopback port, and stop exactly that process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server child process: ``python -m <module> --port N <args>``, stopped by its pid.

    ``health_path`` is polled until it answers, so callers never race the server's start.
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        *,
        port: int | None = None,
        health_path: str = "/",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.module = module
        self.args = list(args)
        self.port = port or free_port()
        self.health_path = health_path
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,  # `python -m localservers...` finds this repo's modules from its root
            start_new_session=True,
        )
        if output is not subprocess.DEVNULL:
            output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited with code {self.process.returncode} while starting")
            try:
                requests.get(self.url + self.health_path, timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.module} did not answer on {self.url} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process this object started (by pid), never anything else."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
