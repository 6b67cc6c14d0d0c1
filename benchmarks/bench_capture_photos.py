"""Cost of the virtual camera and of `chexphoto compile`, each against a floor measured in the same run.

* virtual camera: ``VirtualCamera.capture`` (read the frame file, render, JPEG) for a full-HD
  frame (1600 x 1200 photo) and for the reliability tests' 320 x 240 frame (400 x 300 photo);
  floor = reading the same frame file and JPEG-encoding an image of the photo's size, the least
  any camera must do. Timed as CPU time of this process (other jobs on the machine barely move it)
  and wall time.
* compile: photos per second for an export folder of N photos (by name, all checks, copies);
  floor = reading and atomically writing the same bytes (a plain copy).

    python benchmarks/bench_capture_photos.py [--repeats 9] [--photos 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.data import get_testdata_file

from chexphoto.capture.compile import compile_export
from chexphoto.capture.displays import letterbox
from chexphoto.capture.naming import make_filename
from chexphoto.capture.virtual_camera import VirtualCamera
from chexphoto.fsutil import atomic_write_bytes
from chexphoto.imageio import encode_image, read_image, write_image


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (cpu ms, wall ms)."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def bench_camera(tmp: Path, repeats: int) -> None:
    xray = read_image(get_testdata_file("RG1_UNCR.dcm"))  # also sets cv2.setNumThreads(1)
    print(f"{'virtual camera':28s} {'photo':>10s} {'cpu ms':>8s} {'wall ms':>8s} {'floor cpu':>10s} {'x floor':>8s}")
    for h, w in ((1080, 1920), (240, 320)):
        frame_path = tmp / f"frame{w}.png"
        write_image(frame_path, letterbox(xray, w, h))
        camera = VirtualCamera(frame_path, seed=0)
        seq = iter(range(10**6))
        cpu, wall = timed(lambda: camera.capture(next(seq)), repeats)  # noqa: B023
        photo = camera.render(read_image(frame_path), 0)
        floor_cpu, _ = timed(lambda: encode_image(photo, "jpg", quality=90) and read_image(frame_path),  # noqa: B023
                             repeats)
        size = f"{photo.shape[1]}x{photo.shape[0]}"
        print(f"{f'frame {w}x{h}':28s} {size:>10s} {cpu:8.1f} {wall:8.1f} {floor_cpu:10.1f} {cpu / floor_cpu:8.1f}")


def bench_compile(tmp: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    photo = encode_image(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8) // 4 + 96, "jpg", quality=90)
    paths = [f"CheXpert-v1.0-small/valid/patient{64541 + i}/study1/view1_frontal.jpg" for i in range(n)]
    pd.DataFrame({"Path": paths, "Cardiomegaly": "1.0"}).to_csv(tmp / "rows.csv", index=False)
    export = tmp / "export"
    export.mkdir()
    for i, p in enumerate(paths):
        (export / make_filename(i, 7, p)).write_bytes(photo)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = compile_export(tmp / "rows.csv", f"0:{n}", export, tmp / "Out", "bench")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert result.exit_code == 0 and len(result.compiled_rows) == n
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, f in enumerate(sorted(export.iterdir())):
        atomic_write_bytes(tmp / "copy" / f"{i}.jpg", f.read_bytes())
    floor_cpu = time.process_time() - cpu_start
    print(f"\n{'compile (by name)':28s} {'photos':>10s} {'cpu /s':>8s} {'wall /s':>8s} {'floor cpu/s':>11s} "
          f"{'x floor':>8s}")
    print(f"{'1600x1200 JPEGs':28s} {n:10d} {n / cpu:8.1f} {n / elapsed:8.1f} {n / floor_cpu:11.1f} "
          f"{cpu / floor_cpu:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_camera(Path(tmp), args.repeats)
        bench_compile(Path(tmp), args.photos)


if __name__ == "__main__":
    main()
