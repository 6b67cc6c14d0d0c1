"""Where the controller shows each x-ray: a browser page (``web``) or a file (``file:PATH``).

Every display answers two questions for the controller: *has frame N actually been painted?*
(the camera must not be triggered before) and, in manual mode, *did the operator ask to move on?*

* :class:`FileDisplay` writes the frame atomically to a file (PNG unless the name ends in
  ``.jpg``/``.jpeg``); the frame counts as painted once the file is in place. The virtual
  camera (``chexphoto camera --source virtual:PATH``) photographs that file.
* :class:`WebDisplay` serves a full-screen page on a local address. The page long-polls for the
  current frame, decodes it, swaps it in and waits for two animation frames (the first callback
  runs before the next paint, the second after it) before it reports ``painted`` for that frame
  id. A key press or click on the page asks to advance (manual mode).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from chexphoto.fsutil import atomic_write_bytes
from chexphoto.imageio import encode_image

#: how long one long-poll request of the page is held open when nothing changes
LONG_POLL_S = 20.0
#: A page that has not polled for this long gives up the display (e.g. it was reloaded or closed).
PAGE_STALE_S = LONG_POLL_S + 10.0
_PAGE_ID_RE = re.compile(r"^[A-Za-z0-9-]{8,64}$")


def parse_screen(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> ``(1920, 1080)`` (width, height); ValueError for anything else."""
    try:
        w_text, h_text = text.lower().split("x")
        width, height = int(w_text), int(h_text)
    except ValueError:
        raise ValueError(f"--screen must look like 1920x1080, got {text!r}") from None
    if not (16 <= width <= 16384 and 16 <= height <= 16384):
        raise ValueError(f"--screen {text!r}: width and height must be 16..16384 pixels")
    return width, height


def letterbox(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` scaled to fit ``width`` x ``height`` (aspect kept), centred on black."""
    h, w = img.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(img, (new_w, new_h), interpolation=interpolation) if (new_w, new_h) != (w, h) else img
    out = np.zeros((height, width) + img.shape[2:], dtype=np.uint8)
    y0, x0 = (height - new_h) // 2, (width - new_w) // 2
    out[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return out


class Display:
    """What the controller needs from a screen (see module docstring)."""

    address: str | None = None
    #: True when the operator can ask to advance (key press / click)
    interactive: bool = False

    def show(self, frame_id: int, frame: np.ndarray) -> None:
        """Start replacing the screen content by ``frame`` (already letterboxed)."""
        raise NotImplementedError

    def wait_painted(self, frame_id: int, timeout: float | None) -> bool:
        """Block until ``frame_id`` is on screen (True) or ``timeout`` seconds passed (False)."""
        raise NotImplementedError

    def wait_advance(self, frame_id: int, timeout: float | None) -> bool:
        """Block until the operator asks to leave ``frame_id`` (True) or ``timeout`` passed (False)."""
        if timeout is None:
            raise ValueError("this display has no keyboard or mouse: give a delay")
        time.sleep(max(0.0, timeout))
        return False

    def finish(self, message: str) -> None:
        """The run is over: tell whoever looks at the screen."""

    def close(self) -> None:
        """Release the display's resources."""


class FileDisplay(Display):
    """Writes each frame to ``path`` atomically (for the virtual camera and for tests)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        self.format = "jpg" if suffix in (".jpg", ".jpeg") else "png"
        self.address = str(self.path)
        self._written: int | None = None

    def show(self, frame_id: int, frame: np.ndarray) -> None:
        atomic_write_bytes(self.path, encode_image(frame, self.format, quality=95))
        self._written = frame_id

    def wait_painted(self, frame_id: int, timeout: float | None) -> bool:
        return self._written == frame_id


class _WebState:
    """What the page and the controller share; every field is guarded by ``cond``."""

    def __init__(self, manual: bool):
        self.cond = threading.Condition()
        self.manual = manual
        self.frame_id: int | None = None
        self.frame_bytes = b""
        self.painted: dict[int, float] = {}
        self.advance: int | None = None
        self.message = ""
        self.finished = False
        # Only one page is the display: the first to poll owns it, and only its "painted" and
        # "advance" reports count. A second tab (say, on the operator's laptop) would otherwise
        # report a frame painted before the screen the camera sees has painted it.
        self.owner: str | None = None
        self.owner_seen = 0.0

    def claim(self, page: str | None) -> bool:
        """Whether ``page`` is (or now becomes) the page that shows frames. Caller holds ``cond``."""
        now = time.monotonic()
        if page is None:
            return False
        if self.owner is None or self.owner == page or now - self.owner_seen > PAGE_STALE_S:
            self.owner, self.owner_seen = page, now
            return True
        return False

    def snapshot(self) -> dict:
        url = f"/frame/{self.frame_id}.png" if self.frame_id is not None else None
        return {"frame": self.frame_id, "url": url, "manual": self.manual,
                "finished": self.finished, "message": self.message}


def _page_html() -> bytes:
    return resources.files("chexphoto.capture").joinpath("static/display.html").read_bytes()


def _page_id(text: str) -> str | None:
    """A page's random id as sent by the page, or ``None`` when absent or malformed."""
    return text if _PAGE_ID_RE.match(text or "") else None


class _Handler(BaseHTTPRequestHandler):
    server_version = "chexphoto-display"
    state: _WebState  # set on the subclass made per display
    page: bytes

    def log_message(self, format, *args):  # noqa: A002 - the page polls constantly: stay quiet
        pass

    def _host_allowed(self) -> bool:
        # only IP literals and localhost: a web page on some domain re-pointed at this address
        # (DNS rebinding) must not be able to drive or read the display
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        if host == "localhost":
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if not self._host_allowed():
            return self._send(403, b'{"error":"host not allowed"}')
        url = urlsplit(self.path)
        state = self.state
        if url.path in ("/", "/index.html"):
            return self._send(200, self.page, "text/html; charset=utf-8")
        if url.path == "/api/state":
            query = parse_qs(url.query)
            try:
                after: int | None = int(query.get("after", [""])[0])
            except ValueError:
                after = None  # the page has no frame yet ("null")
            page = _page_id(query.get("page", [""])[0])
            deadline = time.monotonic() + LONG_POLL_S
            with state.cond:
                if not state.claim(page):
                    body = json.dumps({"frame": None, "url": None, "manual": state.manual, "finished": True,
                                       "message": "another page is already the capture display: close this one",
                                       "other_page": True}).encode()
                    return self._send(200, body)
                while (state.frame_id == after and not state.finished
                       and time.monotonic() < deadline):
                    state.cond.wait(timeout=max(0.0, deadline - time.monotonic()))
                state.owner_seen = time.monotonic()
                body = json.dumps(state.snapshot()).encode()
            return self._send(200, body)
        if url.path.startswith("/frame/"):
            with state.cond:
                current, data = state.frame_id, state.frame_bytes
            if current is not None and url.path == f"/frame/{current}.png":
                return self._send(200, data, "image/png")
            return self._send(404, b'{"error":"not the current frame"}')
        return self._send(404, b'{"error":"not found"}')

    def do_POST(self):  # noqa: N802
        if not self._host_allowed():
            return self._send(403, b'{"error":"host not allowed"}')
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1024:
            return self._send(413, b'{"error":"too large"}')
        try:
            message = json.loads(self.rfile.read(length) or b"{}")
            frame_id = int(message["frame"])
            page = _page_id(str(message.get("page", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._send(400, b'{"error":"expected {\\"frame\\": id, \\"page\\": id}"}')
        state = self.state
        path = urlsplit(self.path).path
        with state.cond:
            if page is None or page != state.owner:
                return self._send(409, b'{"error":"this page is not the capture display"}')
            if path == "/api/painted":
                if frame_id == state.frame_id:  # a late report for an older frame means nothing now
                    state.painted.setdefault(frame_id, time.time())
                    state.cond.notify_all()
            elif path == "/api/advance":
                if frame_id == state.frame_id:
                    state.advance = frame_id
                    state.cond.notify_all()
            else:
                return self._send(404, b'{"error":"not found"}')
        return self._send(200, b'{"ok":true}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class WebDisplay(Display):
    """A full-screen page served on ``http://HOST:PORT/`` (port 0: any free port)."""

    interactive = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, manual: bool = False):
        self.state = _WebState(manual)
        handler = type("Handler", (_Handler,), {"state": self.state, "page": _page_html()})
        self.server = _Server((host, port), handler)
        bound_host, bound_port = self.server.server_address[:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.address = f"http://{shown_host}:{bound_port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="chexphoto-web-display", daemon=True)
        self._thread.start()

    def show(self, frame_id: int, frame: np.ndarray) -> None:
        data = encode_image(frame, "png")
        with self.state.cond:
            self.state.frame_id = frame_id
            self.state.frame_bytes = data
            self.state.advance = None
            self.state.cond.notify_all()

    def painted_at(self, frame_id: int) -> float | None:
        """Wall-clock time the page reported ``frame_id`` painted, if it did."""
        with self.state.cond:
            return self.state.painted.get(frame_id)

    def wait_painted(self, frame_id: int, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.state.cond:
            while frame_id not in self.state.painted:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                # wake up regularly so Ctrl-C is handled promptly
                self.state.cond.wait(timeout=0.5 if left is None else min(left, 0.5))
            return True

    def wait_advance(self, frame_id: int, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.state.cond:
            while self.state.advance != frame_id:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.state.cond.wait(timeout=0.5 if left is None else min(left, 0.5))
            return True

    def finish(self, message: str) -> None:
        with self.state.cond:
            self.state.finished = True
            self.state.message = message
            self.state.cond.notify_all()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def open_display(spec: str, *, manual: bool = False, host: str = "127.0.0.1", port: int = 0) -> Display:
    """``"web"`` or ``"file:PATH"`` -> a display."""
    if spec == "web":
        return WebDisplay(host, port, manual=manual)
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileDisplay(spec[len("file:") :])
    raise ValueError(f"--display must be 'web' or 'file:PATH', got {spec!r}")
