"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): open a
page at a given window width, collect what it reports as errors, evaluate expressions in it, and
take a full-page screenshot.

The pipe needs no port and no third-party client: Chromium reads commands on fd 3 and writes
replies and events on fd 4, each a JSON object ended by a NUL byte. One browser serves many pages;
`close()` ends the one process started here (by its pid) and removes its private profile.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# Headless as root (CI, containers): Chromium's sandbox needs a user namespace it cannot have,
# and /dev/shm in a container is 64 MB, too small for it.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--mute-audio",
         "--remote-debugging-pipe")
TIMEOUT = 120.0  # seconds for one reply or page load: a hang detector (30 s was hit once under a load of 15)
MAX_SHOT_HEIGHT = 16_000  # CSS pixels of a full-page screenshot


class BrowserError(RuntimeError):
    """Chromium did not answer, answered with an error, or exited."""


class Browser:
    """One Chromium process; `page()` opens tabs in it."""

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="kplab-chromium-")
        self.log_path = Path(self.profile) / "stderr.log"
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Above any fd the child will be given, so dup2 onto 3 and 4 cannot overwrite them.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w)]
        for fd in (to_child_r, from_child_w):
            os.close(fd)

        def onto_3_and_4() -> None:  # in the child: dup2 clears close-on-exec on 3 and 4
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                preexec_fn=onto_3_and_4, start_new_session=True)
        for fd in high:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._receive(deadline, f"{method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        """The first event `method` of `session`, kept or still to come."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._receive(deadline, f"waiting for {method}"))

    def _receive(self, deadline: float, doing: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(left, 0))
            chunk = os.read(self._from_child, 1 << 20) if ready else b""
            if not chunk:
                state = "exited" if self.proc.poll() is not None else "did not answer"
                raise BrowserError(f"chromium {state} ({doing}); its log:\n{self.log_tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def page(self, url: str, width: int, height: int = 900) -> "Page":
        return Page(self, url, width, height)

    def close(self) -> None:
        """End the browser started here (politely, then by its pid) and remove its profile."""
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except (BrowserError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only its children
                    self.proc.wait(timeout=10)
            self._wait_for_helpers()
        finally:
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)


    def _wait_for_helpers(self) -> None:
        """Chromium's helper processes (its session, group = its pid) end after it; wait for
        them, and kill what is left after 10 s."""
        deadline = time.monotonic() + 10
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                return
            time.sleep(0.1)


class Page:
    """One tab showing `url` at width × height CSS pixels, with what it reported while loading."""

    def __init__(self, browser: Browser, url: str, width: int, height: int):
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget",
                                    {"targetId": target, "flatten": True})["sessionId"]
        self.target = target
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})
        browser.wait_for("Page.loadEventFired", self.session)

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def errors(self) -> list[str]:
        """Everything the page reported as an error: uncaught exceptions, console.error, and log
        entries of level error (Content-Security-Policy violations, failed loads)."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                      for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('source')}: {entry.get('text')}")
        return found

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (DevTools is not bound by its CSP)."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression[:80]}…: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page as PNG (up to MAX_SHOT_HEIGHT pixels tall)."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"],
                "height": min(size["height"], MAX_SHOT_HEIGHT), "scale": 1}
        data = self.send("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True, "clip": clip})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
