"""The phone side of CheXpeditor in Python: a UDP server that takes a photo per request.

It speaks the protocol of :mod:`chexphoto.capture.protocol` (the original Android app's) and
hardens it without breaking compatibility:

* it photographs only when ``seq`` is exactly the next expected number (else ``MISMATCH``);
* a resend of the last captured ``seq`` with the same filename gets the same ``OK|filename``
  again and no second photo (a lost ``OK`` is recovered by resending);
* a request it cannot trust (bad UTF-8, no ``|``, non-integer seq, unsafe or over-long filename,
  bad MAC, replayed counter) gets ``ERROR|reason`` and changes nothing; no datagram can stop it;
* every photo is written atomically into the flat export folder and nowhere else, as the
  filename received (plus ``.jpg`` unless it already ends in ``.jpg``/``.jpeg``);
* recapturing a row (same seq and CSV path, new nonce, e.g. after a restart with ``--start-seq``)
  replaces that row's earlier photo, so each row keeps exactly one;
* its state (last photo, last accepted counter) is kept in ``.camera-state.json`` in the export
  folder, so replay protection and the "same OK again" rule survive a restart.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chexphoto.capture import protocol
from chexphoto.capture.naming import FilenameError, parse_filename
from chexphoto.fsutil import atomic_write_bytes, atomic_write_text, resolve_inside
from chexphoto.imageio import ImageReadError
from chexphoto.seeding import derive_rng

STATE_FILE = ".camera-state.json"



def saved_name(filename: str) -> str:
    """File name a photo sent as ``filename`` is stored under."""
    return filename if filename.lower().endswith((".jpg", ".jpeg")) else filename + ".jpg"


class VirtualSource:
    """Photographs the frame file written by ``--display file:PATH`` (see ``virtual_camera``)."""

    def __init__(self, frame_path: str | os.PathLike, seed: int = 0):
        from chexphoto.capture.virtual_camera import VirtualCamera

        self.camera = VirtualCamera(frame_path, seed=seed)

    def capture(self, seq: int) -> bytes:
        return self.camera.capture(seq)

    def close(self) -> None:
        pass


class DeviceSource:
    """An OpenCV capture device (webcam, capture card, phone as a webcam)."""

    def __init__(self, index: int, *, max_flush: int = 10):
        import cv2

        self._cv2 = cv2
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            raise ValueError(f"cannot open camera device {index}")
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.max_flush = max_flush

    def capture(self, seq: int) -> bytes:
        # Drivers queue frames exposed before the trigger: grab until a grab has to wait for a new
        # exposure, then one more, so the photo was exposed after the request arrived.
        for _ in range(self.max_flush):
            started = time.monotonic()
            if not self.cap.grab():
                raise ImageReadError("the camera device returned no frame")
            if time.monotonic() - started > 0.004:
                break
        ok, frame = self.cap.read()
        if not ok or frame is None:
            raise ImageReadError("the camera device returned no frame")
        ok, buf = self._cv2.imencode(".jpg", frame, [self._cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise ImageReadError("JPEG encoding of the camera frame failed")
        return buf.tobytes()

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str, *, seed: int = 0):
    """``virtual:PATH`` or ``device:K`` -> an object with ``capture(seq) -> bytes`` and ``close()``."""
    kind, sep, value = spec.partition(":")
    if kind == "virtual" and sep and value:
        return VirtualSource(value, seed=seed)
    if kind == "device" and sep and value.isdigit():
        return DeviceSource(int(value))
    raise ValueError(f"--source must be 'virtual:PATH' or 'device:K', got {spec!r}")


def parse_save_delay(text: str) -> tuple[float, float]:
    """``"S"`` or ``"S:FRACTION"`` -> (seconds, fraction of photos that are slow)."""
    seconds_text, _, fraction_text = text.partition(":")
    try:
        seconds = float(seconds_text)
        fraction = float(fraction_text) if fraction_text else 1.0
    except ValueError:
        raise ValueError(f"--save-delay must be SECONDS or SECONDS:FRACTION, got {text!r}") from None
    if seconds < 0 or not 0 <= fraction <= 1:
        raise ValueError(f"--save-delay {text!r}: seconds >= 0 and fraction in 0..1")
    return seconds, fraction


class CameraServer:
    """UDP camera server; :meth:`handle` is the whole protocol, :meth:`serve` the socket loop."""

    def __init__(self, export_dir: str | os.PathLike, start_seq: int, source, *, host: str = "0.0.0.0",
                 port: int = 0, token: str | None = None, save_delay: tuple[float, float] = (0.0, 0.0),
                 seed: int = 0, log: Callable[[str], None] | None = None):
        if start_seq < 0:
            raise ValueError("--start-seq must be >= 0")
        self.export_dir = Path(export_dir)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.token = token or None
        self.save_delay = save_delay
        self.seed = seed
        self._user_log = log
        self.expected = int(start_seq)
        self.last_seq: int | None = None
        self.last_filename: str | None = None
        self.last_counter = -1
        self.photos_taken = 0
        self._load_state()
        self._index = self._scan_export()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def log(self, message: str) -> None:
        """Pass ``message`` to the log callback; a failing log (closed pipe, a file name the
        terminal cannot encode) must not take the camera down."""
        if self._user_log is None:
            return
        try:
            self._user_log(message)
        except Exception:
            pass

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    # -- state ---------------------------------------------------------------------------------
    def _load_state(self) -> None:
        path = self.export_dir / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            self.last_counter = int(state.get("last_counter", -1))
            last_seq, last_filename = state.get("last_seq"), state.get("last_filename")
        except FileNotFoundError:
            return
        except (ValueError, TypeError, AttributeError, OSError) as exc:
            self.log(f"ignoring unreadable {path.name}: {exc}")
            return
        # keep answering a resend of the last photo only if we continue right after it
        if isinstance(last_seq, int) and isinstance(last_filename, str) and last_seq == self.expected - 1:
            self.last_seq, self.last_filename = last_seq, last_filename

    def _save_state(self) -> None:
        state = {"next_seq": self.expected, "last_seq": self.last_seq,
                 "last_filename": self.last_filename, "last_counter": self.last_counter}
        atomic_write_text(self.export_dir / STATE_FILE, json.dumps(state, indent=1) + "\n")

    def _row_key(self, name: str) -> tuple[int, str] | None:
        try:
            photo = parse_filename(name)
        except FilenameError:
            return None
        return photo.seq, photo.csv_path

    def _scan_export(self) -> dict[tuple[int, str], set[str]]:
        index: dict[tuple[int, str], set[str]] = {}
        for entry in os.scandir(self.export_dir):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                # a photo half-written when the server was killed (atomic writes: never a real photo)
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
                continue
            if entry.name.startswith(".") or not entry.is_file():
                continue
            key = self._row_key(entry.name)
            if key is not None:
                index.setdefault(key, set()).add(entry.name)
        return index

    # -- protocol ------------------------------------------------------------------------------
    def _reply(self, kind: str, text: str = "", counter: int | None = None) -> bytes:
        return protocol.format_reply(kind, text, token=self.token, counter=counter)

    def handle(self, data: bytes) -> bytes:
        """Process one request datagram and return the reply datagram (never raises)."""
        try:
            return self._handle(data)
        except Exception as exc:  # a bug or a full disk must not take the camera down
            self.log(f"internal error: {exc!r}")
            return protocol.format_reply(protocol.ERROR, f"internal error: {type(exc).__name__}")

    def _handle(self, data: bytes) -> bytes:
        try:
            request = protocol.parse_request(data, token=self.token)
        except protocol.ProtocolError as exc:
            self.log(f"refused: {exc}")
            return protocol.format_reply(protocol.ERROR, str(exc))
        counter = request.counter
        if self.token is not None:
            if counter is None or counter <= self.last_counter:
                self.log(f"refused replayed request for seq {request.seq}")
                return self._reply(protocol.ERROR, f"{protocol.REASON_REPLAYED} request", counter)
            self.last_counter = counter
            self._save_state()
        if request.seq == self.last_seq and request.filename == self.last_filename:
            self.log(f"seq {request.seq}: resend, same OK again")
            return self._reply(protocol.OK, request.filename, counter)
        if request.seq != self.expected:
            self.log(f"seq {request.seq}: MISMATCH (expecting {self.expected})")
            return self._reply(protocol.MISMATCH, "", counter)
        try:
            photo = self.source.capture(request.seq)
        except Exception as exc:
            self.log(f"seq {request.seq}: capture failed: {exc}")
            return self._reply(protocol.ERROR, f"capture failed: {exc}", counter)
        seconds, fraction = self.save_delay
        if seconds > 0 and derive_rng("chexphoto.camera.save_delay", self.seed, request.seq).random() < fraction:
            time.sleep(seconds)  # simulates a slow phone (tests); requests queue meanwhile
        name = saved_name(request.filename)
        target = resolve_inside(self.export_dir, name)  # belt and braces: the name was checked
        if target.parent != self.export_dir.resolve():
            raise ValueError(f"refusing to write outside the export folder: {name!r}")
        atomic_write_bytes(target, photo, fsync=True)  # a photo is a capture we cannot redo cheaply
        self._replace_earlier(name)
        self.last_seq, self.last_filename = request.seq, request.filename
        self.expected = request.seq + 1
        self.photos_taken += 1
        self._save_state()
        self.log(f"seq {request.seq}: saved {name}")
        return self._reply(protocol.OK, request.filename, counter)

    def _replace_earlier(self, name: str) -> None:
        key = self._row_key(name)
        if key is None:
            return
        names = self._index.setdefault(key, set())
        for old in sorted(names - {name}):
            try:
                (self.export_dir / old).unlink()
                self.log(f"removed earlier photo of the same row: {old}")
            except FileNotFoundError:
                pass
        names.clear()
        names.add(name)

    # -- socket loop ---------------------------------------------------------------------------
    def serve(self) -> None:
        """Answer requests until :meth:`stop` (one at a time: a photo is one shutter)."""
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(protocol.MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError as exc:  # e.g. an ICMP error surfaced on the socket
                if self._stop.is_set():
                    break
                self.log(f"socket error: {exc}")
                continue
            reply = self.handle(data)
            try:
                self.sock.sendto(reply, addr)
            except OSError as exc:
                self.log(f"cannot reply to {addr}: {exc}")

    def start(self) -> CameraServer:
        """Serve in a background thread (tests, embedding)."""
        self._thread = threading.Thread(target=self.serve, name="chexphoto-camera", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the socket and the source (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
        self.source.close()
