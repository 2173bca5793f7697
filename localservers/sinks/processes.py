"""The sinks as child processes on free loopback ports, with a small client to read what they got."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from localservers.process import ServerProcess, free_port
from localservers.sinks.recorder import API_PATH
from localservers.sinks.redirector import ROUTES_PATH
from localservers.sinks.webhook import STATUS_PATH


class _SinkProcess(ServerProcess):
    def received(self) -> list[dict[str, Any]]:
        response = requests.get(self.url + API_PATH, timeout=5)
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        requests.delete(self.url + API_PATH, timeout=5).raise_for_status()


class SmtpSink(_SinkProcess):
    """``localservers.sinks.smtp``: SMTP on ``port``; ``url`` is its HTTP API (health and records)."""

    def __init__(self, record: Path | None = None, log_path: Path | None = None) -> None:
        self.http_port = free_port()
        args = ["--http-port", str(self.http_port), *(["--record", str(record)] if record else [])]
        super().__init__("localservers.sinks.smtp", args, log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def connection(self, **extra: Any) -> str:
        """``AIRFLOW_CONN_<ID>`` JSON for Airflow's SMTP provider: plain SMTP, no TLS, no SSL."""
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": self.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 0, **extra},
            }
        )


class WebhookSink(_SinkProcess):
    """``localservers.sinks.webhook``: posts to any path are recorded."""

    def __init__(self, record: Path | None = None, log_path: Path | None = None) -> None:
        super().__init__("localservers.sinks.webhook", ["--record", str(record)] if record else [], log_path=log_path)

    def connection(self, path: str = "/hook/T000/B000/secret-part", **extra: Any) -> str:
        """``AIRFLOW_CONN_<ID>`` JSON for a webhook connection whose host is the whole URL."""
        return json.dumps({"conn_type": "http", "host": self.url + path, "extra": extra})

    def reply_with(self, status: int) -> None:
        """Make later posts answer ``status`` (500: a broken integration)."""
        requests.put(self.url + STATUS_PATH, json={"status": status}, timeout=5).raise_for_status()


class Redirector(_SinkProcess):
    """``localservers.sinks.redirector``: answers as told (redirects included) and records every request."""

    def __init__(self, log_path: Path | None = None) -> None:
        super().__init__("localservers.sinks.redirector", log_path=log_path)

    def route(self, path: str, status: int, location: str | None = None, json: Any = None) -> None:
        """Answer requests to ``path`` with ``status``: a redirect to ``location``, or the ``json`` body."""
        answer: dict[str, Any] = {"status": status}
        if location is not None:
            answer["location"] = location
        if json is not None:
            answer["json"] = json
        requests.put(self.url + ROUTES_PATH, json={path: answer}, timeout=5).raise_for_status()
