"""What a sink received, shared by the SMTP and webhook sinks: a list in memory, a JSON-lines file,
and the small HTTP API tests read it through."""

from __future__ import annotations

import argparse
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

API_PATH = "/_sink/received"


class Recorder:
    """Thread-safe record of received messages; optionally mirrored to a JSON-lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, item: dict[str, Any]) -> None:
        item = {"received_at": datetime.now(UTC).isoformat(), **item}
        with self._lock:
            self._items.append(item)
            if self.path:
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(item) + "\n")

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class RecordsHandler(BaseHTTPRequestHandler):
    """``GET /`` (health), ``GET``/``DELETE /_sink/received``; subclasses add their own routes."""

    recorder: Recorder
    server_version = "phone-sync-sink"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the records, not the log
        return

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == API_PATH:
            self.reply(200, self.recorder.items())
        elif self.path == "/":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if self.path == API_PATH:
            self.recorder.clear()
            self.reply(200, {"cleared": True})
        else:
            self.reply(404, {"error": "not found"})


def handler_for(recorder: Recorder, base: type[RecordsHandler] = RecordsHandler) -> type[RecordsHandler]:
    """A handler class bound to ``recorder`` (``http.server`` instantiates handlers per request)."""
    return type(base.__name__, (base,), {"recorder": recorder})


def serve(module: str, description: str | None, handler: type[RecordsHandler], argv: list[str] | None = None) -> None:
    """``python -m <module> --port N [--host H] [--record FILE]``: serve ``handler`` until stopped."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, help="also append each request as a JSON line to this file")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(Recorder(args.record), handler))
    print(f"{module} on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()
