"""The whole capture loop on 127.0.0.1: controller, file display, camera server with the virtual
camera, and a fault-injecting relay. Photos are checked by their *content*: every test x-ray is a
distinct random block pattern, and each photo is un-warped with the virtual camera's pose and
matched against every candidate frame."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from chexphoto.capture import controller
from chexphoto.capture.camera_server import STATE_FILE, CameraServer, VirtualSource
from chexphoto.capture.displays import FileDisplay, letterbox
from chexphoto.capture.naming import parse_filename
from chexphoto.capture.relay import Faults, FaultyRelay
from chexphoto.capture.virtual_camera import VirtualCamera, screen_homography
from chexphoto.cli import main
from chexphoto.imageio import decode_image, write_image
from chexphoto.seeding import derive_rng

SCREEN = (320, 240)
CAMERA_SEED = 11


def make_dataset(root: Path, n: int) -> tuple[Path, Path, list[str]]:
    """``n`` tiny x-rays, each a clearly distinct 6x5 pattern of black and white blocks, and their CSV."""
    data = root / "data"
    paths, codes = [], np.zeros((0, 30), np.uint8)
    for row in range(n):
        for attempt in range(1000):  # at least 8 of 30 blocks differ between any two x-rays
            bits = derive_rng("capture-test", row, attempt).integers(0, 2, size=30).astype(np.uint8)
            if 8 <= bits.sum() <= 22 and (len(codes) == 0 or (codes != bits).sum(axis=1).min() >= 8):
                break
        codes = np.vstack([codes, bits])
        bits = bits.reshape(5, 6)
        img = cv2.resize(bits * 215 + 20, (96, 80), interpolation=cv2.INTER_NEAREST)
        path = f"CheXpert-v1.0-small/valid/patient{row:05d}/study1/view1_frontal.jpg"
        write_image(data / path, img)
        paths.append(path)
    csv_path = root / "rows.csv"
    pd.DataFrame({"Path": paths, "Sex": "Female", "Cardiomegaly": "1.0"}).to_csv(csv_path, index=False)
    return csv_path, data, paths


def _small(grey: np.ndarray) -> np.ndarray:
    small = cv2.resize(grey.astype(np.float32), (32, 24), interpolation=cv2.INTER_AREA)[3:-3, 3:-3]
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


class Identifier:
    """Which test x-ray does a photo show? (un-warp with the camera's pose, then correlate)"""

    def __init__(self, data: Path, paths: list[str]):
        from chexphoto.imageio import read_image

        self.templates = np.stack([_small(letterbox(read_image(data / p), *SCREEN)) for p in paths])
        self.camera = VirtualCamera("unused", seed=CAMERA_SEED)

    def identify(self, photo_bytes: bytes, seq: int) -> tuple[int, float, float]:
        photo = decode_image(photo_bytes).astype(np.float32)
        grey = photo.mean(axis=2) if photo.ndim == 3 else photo
        params = self.camera.params_for(seq, SCREEN[1], SCREEN[0])
        unwarped = cv2.warpPerspective(grey, np.linalg.inv(screen_homography(params)), SCREEN)
        scores = np.tensordot(self.templates, _small(unwarped), axes=([1, 2], [0, 1]))
        order = np.argsort(scores)[::-1]
        return int(order[0]), float(scores[order[0]]), float(scores[order[1]])


def check_export(export: Path, data: Path, paths: list[str], rows: range) -> None:
    """Exactly one photo per row, named for that row, showing that row's x-ray."""
    photos = sorted(p for p in export.iterdir() if not p.name.startswith("."))
    by_row: dict[int, list[Path]] = {}
    for photo in photos:
        name = parse_filename(photo.name)
        assert name.csv_path == paths[name.seq], photo.name  # the name's path is the row's path
        by_row.setdefault(name.seq, []).append(photo)
    assert sorted(by_row) == list(rows)
    assert all(len(files) == 1 for files in by_row.values()), {r: f for r, f in by_row.items() if len(f) > 1}
    identifier = Identifier(data, paths)
    for row, (photo,) in by_row.items():
        shown, best, second = identifier.identify(photo.read_bytes(), row)
        assert shown == row, f"photo {photo.name} shows x-ray {shown}, not {row} ({best:.2f} vs {second:.2f})"
        assert best > 0.8 and best - second > 0.3, (row, best, second)


@pytest.fixture
def rig(tmp_path):
    """Starts camera servers and relays and stops them at the end."""
    started = []

    def camera(export, start_seq, frame, **kw):
        server = CameraServer(export, start_seq, VirtualSource(frame, seed=CAMERA_SEED), host="127.0.0.1", **kw)
        started.append(server.start())
        return server

    def relay(target, faults, seed=0):
        r = FaultyRelay(target, up=faults, down=faults, seed=seed)
        started.append(r.start())
        return r

    yield camera, relay
    for thing in reversed(started):
        thing.stop()


def test_every_row_gets_exactly_one_correct_photo_over_a_bad_network(tmp_path, rig):
    start_camera, start_relay = rig
    n = 200
    csv_path, data, paths = make_dataset(tmp_path, n)
    frame, export = tmp_path / "screen.png", tmp_path / "export"
    # one photo in 25 takes 0.25 s to save, longer than the controller's timeout
    server = start_camera(export, 0, frame, save_delay=(0.25, 0.04), seed=5)
    faults = Faults(drop=0.2, duplicate=0.1, reorder=0.1, delay=(0.0, 0.01), reorder_delay=0.04)
    relay = start_relay(server.address, faults, seed=7)
    plan = controller.plan_rows(paths, data, 0, n)
    link = controller.UdpCameraLink(*relay.address)
    settings = controller.CaptureSettings(screen=SCREEN, timeout=0.08, retries=60)
    try:
        report = controller.run_capture(plan, FileDisplay(frame), link, settings)
    finally:
        link.close()
    assert report.finished, report.summary()
    assert report.confirmed == list(range(n)) and report.unconfirmed == []
    assert relay.stats["dropped"] > 50 and relay.stats["duplicated"] > 20 and relay.stats["reordered"] > 20
    assert server.photos_taken == n
    check_export(export, data, paths, range(n))


def test_authenticated_run_with_duplicates_and_loss(tmp_path, rig):
    start_camera, start_relay = rig
    csv_path, data, paths = make_dataset(tmp_path, 30)
    frame, export = tmp_path / "screen.png", tmp_path / "export"
    server = start_camera(export, 0, frame, token="t0k3n")
    relay = start_relay(server.address, Faults(drop=0.2, duplicate=0.3, reorder=0.2, reorder_delay=0.03), seed=2)
    link = controller.UdpCameraLink(*relay.address)
    settings = controller.CaptureSettings(screen=SCREEN, timeout=0.08, retries=60, token="t0k3n")
    report = controller.run_capture(controller.plan_rows(paths, data, 0, 30), FileDisplay(frame), link, settings)
    link.close()
    assert report.finished and report.confirmed == list(range(30)), report.summary()
    check_export(export, data, paths, range(30))

    # wrong token: every reply is unauthenticated, the run stops at its first row with a clear message
    link = controller.UdpCameraLink(*server.address)
    wrong = controller.CaptureSettings(screen=SCREEN, timeout=0.05, retries=3, token="other")
    report = controller.run_capture(controller.plan_rows(paths, data, 0, 30), FileDisplay(frame), link, wrong)
    assert report.resume_rows == "0:30" and "bad mac" in report.stop_reason
    # no token on the controller: refused at once
    no_token = controller.CaptureSettings(screen=SCREEN, timeout=0.05, retries=3)
    report = controller.run_capture(controller.plan_rows(paths, data, 0, 30), FileDisplay(frame), link, no_token)
    link.close()
    assert report.resume_rows == "0:30" and "unauthenticated" in report.stop_reason
    assert server.photos_taken == 30


def test_out_of_sync_start_stops_naming_the_row(tmp_path, rig, capsys):
    start_camera, _ = rig
    csv_path, data, paths = make_dataset(tmp_path, 12)
    frame, export = tmp_path / "screen.png", tmp_path / "export"
    for camera_start, rows, first in ((30, "0:12", 0), (0, "5:12", 5)):  # camera ahead, camera behind
        server = start_camera(export, camera_start, frame)
        host, port = server.address
        code = main(["capture", "--csv", str(csv_path), "--data-root", str(data), "--rows", rows,
                     "--camera", f"udp://{host}:{port}", "--display", f"file:{frame}", "--screen", "320x240",
                     "--timeout", "0.05", "--quiet"])
        out = capsys.readouterr().out
        assert code == 1
        assert f"5 rows in a row ({first}..{first + 4}) ended with MISMATCH" in out
        assert f"resume with: --rows {first}:12 (camera: --start-seq {first}" in out
        assert server.photos_taken == 0 and [p.name for p in export.iterdir()] == []
        server.stop()


def _start_camera_process(export: Path, frame: Path, start_seq: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chexphoto", "camera", "--port", "0", "--host", "127.0.0.1", "--export",
         str(export), "--start-seq", str(start_seq), "--source", f"virtual:{frame}", "--seed", str(CAMERA_SEED)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    match = re.search(r"udp://127\.0\.0\.1:(\d+)", line)
    assert match, line
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    return proc, int(match.group(1))


def test_camera_restarted_mid_run_then_resume_with_printed_rows(tmp_path, capsys):
    n = 40
    csv_path, data, paths = make_dataset(tmp_path, n)
    frame, export = tmp_path / "screen.png", tmp_path / "export"
    proc, port = _start_camera_process(export, frame, 0)

    def crash_camera_after(k: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for p in export.glob("*.jpg")) >= k:
                proc.kill()  # a crash, not a clean stop
                return
            time.sleep(0.005)

    killer = threading.Thread(target=crash_camera_after, args=(15,))
    killer.start()
    common = ["capture", "--csv", str(csv_path), "--data-root", str(data), "--display", f"file:{frame}",
              "--screen", "320x240", "--timeout", "0.1", "--retries", "5", "--quiet"]
    try:
        code = main([*common, "--rows", "0:40", "--camera", f"udp://127.0.0.1:{port}"])
    finally:
        killer.join()
        proc.kill()
        proc.wait()
    out = capsys.readouterr().out
    assert code == 1
    assert "no answer from the camera after 5 attempts" in out
    resume = re.search(r"resume with: --rows (\d+):40 \(camera: --start-seq (\d+)", out)
    assert resume and resume.group(1) == resume.group(2), out
    first = int(resume.group(1))
    assert 14 <= first < n  # 14: its photo was saved but the camera died before answering

    proc, port = _start_camera_process(export, frame, first)
    try:
        code = main([*common, "--rows", f"{first}:40", "--camera", f"udp://127.0.0.1:{port}"])
    finally:
        proc.kill()
        proc.wait()
    out = capsys.readouterr().out
    assert code == 0 and "nothing to resume" in out, out
    assert (export / STATE_FILE).exists()
    check_export(export, data, paths, range(n))


def test_manual_mode_logs_when_each_row_was_on_screen(tmp_path, capsys):
    csv_path, data, paths = make_dataset(tmp_path, 4)
    frame, log = tmp_path / "screen.png", tmp_path / "shown.csv"
    code = main(["capture", "--csv", str(csv_path), "--data-root", str(data), "--rows", "1:4", "--camera", "manual",
                 "--display", f"file:{frame}", "--screen", "320x240", "--delay", "40", "--log", str(log), "--quiet"])
    assert code == 0
    assert "rows 1:4: 3 shown" in capsys.readouterr().out
    with open(log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["row"] for r in rows] == ["1", "2", "3"] and [r["path"] for r in rows] == paths[1:4]
    times = [(datetime.fromisoformat(r["shown_at"]), datetime.fromisoformat(r["hidden_at"])) for r in rows]
    for (shown, hidden), row in zip(times, rows, strict=True):
        assert shown.tzinfo is not None and re.search(r"\.\d{6}[+-]\d\d:\d\d$", row["shown_at"])
        assert (hidden - shown).total_seconds() >= 0.035
    for (_, hidden), (shown_next, _) in pairwise(times):
        assert hidden <= shown_next
    # the last frame on the "screen" is the last row's x-ray
    assert np.array_equal(decode_image(frame.read_bytes()), letterbox(decode_image((data / paths[3]).read_bytes()),
                                                                      *SCREEN))


def test_bad_rows_are_reported_before_anything_is_shown(tmp_path, capsys):
    csv_path, data, paths = make_dataset(tmp_path, 5)
    (data / paths[2]).unlink()
    frame = tmp_path / "screen.png"
    code = main(["capture", "--csv", str(csv_path), "--data-root", str(data), "--rows", "0:5",
                 "--camera", "udp://127.0.0.1:9", "--display", f"file:{frame}"])
    assert code == 2
    assert "row 2" in capsys.readouterr().err
    assert not frame.exists()
