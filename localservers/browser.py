"""Headless Chromium driven over the DevTools protocol, for screenshots that need clicks (a dialog).

Plain page screenshots use Chromium's ``--screenshot`` flag (:meth:`AirflowCluster.screenshot`); a form
that opens only after a click needs a driver. This one speaks the protocol over a websocket (the
``websockets`` package) with real mouse events, because the UI's buttons ignore ``element.click()``.

    with Browser(profile_dir) as browser:
        browser.open(url)
        browser.click("document.querySelector('button[aria-label=\"Edit Connection\"]')")
        browser.screenshot(out, clip="document.querySelector('[role=dialog]')")
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

# Flags that work on these machines: no sandbox as root, and no background traffic to Google's hosts.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


class Browser:
    """One headless Chromium with one page; stopped (by pid) on exit."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1900) -> None:
        self.profile = profile
        self.width, self.height = width, height
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: ClientConnection | None = None
        self._stack = ExitStack()
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise RuntimeError("no chromium on PATH: apt-get install -y chromium")
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        argv = [chromium, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._wait_for_port(port_file)
            targets = requests.get(f"http://127.0.0.1:{port}/json", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            self._socket = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20))
            self.call("Page.enable")
            self.call(
                "Emulation.setDeviceMetricsOverride",
                width=self.width, height=self.height, deviceScaleFactor=1, mobile=False,
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._socket = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None

    def _wait_for_port(self, port_file: Path, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.exists() and (lines := port_file.read_text().split()):
                return lines[0]
            time.sleep(0.1)
        raise RuntimeError(f"Chromium wrote no DevTools port within {timeout:.0f}s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One protocol command; events in between are dropped."""
        assert self._socket is not None, "use Browser as a context manager"
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll a JavaScript expression until it is truthy (an element rendered, a request answered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {expression[:120]}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def _box(self, element: str) -> dict[str, float]:
        return self.wait_for(
            f"(() => {{ const e = {element}; if (!e) return null; e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"
        )

    def click(self, element: str) -> None:
        """A real left click in the middle of the element that the JavaScript expression finds."""
        box = self._box(element)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, out: Path, clip: str | None = None, margin: int = 10) -> Path:
        """PNG of the page, or of the element ``clip`` finds (plus a margin)."""
        params: dict[str, Any] = {"format": "png"}
        if clip:
            box = self._box(clip)
            params["clip"] = {
                "x": max(0.0, box["x"] - margin),
                "y": max(0.0, box["y"] - margin),
                "width": box["width"] + 2 * margin,
                "height": box["height"] + 2 * margin,
                "scale": 1,
            }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return out
