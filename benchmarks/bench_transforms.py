"""Cost of every synthetic transform against the JPEG decode+encode floor, at one thread.

Runs on the real chest radiograph shipped by pydicom-data (RG1_UNCR.dcm, 1841 x 1955) and on
the same image at a 320 px short side. For each transform and level it prints the median time of
``apply`` (params sampled once, outside the timing), and its ratio to the floor: decoding the
same image's JPEG (quality 95) and re-encoding it, measured in the same run. Then the paper's two
presets as chains, and the peak memory a transform adds (each in a fresh process, ``ru_maxrss``).

    python benchmarks/bench_transforms.py [--repeats 7] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.data import get_testdata_file

from chexphoto import transforms
from chexphoto.imageio import read_image

SMALL_SHORT_SIDE = 320


def load_images() -> dict[str, np.ndarray]:
    full = read_image(get_testdata_file("RG1_UNCR.dcm"))  # also sets cv2.setNumThreads(1)
    height, width = full.shape
    scale = SMALL_SHORT_SIDE / min(height, width)
    small = cv2.resize(full, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return {"full": full, "small": small}


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def jpeg_roundtrip(image: np.ndarray):
    """The floor: decode this image's JPEG (quality 95) and encode it again."""
    encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]

    def roundtrip() -> None:
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        cv2.imencode(".jpg", decoded, [cv2.IMWRITE_JPEG_QUALITY, 95])

    return roundtrip


@dataclass(frozen=True)
class Timing:
    """One cell: the work and the floor, timed alternately (ms)."""

    median: float
    floor_median: float
    best: float
    floor_best: float

    @property
    def ratio(self) -> float:
        return self.median / self.floor_median

    @property
    def best_ratio(self) -> float:
        return self.best / self.floor_best


def paired_ms(fn, floor_fn, repeats: int) -> Timing:
    """Time ``fn`` and the floor alternately, so both see the same machine load."""
    fn()  # warm-up (allocations, lazy imports)
    floor_fn()
    times, floors = [], []
    for _ in range(repeats):
        floors.append(_once(floor_fn))
        times.append(_once(fn))
    return Timing(
        statistics.median(times) * 1e3, statistics.median(floors) * 1e3, min(times) * 1e3, min(floors) * 1e3
    )


def transform_runner(name: str, level: int, image: np.ndarray):
    transform = transforms.get(name)
    params = transform.sample(np.random.default_rng(level), level, *image.shape[:2])
    return lambda: transform.apply(image, params)


def chain_runner(preset: str, image: np.ndarray):
    chain = transforms.preset(preset)
    recorded = chain.sample(np.random.default_rng(0), *image.shape[:2])
    return lambda: chain.apply(image, recorded)


_MEMORY_PROBE = """
import json, resource, sys
import numpy as np
from chexphoto import transforms
kind, what, level = sys.argv[1], sys.argv[2], int(sys.argv[3])
import cv2
cv2.setNumThreads(1)
image = np.load(sys.argv[4])  # not read_image: its DICOM decode would set a high-water mark
if kind == "chain":
    chain = transforms.preset(what)
    recorded = chain.sample(np.random.default_rng(0), *image.shape)
    run = lambda: chain.apply(image, recorded)
else:
    transform = transforms.get(what)
    params = transform.sample(np.random.default_rng(level), level, *image.shape)
    run = lambda: transform.apply(image, params)
def high_water_kib():
    # Linux: VmHWM is exact (ru_maxrss is only updated lazily); reset it to the current RSS first
    try:
        with open("/proc/self/status") as fh:
            return int(next(line.split()[1] for line in fh if line.startswith("VmHWM")))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
idle = high_water_kib()
out = run()
peak = high_water_kib()
print(json.dumps({"extra_mb": (peak - idle) / 1024, "output_mb": out.nbytes / 2**20}))
"""


def peak_extra_mb(kind: str, what: str, level: int, image_path: str) -> float:
    """Peak resident memory added by one full-size apply, in a fresh process (KiB -> MiB)."""
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, kind, what, str(level), image_path],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["extra_mb"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per cell (median)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-transform memory probe")
    args = parser.parse_args(argv)
    repeats = max(1, args.repeats)
    images = load_images()
    full, small = images["full"], images["small"]
    print(
        f"image: RG1_UNCR.dcm, full {full.shape[1]}x{full.shape[0]}, small {small.shape[1]}x{small.shape[0]}"
    )
    print(f"threads: cv2 {cv2.getNumThreads()}; median of {repeats} runs per cell")

    floors = {size: jpeg_roundtrip(image) for size, image in images.items()}
    rows = []  # (name, {size: [Timing per level]})
    for name in transforms.names():
        rows.append(
            (
                name,
                {
                    size: [
                        paired_ms(transform_runner(name, level, image), floors[size], repeats)
                        for level in transforms.LEVELS
                    ]
                    for size, image in images.items()
                },
            )
        )
    chains = [
        (
            preset,
            {
                size: paired_ms(chain_runner(preset, image), floors[size], repeats)
                for size, image in images.items()
            },
        )
        for preset in transforms.PRESETS
    ]
    floor = {
        size: statistics.median(t.floor_median for _, cells in rows for t in cells[size]) for size in images
    }
    print(
        f"JPEG decode+encode floor (q95), median over the run: full {floor['full']:.1f} ms, "
        f"320px {floor['small']:.2f} ms"
    )
    print("ratios are to the floor timed alternately with each cell (robust to a busy machine)\n")

    levels = transforms.LEVELS
    header = (
        f"| {'transform':<15} | "
        + " | ".join(f"L{lv} full ms (×floor)" for lv in levels)
        + " | "
        + " | ".join(f"L{lv} 320px ms" for lv in levels)
        + " |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.strip("|").split("|")) + "|")
    for name, cells in rows:
        full_cells = [f"{t.median:7.1f} ({t.ratio:4.2f})" for t in cells["full"]]
        small_cells = [f"{t.median:6.2f}" for t in cells["small"]]
        print(
            f"| {name:<15} | "
            + " | ".join(f"{c:>19}" for c in full_cells)
            + " | "
            + " | ".join(f"{c:>11}" for c in small_cells)
            + " |"
        )
    print()
    print("| preset chain  | full ms | ×floor | best-of-N ×floor | 320px ms | ×floor |")
    print("|---------------|---------|--------|------------------|----------|--------|")
    for preset, cell in chains:
        big, small_cell = cell["full"], cell["small"]
        print(
            f"| {preset:<13} | {big.median:7.1f} | {big.ratio:6.2f} | {big.best_ratio:16.2f} | "
            f"{small_cell.median:8.2f} | {small_cell.ratio:6.2f} |"
        )
    worst = max((max(t.ratio for t in cells["full"]), name) for name, cells in rows)
    worst_best = max((max(t.best_ratio for t in cells["full"]), name) for name, cells in rows)
    print(
        f"\nslowest single transform at full size: {worst[1]} at {worst[0]:.2f}× the floor (median), "
        f"{worst_best[1]} at {worst_best[0]:.2f}× (best of {repeats})"
    )

    if not args.no_memory:
        print("\npeak extra memory of one full-size apply (fresh process, MiB above idle; output included):")
        probes = [("transform", name, 4) for name in transforms.names()]
        probes += [("chain", preset, 1) for preset in transforms.PRESETS]
        with tempfile.TemporaryDirectory() as tmp:
            image_path = os.path.join(tmp, "rg1.npy")
            np.save(image_path, full)
            for kind, what, level in probes:
                label = f"{what} (L{level})" if kind == "transform" else f"{what} preset"
                print(f"  {label:<24} {peak_extra_mb(kind, what, level, image_path):6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
