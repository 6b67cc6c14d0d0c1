"""Benchmark: is ``predict`` / ``benchmark`` limited by the model, not by loading?

Writes CheXpert-small-like JPEGs (320 wide x 390 high, grey, quality 95) at CheXpert paths with a
label CSV, saves a fresh DenseNet-121 (random weights: speed does not depend on them) as a
``train`` checkpoint, and measures in the same run:

* **floor**: the bare forward pass of the same model (``inference_mode``, channels-last) on
  batches already in memory, 3 x 320 x 320;
* **predict**: the real pipeline (:func:`chexphoto.learning.predict.predict_dataset`: DataLoader
  worker(s) decoding + resizing + normalising, the model, sigmoid) from the JPEG files;
* **benchmark**: the same with an on-the-fly transform per image (``FixedTransform``, as
  ``chexphoto benchmark`` does) for a few costly transforms at level 4.

It prints images/s and the ratio to the floor (targets: predict >= 0.8, benchmark >= 0.7): the
wall-clock ratio (each pipeline run paired with a floor run just before it) and a bound from the
best-of-N costs per image (loader work vs forward pass), which other jobs on the machine barely move.
Run: ``python benchmarks/bench_predict.py [--images 48] [--batch-size 16] [--workers 1]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np
import pandas as pd
import torch

from chexphoto.csvschema import COMPETITION_TASKS, OBSERVATIONS
from chexphoto.imageio import write_image
from chexphoto.learning.augment import FixedTransform
from chexphoto.learning.data import CheXpertDataset
from chexphoto.learning.models import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_model,
    load_model,
    save_checkpoint,
)
from chexphoto.learning.predict import predict_dataset, run_model

BENCH_TRANSFORMS = ("moire", "glare_matte", "tilt", "random_digital", "motion")


def make_images(root: str, n: int) -> str:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:390, :320]
    base = 90 + 60 * np.exp(-(((xx - 160) / 90.0) ** 2 + ((yy - 210) / 120.0) ** 2))
    rows = []
    for i in range(n):
        img = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
        rel = f"CheXpert-v1.0-small/valid/patient{i:05d}/study1/view1_frontal.jpg"
        write_image(os.path.join(root, rel), img)
        row = {"Path": rel, **{obs: "" for obs in OBSERVATIONS}}
        row.update({t: str(float(rng.integers(0, 2))) for t in COMPETITION_TASKS})
        rows.append(row)
    csv = os.path.join(root, "valid.csv")
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_load_ms(dataset, repeats: int = 3) -> float:
    """Best-of-``repeats`` mean time to prepare one image in this process (decode, reduce,
    transform, resize, normalise): the loader's work per image, without contention."""
    dataset.load(0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset.load(index)
        best = min(best, (time.perf_counter() - start) / len(dataset))
    return best * 1000


def forward_floor(model, n: int, batch_size: int, size: int) -> tuple[float, float]:
    """(images/s, CPU s/image) of the bare model on in-memory batches (same batch size, layout)."""
    batch = torch.randn(batch_size, 3, size, size)
    with torch.inference_mode():
        run_model(model, batch[:2])  # warm-up
        done, start, cpu = 0, time.perf_counter(), cpu_seconds()
        while done < n:
            take = min(batch_size, n - done)
            run_model(model, batch[:take])
            done += take
    return n / (time.perf_counter() - start), (cpu_seconds() - cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=2, help="paired floor/pipeline runs per row")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        csv = make_images(tmp, args.images)
        ckpt = os.path.join(tmp, "model.pt")
        torch.manual_seed(0)
        model = build_model("densenet121", len(COMPETITION_TASKS))
        save_checkpoint(ckpt, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "arch": "densenet121",
            "tasks": list(COMPETITION_TASKS), "image_size": args.image_size,
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}, "epoch": 0,
            "model_state": model.state_dict(),
        })
        loaded = load_model(ckpt)
        loaded.model = loaded.model.to(memory_format=torch.channels_last)
        dataset = CheXpertDataset(csv, tmp, tasks=loaded.tasks, image_size=loaded.image_size,
                                  check_files=False, labels_required=False)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
              f"{args.images} JPEGs 320x390 -> densenet121 at {args.image_size}, batch {args.batch_size}, "
              f"{args.workers} loader worker(s)")
        # Other work on the machine shifts absolute speeds, so each pipeline run is paired with a
        # floor run right before it and the ratio is taken per pair (median over --rounds).
        conditions = [("predict (JPEG -> model)", None, 0.8)]
        conditions += [(f"benchmark: {n} L4 on the fly", FixedTransform(n, 4, seed=0), 0.7)
                       for n in BENCH_TRANSFORMS]
        forward_ms = min(1000 / forward_floor(loaded.model, args.images, args.batch_size, args.image_size)[0]
                         for _ in range(2))
        print(f"\n{'what':<38} {'load ms':>7} {'bound':>5} {'floor/s':>8} {'pipe/s':>7} {'wall':>5} "
              f"{'target':>6}")
        print(f"{'model forward (best of 2), per image':<38} {forward_ms:7.1f}")
        for what, transform, target in conditions:
            dataset.transform = transform
            load_ms = best_load_ms(dataset)
            bound = forward_ms / (forward_ms + load_ms)
            floors, rates, ratios = [], [], []
            for _ in range(args.rounds):
                floor, _cpu = forward_floor(loaded.model, args.images, args.batch_size, args.image_size)
                run = predict_dataset(loaded, dataset, batch_size=args.batch_size, workers=args.workers,
                                      progress=False)
                rate = run.images / run.seconds
                floors.append(floor)
                rates.append(rate)
                ratios.append(rate / floor)
            ratio = float(np.median(ratios))
            verdict = "ok" if min(ratio, bound) >= target else ("ok(bound)" if bound >= target else "BELOW")
            print(f"{what:<38} {load_ms:7.1f} {bound:5.2f} {np.median(floors):8.2f} {np.median(rates):7.2f} "
                  f"{ratio:5.2f} {'>=' + str(target):>6} {verdict}", flush=True)
        print("\nload ms: the loader's work per image (best of 3, one thread); bound = forward / (forward + load),"
              "\nthe throughput ratio if loading took its CPU time away from the model (a worst case: the"
              "\nworker overlaps with the forward pass); wall = measured pipeline images/s / floor images/s,"
              "\npaired runs, median (sensitive to other jobs on the machine).")

if __name__ == "__main__":
    main()
