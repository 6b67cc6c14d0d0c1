"""End to end: capture (automated over UDP, and manual with a 'phone' that stamps EXIF times), then
compile, then check that every compiled photo shows the x-ray its label row names."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from chexphoto.capture.camera_server import CameraServer, VirtualSource
from chexphoto.capture.virtual_camera import VirtualCamera, screen_homography
from chexphoto.cli import main
from chexphoto.csvschema import read_csv
from chexphoto.imageio import decode_image, read_image, write_image
from chexphoto.seeding import derive_rng

SCREEN_W, SCREEN_H = 320, 240
SEED = 5


def make_dataset(root: Path, n: int) -> tuple[Path, Path, list[np.ndarray]]:
    """``n`` tiny, clearly different 'x-rays' (block patterns) and their CSV with labels."""
    data = root / "data"
    paths, images = [], []
    for row in range(n):
        bits = derive_rng("compile-e2e", row).integers(0, 2, size=(5, 6)).astype(np.uint8)
        img = cv2.resize(bits * 215 + 20, (96, 80), interpolation=cv2.INTER_NEAREST)
        path = f"CheXpert-v1.0-small/valid/patient{row:05d}/study1/view1_frontal.jpg"
        write_image(data / path, img)
        paths.append(path)
        images.append(read_image(data / path))
    csv_path = root / "rows.csv"
    pd.DataFrame({"Path": paths, "Sex": "Female", "Age": [str(30 + i) for i in range(n)],
                  "Cardiomegaly": ["1.0", "", "0.0", "-1.0"] * (n // 4) + ["1.0"] * (n % 4)}).to_csv(csv_path, index=False)
    return csv_path, data, images


def _signature(grey: np.ndarray) -> np.ndarray:
    small = cv2.resize(grey.astype(np.float32), (32, 24), interpolation=cv2.INTER_AREA)[3:-3, 3:-3]
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


def _shown_xray(photo: np.ndarray, seq: int) -> np.ndarray:
    params = VirtualCamera("unused", seed=SEED).params_for(seq, SCREEN_H, SCREEN_W)
    grey = photo.astype(np.float32).mean(axis=2)
    return cv2.warpPerspective(grey, np.linalg.inv(screen_homography(params)), (SCREEN_W, SCREEN_H))


def _letterboxed(img: np.ndarray) -> np.ndarray:
    scale = min(SCREEN_W / img.shape[1], SCREEN_H / img.shape[0])
    fitted = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.zeros((SCREEN_H, SCREEN_W), np.uint8)
    y, x = (SCREEN_H - fitted.shape[0]) // 2, (SCREEN_W - fitted.shape[1]) // 2
    frame[y:y + fitted.shape[0], x:x + fitted.shape[1]] = fitted
    return frame


def assert_compiled_photos_show_their_rows(root: Path, out_csv: Path, images: list[np.ndarray], seq_of) -> None:
    table = read_csv(out_csv)
    source = read_csv(root / "rows.csv")
    templates = np.stack([_signature(_letterboxed(img)).ravel() for img in images])
    for _, record in table.iterrows():
        row = int(record["Path"].split("/patient")[1].split("/")[0])
        assert record["Cardiomegaly"] == source["Cardiomegaly"][row] and record["Age"] == source["Age"][row]
        photo_path = root / record["Path"]
        photo = decode_image(photo_path.read_bytes())
        scores = templates @ _signature(_shown_xray(photo, seq_of(row, photo_path))).ravel()
        assert int(np.argmax(scores)) == row, (row, scores)


def test_automated_capture_then_compile(tmp_path):
    csv_path, data, images = make_dataset(tmp_path, 8)
    export, frame = tmp_path / "export", tmp_path / "screen.png"
    server = CameraServer(export, 0, VirtualSource(frame, seed=SEED), host="127.0.0.1").start()
    try:
        host, port = server.address
        assert main(["capture", "--csv", str(csv_path), "--data-root", str(data), "--rows", "0:8",
                     "--camera", f"udp://{host}:{port}", "--display", f"file:{frame}",
                     "--screen", f"{SCREEN_W}x{SCREEN_H}", "--timeout", "0.5", "--quiet"]) == 0
    finally:
        server.stop()
    assert main(["compile", "--csv", str(csv_path), "--rows", "0:8", "--export", str(export),
                 "--out", str(tmp_path / "Lab"), "--name", "virtual", "--quiet"]) == 0
    out_csv = tmp_path / "Lab" / "valid" / "natural" / "virtual.csv"
    assert len(read_csv(out_csv)) == 8
    # seq = row index in automated capture
    assert_compiled_photos_show_their_rows(tmp_path, out_csv, images, lambda row, path: row)


def _exif_stamped(jpeg: bytes, when: datetime) -> bytes:
    """Re-save with EXIF DateTimeOriginal/SubSecTimeOriginal, as a phone would write them."""
    exif = Image.Exif()
    sub_ifd = exif.get_ifd(0x8769)
    sub_ifd[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
    sub_ifd[0x9291] = f"{when.microsecond // 1000:03d}"
    buf = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as im:
        im.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def test_manual_capture_with_a_phone_then_compile_by_time(tmp_path):
    """A 'person with a phone' photographs each new frame ~0.3 s after it appears; the photos get
    arbitrary names and naive EXIF times; compile assigns them by the controller's log."""
    csv_path, data, images = make_dataset(tmp_path, 5)
    frame, log, dcim = tmp_path / "screen.png", tmp_path / "shown.csv", tmp_path / "DCIM"
    dcim.mkdir()
    stop = threading.Event()
    shots: dict[str, int] = {}

    def phone() -> None:
        camera, last, count = VirtualCamera(frame, seed=SEED), None, 0
        while not stop.is_set():
            try:
                stamp = frame.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp is not None and stamp != last:
                last = stamp
                time.sleep(0.3)  # the person reacts
                if stop.is_set():
                    break
                taken = datetime.now()  # phone clock = computer clock, local time, no zone
                jpeg = camera.capture(count)
                if frame.stat().st_mtime_ns != last:  # the screen changed during the "exposure"
                    continue  # (a real exposure is instantaneous): no photo, rather than a wrong one
                name = f"IMG_{7000 + count}.JPG"
                (dcim / name).write_bytes(_exif_stamped(jpeg, taken))
                shots[name] = count
                count += 1
            time.sleep(0.01)

    person = threading.Thread(target=phone, daemon=True)
    person.start()
    try:
        assert main(["capture", "--csv", str(csv_path), "--data-root", str(data), "--rows", "0:5",
                     "--camera", "manual", "--display", f"file:{frame}", "--screen", f"{SCREEN_W}x{SCREEN_H}",
                     "--delay", "900", "--log", str(log), "--quiet"]) == 0
    finally:
        stop.set()
        person.join(5)
    assert main(["compile", "--csv", str(csv_path), "--rows", "0:5", "--export", str(dcim),
                 "--out", str(tmp_path / "Lab"), "--name", "phone", "--match-by-time", str(log), "--quiet"]) == 0
    out_csv = tmp_path / "Lab" / "valid" / "natural" / "phone.csv"
    assert len(read_csv(out_csv)) == 5
    by_content = {(dcim / name).read_bytes(): seq for name, seq in shots.items()}
    assert_compiled_photos_show_their_rows(tmp_path, out_csv, images,
                                           lambda row, path: by_content[path.read_bytes()])
