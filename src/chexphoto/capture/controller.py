"""The capture loop: show a row's x-ray, confirm it is painted, trigger the camera, verify, advance.

Row ``r`` of the CSV is always sent with sequence number ``r`` (so a camera started with
``--start-seq R`` matches ``--rows R:...``). For every row the controller

1. letterboxes the x-ray to the screen size and shows it on the display,
2. waits until the display confirms the frame is painted (a file written; a browser page's
   report after the frame was decoded and painted),
3. sends ``{seq}|{filename}`` from a fresh UDP socket per attempt and listens on all of the row's
   sockets (see :class:`chexphoto.capture.protocol.RowExchange` for the rules), then closes them,
4. advances when the photo is confirmed (``OK`` with the same filename) or, after a ``MISMATCH``,
   records the row as unconfirmed; stops after ``retries`` timeouts on one row or
   ``max_unconfirmed`` unconfirmed rows in a row, naming the ``--rows`` to resume from.

The display and the camera link are narrow interfaces (:class:`chexphoto.capture.displays.Display`,
:class:`CameraLink`), so the loop runs against fakes in tests as well as against UDP and a browser.
With no camera (manual mode) the loop advances on a delay or a key press and writes a log of when
each row was on screen, which ``chexphoto compile --match-by-time`` uses to label photos.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import selectors
import socket
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from chexphoto.capture import protocol
from chexphoto.capture.displays import Display, letterbox
from chexphoto.capture.naming import FilenameError, make_filename
from chexphoto.fsutil import PathEscapeError, resolve_inside
from chexphoto.imageio import ImageReadError, read_image

LOG_HEADER = ("row", "path", "shown_at", "hidden_at")


def now_iso() -> str:
    """Local time with UTC offset and microseconds, e.g. ``2026-01-02T10:11:12.000123+01:00``."""
    return datetime.now().astimezone().isoformat(timespec="microseconds")


# -- what to capture ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RowPlan:
    row: int  # 0-based data row of the CSV, also the sequence number
    csv_path: str  # the CSV's Path cell
    image_path: Path  # the x-ray file under the data root
    filename: str  # the photo name sent to the camera (same for every attempt of the row)


def parse_rows(text: str, n_rows: int) -> tuple[int, int]:
    """``"START:END"`` (0-based data rows, END exclusive, END may be omitted) -> (start, end)."""
    start_text, sep, end_text = text.partition(":")
    try:
        start = int(start_text)
        end = int(end_text) if end_text.strip() else n_rows
    except ValueError:
        raise ValueError(f"--rows must look like START:END (0-based, END exclusive), got {text!r}") from None
    if not sep:
        raise ValueError(f"--rows must look like START:END (0-based, END exclusive), got {text!r}")
    if not 0 <= start < end <= n_rows:
        raise ValueError(f"--rows {text}: need 0 <= START < END <= {n_rows} (the CSV has {n_rows} data rows)")
    return start, end


def plan_rows(paths: list[str], data_root: str | os.PathLike, start: int, end: int,
              nonce: str | None = None) -> list[RowPlan]:
    """Check rows ``start:end`` before anything is shown and give each its photo name.

    A row whose path cannot be carried in a photo name or whose image file is missing would stop
    the run half-way (the camera only accepts consecutive numbers, so a row cannot be skipped):
    all such rows are reported together, up front, as one ``ValueError``.
    """
    problems, plan = [], []
    for row in range(start, end):
        csv_path = paths[row]
        try:
            image_path = resolve_inside(data_root, csv_path)
            if not image_path.is_file():
                raise FileNotFoundError(f"image not found: {image_path}")
            filename = make_filename(row, nonce or str(secrets.randbelow(1_000_000)), csv_path)
        except (FilenameError, PathEscapeError, FileNotFoundError, OSError) as exc:
            problems.append(f"row {row} ({csv_path!r}): {exc}")
            continue
        plan.append(RowPlan(row, csv_path, image_path, filename))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(
            f"{len(problems)} of rows {start}:{end} cannot be captured (nothing was shown):\n  {shown}{more}\n"
            "Fix them, or capture the ranges around them (the camera's --start-seq must equal each range's START)."
        )
    return plan


def render_frame(item: RowPlan, screen: tuple[int, int]) -> np.ndarray:
    """The row's x-ray letterboxed to the screen (``ImageReadError`` if unreadable)."""
    return letterbox(read_image(item.image_path), *screen)


# -- camera link -------------------------------------------------------------------------------
class CameraLink:
    """Sends a row's attempts and collects replies on that row's sockets only."""

    def send(self, payload: bytes) -> int:
        """Send one attempt from a fresh socket; returns the attempt's index within the row."""
        raise NotImplementedError

    def receive(self, timeout: float) -> list[tuple[int, bytes]]:
        """Replies (attempt index, datagram) that arrived within ``timeout`` seconds."""
        raise NotImplementedError

    def end_row(self) -> None:
        """Close the row's sockets: later replies to this row are never read."""
        raise NotImplementedError

    def close(self) -> None:
        self.end_row()


class UdpCameraLink(CameraLink):
    """UDP to ``host:port`` with one fresh socket per attempt.

    A closed socket's port could be handed out again by the OS to a later row's socket, and a
    late reply to the old row would then arrive there; ports used recently are therefore never
    reused (and a reply's content is checked anyway). Replies from any other address than the
    camera's are ignored.
    """

    def __init__(self, host: str, port: int, *, remember_ports: int = 4096):
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise ValueError(f"cannot resolve camera host {host!r}: {exc}") from None
        self.family, self.address = info[0], info[4]
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._recent: deque[int] = deque(maxlen=remember_ports)
        self._recent_set: set[int] = set()
        self.send_errors = 0

    def _fresh_socket(self) -> socket.socket:
        rejected = []
        try:
            for _ in range(64):
                sock = socket.socket(self.family, socket.SOCK_DGRAM)
                sock.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", 0))
                port = sock.getsockname()[1]
                if port not in self._recent_set:
                    break
                rejected.append(sock)  # keep it open so the OS picks another port
            else:  # practically impossible; the reply's content is still checked
                sock = rejected.pop()
            if len(self._recent) == self._recent.maxlen:
                self._recent_set.discard(self._recent[0])
            self._recent.append(port)
            self._recent_set.add(port)
            sock.setblocking(False)
            return sock
        finally:
            for other in rejected:
                other.close()

    def send(self, payload: bytes) -> int:
        sock = self._fresh_socket()
        index = len(self._sockets)
        self._sockets.append(sock)
        self._selector.register(sock, selectors.EVENT_READ, index)
        try:
            sock.sendto(payload, self.address)
        except OSError:
            self.send_errors += 1  # like a lost datagram: the row's timeout handles it
        return index

    def _from_camera(self, source) -> bool:
        return source[0] == self.address[0] and source[1] == self.address[1]

    def receive(self, timeout: float) -> list[tuple[int, bytes]]:
        if not self._sockets:
            time.sleep(max(0.0, timeout))
            return []
        received = []
        for key, _ in self._selector.select(max(0.0, timeout)):
            sock = key.fileobj
            while True:
                try:
                    data, source = sock.recvfrom(protocol.MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. ICMP port unreachable reported on this socket
                if self._from_camera(source):
                    received.append((key.data, data))
        return received

    def end_row(self) -> None:
        for sock in self._sockets:
            self._selector.unregister(sock)
            sock.close()
        self._sockets.clear()

    def close(self) -> None:
        self.end_row()
        self._selector.close()


def parse_camera(spec: str) -> tuple[str, int] | None:
    """``udp://HOST:PORT`` -> (host, port); ``manual`` -> None."""
    if spec == "manual":
        return None
    if spec.startswith("udp://"):
        host, sep, port_text = spec[len("udp://") :].rpartition(":")
        host = host.strip("[]")
        if sep and host and port_text.isdigit() and 0 < int(port_text) < 65536:
            return host, int(port_text)
    raise ValueError(f"--camera must be 'udp://HOST:PORT' or 'manual', got {spec!r}")


# -- manual-capture log ------------------------------------------------------------------------
class ShowLog:
    """``row,path,shown_at,hidden_at``: when each row was on screen, appended and fsynced per row.

    An existing log with the same header is continued (a resumed run adds its rows); a torn last
    line from a crash is cut off first.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        header = ",".join(LOG_HEADER) + "\n"
        if self.path.exists():
            data = self.path.read_bytes()
            if not data.startswith(header.encode()):
                raise ValueError(f"{self.path} exists and is not a capture log (header {header.strip()!r})")
            cut = data.rfind(b"\n") + 1
            self._fh = open(self.path, "r+b")  # noqa: SIM115 - kept open for the whole run
            self._fh.truncate(cut)
            self._fh.seek(cut)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "xb")  # noqa: SIM115
            self._append(header.encode())

    def _append(self, data: bytes) -> None:
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, row: int, path: str, shown_at: str, hidden_at: str) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([row, path, shown_at, hidden_at])
        self._append(buf.getvalue().encode("utf-8"))

    def close(self) -> None:
        self._fh.close()


# -- the loop ----------------------------------------------------------------------------------
@dataclass
class CaptureSettings:
    screen: tuple[int, int] = (1920, 1080)
    timeout: float = 3.0  # seconds to wait for a reply before resending
    retries: int = 10  # timeouts on one row before stopping
    max_unconfirmed: int = 5  # rows in a row ending without an OK before stopping
    token: str | None = None
    delay_ms: int = 0  # manual mode: advance after this long (0: only on key press / click)
    paint_timeout: float | None = 120.0  # seconds to wait for the display to show a frame

    def __post_init__(self):
        if self.timeout <= 0:
            raise ValueError("--timeout must be > 0")
        if self.retries < 1:
            raise ValueError("--retries must be >= 1")
        if self.max_unconfirmed < 1:
            raise ValueError("--max-unconfirmed must be >= 1")
        if self.delay_ms < 0:
            raise ValueError("--delay must be >= 0")


@dataclass
class CaptureReport:
    start: int
    end: int
    next_row: int  # first row not yet done: the START to resume from
    confirmed: list[int] = field(default_factory=list)
    unconfirmed: list[int] = field(default_factory=list)
    shown: list[int] = field(default_factory=list)  # manual mode
    stop_reason: str | None = None
    interrupted: bool = False
    manual: bool = False

    @property
    def finished(self) -> bool:
        return self.next_row >= self.end and self.stop_reason is None

    @property
    def resume_rows(self) -> str | None:
        return None if self.next_row >= self.end else f"{self.next_row}:{self.end}"

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.finished else 1

    def summary(self) -> list[str]:
        """Lines for the operator: what happened and the exact --rows to resume from."""
        lines = []
        if self.manual:
            lines.append(f"rows {self.start}:{self.end}: {len(self.shown)} shown")
        else:
            lines.append(f"rows {self.start}:{self.end}: {len(self.confirmed)} photos confirmed, "
                         f"{len(self.unconfirmed)} unconfirmed")
            if self.unconfirmed:
                listed = ", ".join(map(str, self.unconfirmed[:30])) + (" ..." if len(self.unconfirmed) > 30 else "")
                lines.append(f"unconfirmed rows (the camera answered MISMATCH; `chexphoto compile` settles "
                             f"them from the export): {listed}")
        if self.stop_reason:
            lines.append(f"stopped: {self.stop_reason}")
        if self.resume_rows is None:
            lines.append(f"done: all rows {self.start}:{self.end} processed; nothing to resume")
        else:
            hint = "" if self.manual else f" (camera: --start-seq {self.next_row} if you restart it)"
            lines.append(f"resume with: --rows {self.resume_rows}{hint}")
        return lines


class _Stop(Exception):
    def __init__(self, reason: str, resume_row: int):
        super().__init__(reason)
        self.reason, self.resume_row = reason, resume_row


def run_capture(plan: list[RowPlan], display: Display, camera: CameraLink | None,
                settings: CaptureSettings | None = None, *, log: ShowLog | None = None,
                progress=None, end: int | None = None) -> CaptureReport:
    """Capture ``plan`` (consecutive rows); never raises for run-time trouble, see the report."""
    settings = settings or CaptureSettings()
    if not plan:
        raise ValueError("no rows to capture")
    start = plan[0].row
    end = plan[-1].row + 1 if end is None else end
    report = CaptureReport(start, end, start, manual=camera is None)
    clock = protocol.CounterClock()
    task = progress.add_task("capture", total=len(plan)) if progress is not None else None
    pending_log: tuple[int, str, str] | None = None  # (row, path, shown_at) waiting for hidden_at
    streak_start, streak = start, 0
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chexphoto-render")

    def flush_log() -> None:
        nonlocal pending_log
        if log is not None and pending_log is not None:
            log.write(*pending_log, now_iso())
        pending_log = None

    def describe(text: str) -> None:
        if progress is not None:
            progress.update(task, description=text)

    # the next frame is decoded and letterboxed while the current one is being photographed
    upcoming: Future = pool.submit(render_frame, plan[0], settings.screen)
    try:
        for i, item in enumerate(plan):
            try:
                frame = upcoming.result()
            except ImageReadError as exc:
                raise _Stop(f"row {item.row}: cannot read {item.image_path}: {exc}", item.row) from None
            if i + 1 < len(plan):
                upcoming = pool.submit(render_frame, plan[i + 1], settings.screen)
            flush_log()  # the previous row is being replaced now
            display.show(item.row, frame)
            describe(f"row {item.row}: waiting for the display")
            if not display.wait_painted(item.row, settings.paint_timeout):
                where = f" (is {display.address} open?)" if display.address else ""
                raise _Stop(f"the display did not show row {item.row} within {settings.paint_timeout:g} s{where}",
                            item.row)
            if camera is None:
                pending_log = (item.row, item.csv_path, now_iso())
                describe(f"row {item.row}: on screen")
                display.wait_advance(item.row, settings.delay_ms / 1000 if settings.delay_ms else None)
                report.shown.append(item.row)
            else:
                describe(f"row {item.row}: photographing")
                exchange = _photograph(item, camera, settings, clock)
                outcome = exchange.outcome
                if outcome == protocol.Outcome.CONFIRMED:
                    report.confirmed.append(item.row)
                    streak = 0
                elif outcome == protocol.Outcome.UNCONFIRMED:
                    report.unconfirmed.append(item.row)
                    if streak == 0:
                        streak_start = item.row
                    streak += 1
                    if streak >= settings.max_unconfirmed:
                        raise _Stop(
                            f"{streak} rows in a row ({streak_start}..{item.row}) ended with MISMATCH and no OK: "
                            f"the camera is not at the controller's row (out of sync, or restarted with another "
                            f"--start-seq). Restart the camera with --start-seq {streak_start}",
                            streak_start)
                elif outcome == protocol.Outcome.FAILED:
                    extra = f"; last reply: {exchange.last_error}" if exchange.last_error else ""
                    raise _Stop(f"row {item.row}: no answer from the camera after {exchange.timeouts} attempts "
                                f"of {settings.timeout:g} s{extra}", item.row)
                else:  # ABORT
                    raise _Stop(f"row {item.row}: the camera refused the request: {exchange.last_error}", item.row)
            report.next_row = item.row + 1
            if progress is not None:
                progress.advance(task)
        describe("capture finished")
    except _Stop as stop:
        report.stop_reason, report.next_row = stop.reason, stop.resume_row
    except KeyboardInterrupt:
        report.stop_reason, report.interrupted = "interrupted (Ctrl-C)", True
    except Exception as exc:  # e.g. the frame file's disk is full: still say where to resume
        report.stop_reason = f"row {report.next_row}: unexpected error: {type(exc).__name__}: {exc}"
    finally:
        flush_log()
        pool.shutdown(wait=False, cancel_futures=True)
        if camera is not None:
            camera.end_row()
        try:
            display.finish("; ".join(report.summary()))
        except Exception:  # the screen going away must not hide the report
            pass
    return report


def _photograph(item: RowPlan, camera: CameraLink, settings: CaptureSettings,
                clock: protocol.CounterClock) -> protocol.RowExchange:
    """Run one row's exchange to its outcome (sockets of the row are closed on return)."""
    exchange = protocol.RowExchange(item.row, item.filename, settings.timeout, settings.retries, settings.token)
    camera.send(exchange.request(time.monotonic(), clock.next()))
    try:
        while True:
            wait = exchange.next_deadline() - time.monotonic()
            for attempt, data in camera.receive(max(0.0, wait)):
                outcome = exchange.on_reply(attempt, data, time.monotonic())
                if outcome in (protocol.Outcome.CONFIRMED, protocol.Outcome.ABORT):
                    return exchange
            outcome = exchange.tick(time.monotonic())
            if outcome == protocol.Outcome.RESEND:
                camera.send(exchange.request(time.monotonic(), clock.next()))
            elif outcome != protocol.Outcome.WAIT:
                return exchange
    finally:
        camera.end_row()
