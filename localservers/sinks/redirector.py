"""A server on loopback that answers what it is told to, redirects included, and records every request.

It stands in for a server that moved (a FHIR server, a token endpoint, a chat webhook, an API server
answering 301/302/307/308) and for the other origin a redirect points at: tests read what reached each.

``PUT /_sink/routes {"/path": {"status": 307, "location": "http://..."}}`` sets answers by path (the
query is ignored); a route without ``location`` answers its ``status`` with its ``json`` body. Paths
without a route answer 200 ``{"ok": true}``. ``GET /_sink/received`` lists the requests (method, path
with query, whether an ``Authorization`` header came, body), ``DELETE /_sink/received`` forgets them
and the routes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from localservers.sinks.recorder import API_PATH, RecordsHandler, serve

ROUTES_PATH = "/_sink/routes"


class RedirectorHandler(RecordsHandler):
    routes: dict[str, dict[str, Any]] = {}

    def _answer(self) -> None:
        body = self.read_body()
        path = urlsplit(self.path).path
        if path == ROUTES_PATH and self.command == "PUT":
            type(self).routes = {**type(self).routes, **json.loads(body or b"{}")}
            self.reply(200, type(self).routes)
            return
        if path.startswith("/_sink/"):
            self.reply(404, {"error": "not found"})
            return
        self.recorder.add(
            {
                "method": self.command,
                "path": self.path,
                "authorization": bool(self.headers.get("Authorization")),
                "body": body.decode("utf-8", "replace"),
            }
        )
        route = type(self).routes.get(path, {})
        if "location" in route:
            self.send_response(int(route.get("status", 307)))
            self.send_header("Location", route["location"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.reply(int(route.get("status", 200)), route.get("json", {"ok": True}))

    def do_GET(self) -> None:
        if self.path in (API_PATH, "/"):
            super().do_GET()
        else:
            self._answer()

    def do_DELETE(self) -> None:
        if self.path == API_PATH:
            type(self).routes = {}
            super().do_DELETE()
        else:
            self._answer()

    do_POST = do_PUT = do_PATCH = _answer


def main(argv: list[str] | None = None) -> None:
    serve("localservers.sinks.redirector", __doc__, RedirectorHandler, argv)


if __name__ == "__main__":
    main()
