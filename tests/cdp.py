"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no extra package): one headless
Chromium, pages opened at a fixed window width, JavaScript evaluated in them and screenshots taken."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio"]


class Browser:
    """``Browser(chromium, profile)``: a headless Chromium driven over fds 3/4 (CDP messages ended by NUL)."""

    def __init__(self, chromium: str, profile: Path):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def fds() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child)]  # not clobbered below
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen([chromium, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                      "about:blank"], preexec_fn=fds, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._next()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(method)

    def _next(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str, width: int, height: int = 900) -> str:
        """A new page at ``width`` × ``height`` CSS pixels showing ``url``; returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        return session

    def evaluate(self, session: str, expression: str):
        """The JSON value of ``expression`` in the page (promises awaited)."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                      session)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 60) -> None:
        """Poll until ``expression`` is true in the page."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(session, expression):
            if time.monotonic() > deadline:
                raise TimeoutError(expression)
            time.sleep(0.25)

    def screenshot(self, session: str, path: Path, full_page: bool = True) -> bytes:
        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            w, h = self.evaluate(session, "[document.documentElement.scrollWidth, "
                                          "document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": min(h, 16000), "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", params, session)["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


# Layout checks run in the page: elements past the right edge of the viewport, images that did not load, and
# table headers whose alignment differs from the cells of their column.
LAYOUT_JS = r"""
(() => {
  const vw = document.documentElement.clientWidth;
  const visible = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const overflow = [...document.querySelectorAll('body *')].filter(visible)
    .filter(e => e.getBoundingClientRect().right > vw + 0.5)
    .map(e => `${e.tagName.toLowerCase()}${e.className ? '.' + e.className : ''} right=${Math.round(
      e.getBoundingClientRect().right)}: ${(e.textContent || '').trim().slice(0, 80)}`);
  const images = [...document.images].map(i => ({src: i.currentSrc.slice(0, 60), ok: i.complete && i.naturalWidth > 0}));
  const misaligned = [];
  for (const t of document.querySelectorAll('table')) {
    const rows = [...t.rows];
    const head = rows.filter(r => [...r.cells].every(c => c.tagName === 'TH'));
    const body = rows.filter(r => [...r.cells].some(c => c.tagName === 'TD'));
    if (!head.length || !body.length) continue;
    const ths = [...head[head.length - 1].cells];
    if (ths.some(c => c.colSpan > 1 || c.rowSpan > 1) || head.length > 1) continue;
    for (const r of body) {
      const tds = [...r.cells];
      if (tds.length !== ths.length || tds.some(c => c.colSpan > 1)) continue;
      ths.forEach((th, k) => {
        const a = getComputedStyle(th).textAlign, b = getComputedStyle(tds[k]).textAlign;
        const norm = x => (x === 'start' ? 'left' : x === 'end' ? 'right' : x);
        if (norm(a) !== norm(b)) misaligned.push(`${th.textContent.trim()} (${norm(a)} over ${norm(b)})`);
      });
    }
  }
  return {width: vw, scrollWidth: document.documentElement.scrollWidth, overflow,
          images, misaligned: [...new Set(misaligned)]};
})()
"""
