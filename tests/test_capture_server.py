"""The camera server over real UDP on 127.0.0.1: protocol, hardening, authentication, restart."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest

from chexphoto.capture import protocol
from chexphoto.capture.camera_server import STATE_FILE, CameraServer, VirtualSource, open_source
from chexphoto.capture.naming import make_filename
from chexphoto.imageio import decode_image, write_image

PATH = "CheXpert-v1.0-small/valid/patient00001/study1/view1_frontal.jpg"


def _all_files(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


@pytest.fixture
def setup(tmp_path):
    frame = tmp_path / "screen.png"
    write_image(frame, np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)))
    export = tmp_path / "sandbox" / "export"
    servers = []

    def start(start_seq=0, token=None):
        server = CameraServer(export, start_seq, VirtualSource(frame, seed=3), host="127.0.0.1", token=token)
        servers.append(server.start())
        return server

    yield tmp_path, export, start
    for server in servers:
        server.stop()


def _ask(server, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, server.address)
        return sock.recvfrom(protocol.MAX_DATAGRAM)[0]


def test_sequence_resend_and_mismatch(setup):
    _, export, start = setup
    server = start(start_seq=5)
    name5 = make_filename(5, 1, PATH)
    assert _ask(server, f"4|{make_filename(4, 1, PATH)}".encode()) == b"MISMATCH"
    assert _ask(server, f"5|{name5}".encode()) == f"OK|{name5}".encode()
    # a resend of the last photo gets the same OK and no second photo
    assert _ask(server, f"5|{name5}".encode()) == f"OK|{name5}".encode()
    # the same seq under another name (another run) is not the last photo: refused
    assert _ask(server, f"5|{make_filename(5, 2, PATH)}".encode()) == b"MISMATCH"
    assert _ask(server, f"7|{make_filename(7, 1, PATH)}".encode()) == b"MISMATCH"
    name6 = make_filename(6, 9, "a/b/view1.png")
    assert _ask(server, f"6|{name6}".encode()) == f"OK|{name6}".encode()
    photos = sorted(p.name for p in export.iterdir() if not p.name.startswith("."))
    assert photos == sorted([name5, name6 + ".jpg"])
    assert decode_image((export / name5).read_bytes()).shape[2] == 3
    assert server.photos_taken == 2
    state = json.loads((export / STATE_FILE).read_text())
    assert state["next_seq"] == 7 and state["last_filename"] == name6


def test_hostile_datagrams_change_nothing_and_never_kill_the_server(setup):
    tmp_path, export, start = setup
    server = start(start_seq=0)
    before = _all_files(tmp_path)
    hostile = [
        b"", b"garbage", b"\xff\xfe\xfd|x", b"0|", b"|", b"||||", b"0|0__1__../../../escaped.jpg",
        b"0|0__1__..", b"0|../0__x", b"0|/tmp/0__abs.jpg", b"0|0__1__a\\..\\..\\win.jpg", b"0|0__1__a\x00b.jpg",
        b"0|0__1__a\rb.jpg", b"0|.camera-state.json", b"0|0__" + b"x" * 400, b"-0|0__a", b"1e3|1e3__a",
        b" 0|0__1__a.jpg", b"0|1__1__a.jpg", b"0|0__1__a|mac=" + b"0" * 64, b"9" * 60000, os.urandom(2000),
        "0|0__1__\u202eexe.jpg".encode(), b"0|0__1__a\x7f.jpg",
    ]
    for data in hostile:
        reply = _ask(server, data)
        assert reply.startswith(b"ERROR|"), (data[:40], reply)
    assert _all_files(tmp_path) == before  # nothing written anywhere, not even in the export
    name = make_filename(0, 1, PATH)
    assert _ask(server, f"0|{name}".encode()) == f"OK|{name}".encode()  # still serving, still at seq 0
    assert server.photos_taken == 1
    assert {p.name for p in export.iterdir()} == {name, STATE_FILE}


def test_token_authentication_and_replay_protection(setup):
    _, export, start = setup
    server = start(start_seq=0, token="s3cret")
    name = make_filename(0, 1, PATH)
    assert _ask(server, f"0|{name}".encode()).startswith(b"ERROR|unauthenticated")
    forged = protocol.format_request(0, name, token="wrong", counter=10)
    assert b"bad mac" in _ask(server, forged)
    assert server.photos_taken == 0

    good = protocol.format_request(0, name, token="s3cret", counter=100)
    reply = protocol.parse_reply(_ask(server, good), token="s3cret")
    assert (reply.kind, reply.text, reply.counter, reply.authenticated) == (protocol.OK, name, 100, True)
    # the very same datagram again (a replay) is refused, as is any older counter
    replayed = protocol.parse_reply(_ask(server, good), token="s3cret")
    assert replayed.kind == protocol.ERROR and replayed.text.startswith("replayed")
    name1 = make_filename(1, 1, PATH)
    old = protocol.format_request(1, name1, token="s3cret", counter=99)
    assert protocol.parse_reply(_ask(server, old), token="s3cret").text.startswith("replayed")
    assert server.photos_taken == 1
    # a resend of the same request with a fresh counter is answered again (no second photo)
    again = protocol.parse_reply(_ask(server, protocol.format_request(0, name, token="s3cret", counter=101)),
                                 token="s3cret")
    assert (again.kind, again.counter) == (protocol.OK, 101) and server.photos_taken == 1
    server.stop()

    # replay protection survives a restart (the counter is kept in the state file)
    server2 = start(start_seq=1, token="s3cret")
    replay = protocol.format_request(1, name1, token="s3cret", counter=101)
    assert protocol.parse_reply(_ask(server2, replay), token="s3cret").text.startswith("replayed")
    fresh = protocol.format_request(1, name1, token="s3cret", counter=102)
    assert protocol.parse_reply(_ask(server2, fresh), token="s3cret").kind == protocol.OK


def test_recapturing_a_row_replaces_its_earlier_photo(setup):
    _, export, start = setup
    server = start(start_seq=3)
    first = make_filename(3, 1, PATH)
    assert _ask(server, f"3|{first}".encode()) == f"OK|{first}".encode()
    server.stop()
    # restarted at the same row (its OK was lost): the new photo replaces the old one, and a
    # temporary file left by a kill during a write is cleaned up
    (export / f".{first}.abc123.tmp").write_bytes(b"half a photo")
    server = start(start_seq=3)
    second = make_filename(3, 2, PATH)
    assert _ask(server, f"3|{second}".encode()) == f"OK|{second}".encode()
    assert sorted(p.name for p in export.iterdir()) == sorted([STATE_FILE, second])


def test_resend_after_restart_at_the_next_row_still_gets_ok(setup):
    _, export, start = setup
    server = start(start_seq=0)
    name = make_filename(0, 1, PATH)
    _ask(server, f"0|{name}".encode())
    server.stop()
    server = start(start_seq=1)
    assert _ask(server, f"0|{name}".encode()) == f"OK|{name}".encode()
    assert server.photos_taken == 0


def test_capture_failure_is_an_error_not_a_photo(tmp_path):
    server = CameraServer(tmp_path / "export", 0, VirtualSource(tmp_path / "missing.png"), host="127.0.0.1").start()
    try:
        reply = _ask(server, f"0|{make_filename(0, 1, PATH)}".encode())
        assert reply.startswith(b"ERROR|capture failed")
        assert server.expected == 0 and not [p for p in (tmp_path / "export").iterdir() if p.suffix == ".jpg"]
    finally:
        server.stop()


def test_source_specs():
    with pytest.raises(ValueError, match="--source"):
        open_source("webcam")
    with pytest.raises(ValueError, match="cannot open camera device"):
        open_source("device:57")


def test_a_failing_log_never_kills_the_server(tmp_path):
    # regression: the CLI logs with print(); a closed stdout pipe (or a file name the terminal
    # cannot encode) raised out of handle()'s own error path and ended the serve thread
    def broken_log(message: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    frame = tmp_path / "screen.png"
    write_image(frame, np.zeros((48, 64), dtype=np.uint8))
    server = CameraServer(tmp_path / "export", 0, VirtualSource(frame), host="127.0.0.1", log=broken_log).start()
    try:
        assert _ask(server, b"garbage").startswith(b"ERROR|")
        name = make_filename(0, 1, PATH)
        assert _ask(server, f"0|{name}".encode()) == f"OK|{name}".encode()
        assert _ask(server, f"5|{make_filename(5, 1, PATH)}".encode()) == b"MISMATCH"
        assert server.photos_taken == 1
    finally:
        server.stop()


def test_the_longest_allowed_name_is_saved(setup):
    # regression: the photo was written through a temporary name that embeds the photo's name,
    # so names near the 255-byte limit (accepted by make_filename and the protocol) failed with
    # "ERROR|internal error: OSError" on every attempt and the run could never pass that row
    tmp_path, export, start = setup
    server = start(start_seq=0)
    csv_path = "p/patient1/study1/" + "v" * 220 + ".jpg"
    name = make_filename(0, 1, csv_path)
    assert len(name.encode()) == protocol.MAX_NAME_BYTES
    assert _ask(server, f"0|{name}".encode()) == f"OK|{name}".encode()
    assert sorted(p.name for p in export.iterdir()) == sorted([STATE_FILE, name])
    assert decode_image((export / name).read_bytes()).ndim == 3
