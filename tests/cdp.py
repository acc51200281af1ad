"""A tiny headless-Chromium driver over the DevTools protocol, for the web page's test.

Debian's ``chromium`` package, started with ``--remote-debugging-port=0``; commands go
over one WebSocket. No browser download (Playwright and Selenium fetch their own
browsers, impossible offline).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, executable: str, width: int = 1000, height: int = 720) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="fc-chromium-"))
        self._stack = contextlib.ExitStack()
        self._proc = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-port=0", f"--user-data-dir={self._dir}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._id = 0
        port_file = self._dir / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self._ws = self._stack.enter_context(connect(target["webSocketDebuggerUrl"],
                                                     max_size=None))
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        self._stack.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def call(self, method: str, params: dict | None = None) -> dict:
        """Send one command and return its result (events in between are skipped)."""
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self._ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        """Evaluate JavaScript in the page and return its (JSON) value."""
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_loaded(self, url_part: str = "", timeout: float = 60) -> str:
        """Wait until the page whose URL contains ``url_part`` has loaded (images too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.js("[document.readyState, location.href]")
            if state and state[0] == "complete" and url_part in state[1]:
                return state[1]
            time.sleep(0.1)
        raise TimeoutError(f"page {url_part!r} did not load")

    def goto(self, url: str) -> None:
        """Load ``url`` and wait for it."""
        self.call("Page.navigate", {"url": url})
        self.wait_loaded(url.split("://", 1)[-1].split("/", 1)[-1])

    def submit(self, expression: str, url_part: str) -> str:
        """Click the element ``expression`` (JS) and wait for the page it leads to."""
        self.js(f"window.__old = true; ({expression}).click()")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.js("window.__old === undefined && document.readyState === 'complete'"):
                    break
            except RuntimeError:
                pass  # the old page went away mid-evaluation
            time.sleep(0.1)
        return self.wait_loaded(url_part)

    def screenshot(self) -> bytes:
        """PNG of the visible page."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
