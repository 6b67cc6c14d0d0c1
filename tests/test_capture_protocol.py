"""Wire format, authentication and the controller's per-row state machine (no sockets)."""

from __future__ import annotations

import time
from itertools import pairwise

import numpy as np
import pytest

from chexphoto.capture import protocol
from chexphoto.capture.controller import ShowLog, parse_camera, parse_rows, plan_rows
from chexphoto.capture.displays import letterbox, parse_screen
from chexphoto.capture.naming import make_filename, parse_filename
from chexphoto.capture.protocol import Outcome, RowExchange

NAME = make_filename(7, 42, "CheXpert-v1.0-small/valid/patient00001/study1/view1_frontal.jpg")


def test_request_round_trip_is_the_original_wire_format():
    data = protocol.format_request(7, NAME)
    assert data == f"7|{NAME}".encode()
    request = protocol.parse_request(data)
    assert (request.seq, request.filename, request.counter) == (7, NAME, None)
    assert protocol.format_reply(protocol.OK, NAME) == f"OK|{NAME}".encode()
    assert protocol.format_reply(protocol.MISMATCH) == b"MISMATCH"
    assert protocol.parse_reply(b"MISMATCH").kind == protocol.MISMATCH
    assert protocol.parse_reply(b"MISMATCH\r\n\x00").kind == protocol.MISMATCH
    ok = protocol.parse_reply(f"OK|{NAME}".encode())
    assert (ok.kind, ok.text) == (protocol.OK, NAME)


@pytest.mark.parametrize("data, reason", [
    (b"no separator", "no separator"),
    (b"x|0__1__a.jpg", "non-negative integer"),
    (b"-1|-1__1__a.jpg", "non-negative integer"),
    (b"01|01__1__a.jpg", "non-negative integer"),
    (b"\xff\xfe|bad", "not UTF-8"),
    (b"3|3__1__../../etc/passwd", "path separator"),
    (b"3|3__1__..", "'..'"),
    (b"3|3__1__a\\b.jpg", "path separator"),
    (b"3|3__1__a\x00.jpg", "control"),
    (b"3|3__1__a\nb.jpg", "control"),
    (b"3|", "empty filename"),
    (b"3|.camera-state.json", "starts with '.'"),
    (b"3|4__1__a.jpg", "does not start with the sequence number"),
    (b"3|3__" + b"a" * 300, "longer than"),
    (b"3|3__a|b", "field separator"),
    (b"9" * 5000, "longer than"),
])
def test_hostile_requests_are_refused_with_a_reason(data, reason):
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.parse_request(data)


def test_mac_binds_message_and_counter():
    data = protocol.format_request(7, NAME, token="s3cret", counter=1000)
    assert data.startswith(f"7|{NAME}|n=1000|mac=".encode())
    request = protocol.parse_request(data, token="s3cret")
    assert (request.seq, request.filename, request.counter) == (7, NAME, 1000)
    with pytest.raises(protocol.ProtocolError, match="bad mac"):
        protocol.parse_request(data, token="other")
    with pytest.raises(protocol.ProtocolError, match="no mac"):
        protocol.parse_request(f"7|{NAME}".encode(), token="s3cret")
    tampered = data.replace(b"n=1000", b"n=1001")
    with pytest.raises(protocol.ProtocolError, match="bad mac"):
        protocol.parse_request(tampered, token="s3cret")
    with pytest.raises(protocol.ProtocolError, match="without --token"):
        protocol.parse_request(data)
    # a reply is MACed under another prefix: a request cannot be reflected as a reply
    reply = protocol.parse_reply(protocol.format_reply(protocol.OK, NAME, token="s3cret", counter=5), token="s3cret")
    assert reply.authenticated and reply.counter == 5 and reply.text == NAME
    assert not protocol.parse_reply(protocol.format_reply(protocol.OK, NAME, token="x", counter=5),
                                    token="s3cret").authenticated


def test_counter_clock_strictly_increases():
    clock = protocol.CounterClock()
    values = [clock.next() for _ in range(1000)]
    assert all(b > a for a, b in pairwise(values))


def _exchange(**kw) -> RowExchange:
    return RowExchange(seq=7, filename=NAME, timeout=1.0, retries=3, **kw)


def test_ok_with_our_filename_confirms_even_on_an_earlier_attempt():
    ex = _exchange()
    ex.request(0.0)
    assert ex.tick(1.0) == Outcome.RESEND
    ex.request(1.0)
    assert ex.on_reply(0, f"OK|{NAME}".encode(), 1.2) == Outcome.CONFIRMED


def test_ok_for_another_filename_or_garbage_never_confirms():
    ex = _exchange()
    ex.request(0.0)
    other = make_filename(6, 42, "a/b/c.jpg")
    assert ex.on_reply(0, f"OK|{other}".encode(), 0.1) == Outcome.WAIT
    assert ex.on_reply(0, b"\xff", 0.1) == Outcome.WAIT
    assert ex.on_reply(0, b"HELLO", 0.1) == Outcome.WAIT
    assert ex.ignored == 3
    assert ex.on_reply(0, f"OK|{NAME}".encode(), 0.2) == Outcome.CONFIRMED


def test_mismatch_waits_for_a_late_ok_then_ends_unconfirmed():
    ex = _exchange()
    ex.request(0.0)
    assert ex.on_reply(0, b"MISMATCH", 0.5) == Outcome.WAIT
    assert ex.next_deadline() == pytest.approx(1.5)
    assert ex.tick(1.2) == Outcome.WAIT  # no resend while waiting after a MISMATCH
    assert ex.on_reply(0, f"OK|{NAME}".encode(), 1.3) == Outcome.CONFIRMED

    ex = _exchange()
    ex.request(0.0)
    ex.on_reply(0, b"MISMATCH", 0.5)
    assert ex.tick(1.5) == Outcome.UNCONFIRMED


def test_timeouts_resend_then_fail_after_retries():
    ex = _exchange()
    ex.request(0.0)
    assert ex.tick(0.5) == Outcome.WAIT
    assert ex.tick(1.0) == Outcome.RESEND
    ex.request(1.0)
    assert ex.tick(2.0) == Outcome.RESEND
    ex.request(2.0)
    assert ex.tick(3.0) == Outcome.FAILED
    assert ex.timeouts == 3 and ex.attempts == 3


def test_authenticated_exchange_ignores_forged_and_stale_replies():
    ex = _exchange(token="k")
    ex.request(0.0, counter=100)
    ex.request(0.5, counter=101)
    # unauthenticated OK (an attacker, or a camera without the token) is ignored
    assert ex.on_reply(0, f"OK|{NAME}".encode(), 0.6) == Outcome.WAIT
    # an authentic reply to a different attempt's counter is not an answer on this socket
    assert ex.on_reply(0, protocol.format_reply(protocol.OK, NAME, token="k", counter=101), 0.6) == Outcome.WAIT
    # replayed-duplicate errors are harmless
    assert ex.on_reply(1, protocol.format_reply(protocol.ERROR, "replayed request", token="k", counter=101),
                       0.6) == Outcome.WAIT
    assert ex.on_reply(1, protocol.format_reply(protocol.OK, NAME, token="k", counter=101), 0.7) == Outcome.CONFIRMED


def test_unauthenticated_refusal_aborts_without_token():
    ex = _exchange()
    ex.request(0.0)
    assert ex.on_reply(0, b"ERROR|unauthenticated: message has no mac", 0.1) == Outcome.ABORT
    assert "unauthenticated" in ex.last_error


def test_rows_screen_camera_parsing():
    assert parse_rows("3:10", 20) == (3, 10)
    assert parse_rows("3:", 20) == (3, 20)
    for bad in ("3", "10:3", "0:21", "-1:4", "a:b"):
        with pytest.raises(ValueError, match="--rows"):
            parse_rows(bad, 20)
    assert parse_screen("320x240") == (320, 240)
    with pytest.raises(ValueError):
        parse_screen("320")
    assert parse_camera("udp://127.0.0.1:4445") == ("127.0.0.1", 4445)
    assert parse_camera("udp://[::1]:4445") == ("::1", 4445)
    assert parse_camera("manual") is None
    with pytest.raises(ValueError):
        parse_camera("tcp://x:1")


def test_letterbox_keeps_aspect_and_centres_on_black():
    img = np.full((100, 50), 200, np.uint8)
    out = letterbox(img, 320, 240)
    assert out.shape == (240, 320)
    cols = np.nonzero(out[120] > 100)[0]
    assert (cols[0], cols[-1]) == (100, 219)  # 120 px wide, centred
    assert out[:, :100].max() == 0 and out[:, 220:].max() == 0
    rgb = letterbox(np.full((10, 40, 3), 90, np.uint8), 320, 240)
    assert rgb.shape == (240, 320, 3) and rgb[0].max() == 0 and rgb[120, 160, 0] == 90


def test_plan_rows_reports_every_bad_row_up_front(tmp_path):
    good = "CheXpert-v1.0-small/valid/patient00001/study1/view1_frontal.jpg"
    (tmp_path / good).parent.mkdir(parents=True)
    (tmp_path / good).write_bytes(b"x")
    paths = [good, "CheXpert-v1.0-small/valid/patient00002/study1/view1_frontal.jpg", "../outside.jpg", good]
    with pytest.raises(ValueError) as info:
        plan_rows(paths, tmp_path, 0, 4)
    message = str(info.value)
    assert "2 of rows 0:4" in message and "row 1" in message and "row 2" in message
    plan = plan_rows(paths, tmp_path, 3, 4)
    assert [p.row for p in plan] == [3]
    assert parse_filename(plan[0].filename).seq == 3 and parse_filename(plan[0].filename).csv_path == good


def test_show_log_appends_and_cuts_torn_lines(tmp_path):
    path = tmp_path / "log.csv"
    log = ShowLog(path)
    log.write(0, "a/b,c.jpg", "2026-01-01T00:00:00.000001+00:00", "2026-01-01T00:00:01.000000+00:00")
    log.close()
    with open(path, "ab") as fh:
        fh.write(b"1,torn")
    log = ShowLog(path)
    log.write(1, "d.jpg", "s", "h")
    log.close()
    assert path.read_text().splitlines() == [
        "row,path,shown_at,hidden_at",
        '0,"a/b,c.jpg",2026-01-01T00:00:00.000001+00:00,2026-01-01T00:00:01.000000+00:00',
        "1,d.jpg,s,h",
    ]
    (tmp_path / "other.csv").write_text("x,y\n")
    with pytest.raises(ValueError, match="not a capture log"):
        ShowLog(tmp_path / "other.csv")


# -- the loop against fakes -------------------------------------------------------------------
class FakeDisplay:
    address = None

    def __init__(self, interrupt_at=None):
        self.shown, self.interrupt_at = [], interrupt_at

    def show(self, frame_id, frame):
        self.shown.append(frame_id)

    def wait_painted(self, frame_id, timeout):
        if frame_id == self.interrupt_at:
            raise KeyboardInterrupt
        return True

    def finish(self, message):
        self.message = message


class ScriptedCamera:
    """Answers each row's first attempt from a script: 'ok', 'mismatch' or 'silent'."""

    def __init__(self, script):
        self.script, self.sent = script, []

    def send(self, payload):
        self.sent.append(payload)
        return len(self.sent) - 1

    def receive(self, timeout):
        if not self.sent:
            return []
        seq_text, _, filename = self.sent[-1].decode().partition("|")
        action = self.script.get(int(seq_text), "ok")
        if action == "ok":
            return [(0, f"OK|{filename}".encode())]
        if action == "mismatch":
            return [(0, b"MISMATCH")]
        time.sleep(timeout)
        return []

    def end_row(self):
        self.sent = []


def _plan(tmp_path, n):
    from chexphoto.imageio import write_image

    paths = [f"d/valid/patient{r:05d}/study1/view1_frontal.png" for r in range(n)]
    for path in paths:
        write_image(tmp_path / path, np.full((8, 8), 128, np.uint8))
    return plan_rows(paths, tmp_path, 0, n)


def test_loop_records_unconfirmed_rows_and_resets_the_streak(tmp_path):
    from chexphoto.capture.controller import CaptureSettings, run_capture

    camera = ScriptedCamera({1: "mismatch", 2: "mismatch", 4: "mismatch"})
    report = run_capture(_plan(tmp_path, 6), FakeDisplay(), camera,
                         CaptureSettings(screen=(32, 24), timeout=0.01, max_unconfirmed=3))
    assert report.finished and report.exit_code == 0
    assert report.confirmed == [0, 3, 5] and report.unconfirmed == [1, 2, 4]
    assert "nothing to resume" in report.summary()[-1]


def test_loop_stops_on_silence_and_on_ctrl_c_with_the_row_to_resume(tmp_path):
    from chexphoto.capture.controller import CaptureSettings, run_capture

    plan = _plan(tmp_path, 6)
    report = run_capture(plan, FakeDisplay(), ScriptedCamera({3: "silent"}),
                         CaptureSettings(screen=(32, 24), timeout=0.01, retries=4))
    assert report.confirmed == [0, 1, 2] and report.resume_rows == "3:6" and report.exit_code == 1
    assert "no answer from the camera after 4 attempts" in report.stop_reason
    report = run_capture(plan, FakeDisplay(interrupt_at=2), ScriptedCamera({}), CaptureSettings(screen=(32, 24)))
    assert report.interrupted and report.exit_code == 130 and report.resume_rows == "2:6"
    assert report.summary()[-1].startswith("resume with: --rows 2:6")


def test_loop_reports_unexpected_errors_with_the_row_to_resume(tmp_path):
    from chexphoto.capture.controller import CaptureSettings, run_capture

    class FullDisk(FakeDisplay):
        def show(self, frame_id, frame):
            if frame_id == 4:
                raise OSError(28, "No space left on device")

    report = run_capture(_plan(tmp_path, 6), FullDisk(), ScriptedCamera({}), CaptureSettings(screen=(32, 24)))
    assert report.confirmed == [0, 1, 2, 3] and report.resume_rows == "4:6" and report.exit_code == 1
    assert "No space left" in report.stop_reason


def test_web_display_serves_state_and_refuses_foreign_hosts():
    import json
    import urllib.request

    from chexphoto.capture.displays import WebDisplay

    display = WebDisplay()
    try:
        display.show(3, np.zeros((24, 32), np.uint8))
        with urllib.request.urlopen(display.address + "api/state?after=null&page=page-aaaa1111", timeout=5) as r:
            state = json.loads(r.read())
        assert state["frame"] == 3 and state["url"] == "/frame/3.png"
        with urllib.request.urlopen(display.address + "frame/3.png", timeout=5) as response:
            assert response.read().startswith(b"\x89PNG")

        def painted(frame: int, page: str) -> None:
            body = json.dumps({"frame": frame, "page": page}).encode()
            request = urllib.request.Request(display.address + "api/painted", data=body, method="POST")
            urllib.request.urlopen(request, timeout=5).close()

        painted(2, "page-aaaa1111")
        assert not display.wait_painted(3, 0.05)  # a report for another frame is not this frame's
        painted(3, "page-aaaa1111")
        assert display.wait_painted(3, 1)
        rebinding = urllib.request.Request(display.address, headers={"Host": "evil.example:80"})
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(rebinding, timeout=5)
    finally:
        display.close()


def test_only_the_page_showing_frames_can_report_them_painted():
    """A second tab (e.g. on the operator's laptop) must not confirm a frame the screen the camera
    sees has not painted yet: only the page that owns the display counts."""
    import json
    import urllib.request

    from chexphoto.capture.displays import WebDisplay

    display = WebDisplay()
    try:
        display.show(5, np.zeros((24, 32), np.uint8))
        with urllib.request.urlopen(display.address + "api/state?after=null&page=screen-0001", timeout=5) as r:
            assert json.loads(r.read())["frame"] == 5
        with urllib.request.urlopen(display.address + "api/state?after=null&page=laptop-0002", timeout=5) as r:
            other = json.loads(r.read())
        assert other["other_page"] and other["frame"] is None and other["url"] is None
        for page in ("laptop-0002", None):
            body = json.dumps({"frame": 5, **({"page": page} if page else {})}).encode()
            request = urllib.request.Request(display.address + "api/painted", data=body, method="POST")
            with pytest.raises(urllib.error.HTTPError, match="409"):
                urllib.request.urlopen(request, timeout=5)
        assert not display.wait_painted(5, 0.05)
        body = json.dumps({"frame": 5, "page": "screen-0001"}).encode()
        request = urllib.request.Request(display.address + "api/painted", data=body, method="POST")
        urllib.request.urlopen(request, timeout=5).close()
        assert display.wait_painted(5, 1)
    finally:
        display.close()


def test_ok_names_tolerates_padding_folder_and_extension_but_not_another_name():
    assert protocol.ok_names(NAME, NAME)
    assert protocol.ok_names(f" {NAME}\n\x00\x00", NAME)
    assert protocol.ok_names(f"/storage/emulated/0/CheXpeditor/{NAME}", NAME)
    short = make_filename(7, 42, "a/b/view1.png")
    assert protocol.ok_names(short + ".jpg", short) and protocol.ok_names(short + ".JPEG", short)
    assert not protocol.ok_names(make_filename(7, 43, "a/b/view1.png"), short)
    assert not protocol.ok_names("x" + short, short) and not protocol.ok_names(short + ".jpgx", short)
    assert not protocol.ok_names("", short)
