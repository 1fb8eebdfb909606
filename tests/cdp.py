"""A small Chrome DevTools Protocol client for tests: headless Chromium driven over
`--remote-debugging-pipe` (the browser reads commands on fd 3 and writes replies and events on fd 4,
each a JSON message ended by a NUL byte), so no websocket library is needed.

    with Browser(chromium_path) as page:
        page.navigate("http://127.0.0.1:8000/")
        page.click("textarea"); page.insert_text("a fine film"); page.click("#submit")
        page.wait_for("document.getElementById('label')?.textContent")
        png = page.screenshot()

Every wait is bounded (`timeout` seconds, a `TimeoutError` naming what was awaited) and the browser's
whole process group is killed on leaving the `with`, whatever happened inside it.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


class CDPError(RuntimeError):
    """The browser answered a command with an error, or a page script threw."""


class Browser:
    """One headless Chromium with one page, attached with `Target.attachToTarget` (flatten): the
    page's commands go over the same pipe, tagged with the session id."""

    def __init__(self, executable: str, width: int = 900, height: int = 600, timeout: float = 30.0):
        self.executable, self.width, self.height, self.timeout = executable, width, height, timeout
        self.process: subprocess.Popen | None = None
        self.session: str | None = None
        self.errors: list[str] = []  # the page's uncaught exceptions and console.error lines
        self._events: list[dict] = []
        self._buffer = b""
        self._next_id = 0
        self._profile = tempfile.mkdtemp(prefix="lmctl-cdp-")

    # ---- the process -------------------------------------------------------------------------
    def __enter__(self) -> Browser:
        try:
            self._launch()
            self._attach()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _launch(self) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The pipe ends become the browser's fds 3 and 4 through a shell's redirections: no
        # preexec_fn, which is unsafe in a process with threads (the tests' server runs in one).
        # The pipes arrive as the shell's stdin and stdout, which it then points at /dev/null.
        args = [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--hide-scrollbars", "--disable-dev-shm-usage", "about:blank"]
        self._log = open(Path(self._profile) / "browser.log", "wb")
        try:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", 'exec "$@" 3<&0 4>&1 </dev/null >&2', "sh", *args],
                stdin=to_browser_r, stdout=from_browser_w, stderr=self._log, start_new_session=True)
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)

    def close(self) -> None:
        """Ask the browser to quit, then kill its process group (renderers included) and clean up."""
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    self.call("Browser.close", session=False, timeout=3)
                except Exception:  # it is killed below either way
                    pass
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.process = None
        for fd in ("_to_browser", "_from_browser"):
            if getattr(self, fd, None) is not None:
                os.close(getattr(self, fd))
                setattr(self, fd, None)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the browser's stderr, for an assertion message."""
        path = Path(self._profile) / "browser.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ---- messages ----------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None, session: bool = True,
             timeout: float | None = None) -> dict:
        """Send one command (to the page's session unless `session=False`) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._to_browser, data):]
        except BrokenPipeError:
            raise CDPError(f"Chromium is not running (sending {method}); its log ends:\n{self.log_tail()}") from None
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            reply = self._receive(deadline, f"the reply to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}")
                return reply.get("result", {})
            self._note(reply)

    def wait_event(self, method: str, timeout: float | None = None,
                   where: Callable[[dict], bool] = lambda params: True) -> dict:
        """The params of the first event `method` (already received or to come) that `where` accepts."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and where(event.get("params", {})):
                    del self._events[i]
                    return event.get("params", {})
            self._note(self._receive(deadline, f"the event {method}"))

    def _note(self, message: dict) -> None:
        if "method" not in message:
            return
        params = message.get("params", {})
        if message["method"] == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "?"))
        elif message["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        self._events.append(message)
        del self._events[:-200]  # events nobody waits for are not kept without bound

    def _receive(self, deadline: float, what: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} from Chromium in time; its log ends:\n{self.log_tail()}")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise CDPError(f"Chromium closed the pipe while waiting for {what}; its log ends:\n"
                                   f"{self.log_tail()}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _attach(self) -> None:
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        pages = [t["targetId"] for t in targets if t["type"] == "page"]
        target = pages[0] if pages else self.call("Target.createTarget", {"url": "about:blank"},
                                                  session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    # ---- the page ----------------------------------------------------------------------------
    def navigate(self, url: str) -> None:
        """Open `url` and wait for its load event."""
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"Page.navigate {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(f"{expression}: {details.get('exception', {}).get('description') or details.get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None, interval: float = 0.05) -> Any:
        """Evaluate `expression` until it is truthy, and return that value."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText : ''")
                raise TimeoutError(f"still falsy ({value!r}) after the wait: {expression}\npage text:\n{text[:2000]}"
                                   + (f"\npage errors: {self.errors}" if self.errors else ""))
            time.sleep(interval)

    def click(self, selector: str) -> None:
        """A real left click (mouse pressed and released) at the centre of the element."""
        box = self.evaluate(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            if (!e) return null;
            e.scrollIntoView({{block: "center"}});
            const r = e.getBoundingClientRect();
            return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null;
        }})()""")
        if box is None:
            raise CDPError(f"click {selector}: no such element, or it is not shown")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                   "clickCount": 0 if kind == "mouseMoved" else 1})

    def insert_text(self, text: str) -> None:
        """Text typed into the focused element, as an input method commits it (one input event)."""
        self.call("Input.insertText", {"text": text})

    def press(self, key: str) -> None:
        """One key pressed and released in the focused element: "Enter", "Tab", or a character."""
        codes = {"Enter": (13, "\r"), "Tab": (9, ""), "Backspace": (8, "")}
        code, text = codes.get(key, (ord(key.upper()[0]), key))
        down = {"type": "keyDown", "key": key, "code": key if key in codes else f"Key{key.upper()}",
                "windowsVirtualKeyCode": code}
        if text:
            down["text"] = text
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "windowsVirtualKeyCode": code})

    def screenshot(self, path: str | Path | None = None) -> bytes:
        """The viewport as PNG bytes, also written to `path` if given."""
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data
