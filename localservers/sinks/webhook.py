"""A webhook receiver on loopback: records every JSON (or text) POST, answers like Slack does (``ok``).

``PUT /_sink/status {"status": 500}`` makes later posts fail with that status (and still be recorded),
so tests can see how a broken chat integration is reported.
"""

from __future__ import annotations

import json
from typing import Any

from localservers.sinks.recorder import RecordsHandler, serve

STATUS_PATH = "/_sink/status"


class WebhookHandler(RecordsHandler):
    reply_status = 200

    def do_POST(self) -> None:
        if self.path.startswith("/_sink/"):
            self.reply(404, {"error": "not found"})
            return
        raw = self.read_body().decode("utf-8", "replace")
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
        type(self).reply_status = int(json.loads(self.read_body() or b"{}").get("status", 200))
        self.reply(200, {"status": type(self).reply_status})


def main(argv: list[str] | None = None) -> None:
    serve("localservers.sinks.webhook", __doc__, WebhookHandler, argv)


if __name__ == "__main__":
    main()
