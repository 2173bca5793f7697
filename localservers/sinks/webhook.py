"""A webhook receiver on loopback: records every JSON (or text) POST, answers like Slack does (``ok``).

``PUT /_sink/status {"status": 500}`` makes later posts fail with that status (and still be recorded),
so tests can see how a broken chat integration is reported.
"""

from __future__ import annotations

import argparse
import json
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localservers.sinks.recorder import Recorder, RecordsHandler, handler_for

STATUS_PATH = "/_sink/status"


class WebhookHandler(RecordsHandler):
    reply_status = 200

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        if self.path.startswith("/_sink/"):
            self.reply(404, {"error": "not found"})
            return
        raw = self._body().decode("utf-8", "replace")
        item: dict[str, Any] = {
            "path": self.path,
            "content_type": self.headers.get("Content-Type", ""),
            "authorization": bool(self.headers.get("Authorization")),
            "body": raw,
        }
        try:
            item["json"] = json.loads(raw)
        except ValueError:
            item["json"] = None
        self.recorder.add(item)
        status = type(self).reply_status
        self.reply(status, "ok" if status < 400 else {"error": "configured failure"})

    def do_PUT(self) -> None:
        if self.path != STATUS_PATH:
            self.reply(404, {"error": "not found"})
            return
        # Set on the bound class so every later request (a new handler instance) sees it.
        type(self).reply_status = int(json.loads(self._body() or b"{}").get("status", 200))
        self.reply(200, {"status": type(self).reply_status})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localservers.sinks.webhook", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, help="also append each post as a JSON line to this file")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(Recorder(args.record), WebhookHandler))
    print(f"webhook sink on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
