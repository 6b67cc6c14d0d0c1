"""Sub-commands for the learning area: train, predict, benchmark (need the torch extra)."""

from __future__ import annotations

import os
import sys

from chexphoto.cli.common import CommandError


def _require_torch() -> None:
    try:
        import torch  # noqa: F401  (torchvision is imported only by the densenet121 arch)
    except ImportError:
        raise CommandError("this command needs PyTorch: pip install 'chexphoto[torch]'", 2) from None


def register(sub) -> None:
    """Add this area's sub-commands to the chexphoto parser."""
    p = sub.add_parser(
        "train",
        help="train a CheXpert-style classifier (DenseNet-121 baseline)",
        description=(
            "Train DenseNet-121 (torchvision, weights from scratch or --init, never downloaded) with "
            "Adam and masked BCE on S x S grey images replicated to 3 channels, ImageNet-normalised. "
            "Logs loss and validation AUROC per epoch to stdout and RUN_DIR/log.jsonl; writes "
            "RUN_DIR/last.pt and best.pt atomically; --resume continues from last.pt exactly."
        ),
    )
    p.add_argument("--csv", required=True, metavar="TRAIN", help="training CSV (CheXpert format)")
    p.add_argument("--data-root", required=True, metavar="DIR", help="folder the CSVs' paths are relative to")
    p.add_argument("--valid", metavar="VALID", help="validation CSV (AUROC per epoch; picks best.pt)")
    p.add_argument("--arch", default="densenet121", choices=("densenet121", "tiny"),
                   help="densenet121 (default) or tiny (a small CNN for tests and quick runs)")
    p.add_argument("--tasks", default="competition",
                   help="competition (5 tasks, default), all (14 observations) or comma-separated names")
    p.add_argument("--uncertainty", default="u-ones", choices=("u-ones", "u-zeros", "u-ignore"),
                   help="how uncertain labels are trained: as 1, as 0, or left out (default u-ones)")
    p.add_argument("--augment", default="none",
                   help="on-the-fly CheXphoto transforms: none (default), photographic, digital, "
                        "default (both), all, or comma-separated transform names")
    p.add_argument("--augment-levels", default="1-2", metavar="L", help="levels drawn for --augment (1-2)")
    p.add_argument("--augment-p", type=float, default=0.5, help="probability an image is augmented (0.5)")
    p.add_argument("--epochs", type=int, default=3, metavar="E", help="epochs to train in total (3)")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="batch size (16)")
    p.add_argument("--image-size", type=int, default=320, metavar="S", help="input size S x S (320)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (1e-4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (1; 0 = in process)")
    p.add_argument("--frontal-only", action="store_true", help="train on frontal views only")
    p.add_argument("--init", metavar="CKPT", help="initial weights: a local checkpoint or state-dict file")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, log)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from last.pt")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "predict",
        help="probabilities per task per image (and per study) from a trained model",
        description=(
            "Write PRED.csv with a Path column and one probability column per task. --study also writes "
            "PRED.study.csv (Study = the path up to studyN; the maximum over the study's views). "
            "Unreadable images are reported, left out and listed in PRED.errors.csv; the exit status is "
            "1 if there were any, unless --allow-errors. MODEL is a checkpoint from 'chexphoto train' or "
            "a TorchScript file (tasks/size from its chexphoto.json extra file, else --tasks/--image-size, "
            "else the competition tasks at 320 px)."
        ),
    )
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint (.pt) or TorchScript file")
    p.add_argument("--csv", required=True, help="CSV whose Path column lists the images")
    p.add_argument("--data-root", required=True, metavar="DIR", help="folder the CSV's paths are relative to")
    p.add_argument("--out", required=True, metavar="PRED.csv", help="predictions CSV to write")
    p.add_argument("--study", action="store_true", help="also write study-level predictions (PRED.study.csv)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (16)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (1; 0 = in process)")
    p.add_argument("--tasks", help="TorchScript only: the model's output tasks (default competition)")
    p.add_argument("--image-size", type=int, help="TorchScript only: input size (default 320)")
    p.add_argument("--frontal-only", action="store_true", help="predict frontal views only")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if some images were unreadable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "benchmark",
        help="robustness table: AUROC under each transformation x level, applied on the fly",
        description=(
            "Apply each transformation at each level to the CSV's images in memory (no image files), "
            "predict, evaluate against the CSV's labels and write OUT/robustness.csv and .json (AUROC per "
            "transformation x level, drop from clean, mean over transformations), plus "
            "OUT/predictions/<condition>.csv. A rerun with the same settings reuses finished conditions."
        ),
    )
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint (.pt) or TorchScript file")
    p.add_argument("--csv", required=True, metavar="VALID", help="labelled CSV (CheXpert format)")
    p.add_argument("--data-root", required=True, metavar="DIR", help="folder the CSV's paths are relative to")
    p.add_argument("--transforms", default="all",
                   help="all (default), photographic, digital, default, or comma-separated names")
    p.add_argument("--levels", default="1-4", help="severity levels, e.g. 1-4 (default) or 1,3")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--level", dest="score_level", choices=("image", "study"), default="image",
                   help="score images (default) or studies (max over views)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the CIs (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for the transforms and the bootstrap (0)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (16)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (1; 0 = in process)")
    p.add_argument("--tasks", help="TorchScript only: the model's output tasks (default competition)")
    p.add_argument("--image-size", type=int, help="TorchScript only: input size (default 320)")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if some images were unreadable")
    p.add_argument("--overwrite", action="store_true", help="replace a benchmark made with other settings")
    p.set_defaults(func=_benchmark)


def _train(args) -> int:
    _require_torch()
    from chexphoto.learning.benchmark import parse_levels
    from chexphoto.learning.train import TrainConfig, train

    config = TrainConfig(
        csv=args.csv, data_root=args.data_root, out=args.out, valid=args.valid, arch=args.arch,
        tasks=args.tasks, uncertainty=args.uncertainty, augment=args.augment,
        augment_levels=tuple(parse_levels(args.augment_levels)), augment_p=args.augment_p, epochs=args.epochs,
        batch_size=args.batch_size, image_size=args.image_size, lr=args.lr, seed=args.seed,
        workers=args.workers, frontal_only=args.frontal_only, init=args.init, resume=args.resume,
    )
    train(config, log=lambda line: print(line, flush=True))
    return 0


def _model_tasks(args):
    if not args.tasks:
        return None
    from chexphoto.learning.data import resolve_tasks

    return resolve_tasks(args.tasks)


def _predict(args) -> int:
    _require_torch()
    from chexphoto.learning.data import CheXpertDataset
    from chexphoto.learning.models import load_model
    from chexphoto.learning.predict import (
        check_study_paths,
        errors_path_for,
        predict_dataset,
        study_level,
        study_path_for,
        write_csv,
        write_errors,
    )

    loaded = load_model(args.model, tasks=_model_tasks(args), image_size=args.image_size)
    dataset = CheXpertDataset(args.csv, args.data_root, tasks=loaded.tasks, image_size=loaded.image_size,
                              mean=loaded.mean, std=loaded.std, frontal_only=args.frontal_only,
                              check_files=False, labels_required=False)
    if args.study:
        check_study_paths(dataset)

    def report(error: dict) -> None:
        print(f"chexphoto predict: row {error['row']}: {error['reason']} (skipped)", file=sys.stderr)

    run = predict_dataset(loaded, dataset, batch_size=args.batch_size, workers=args.workers,
                          progress=False if args.quiet else None, on_error=report)
    write_csv(args.out, run.predictions)
    written = [args.out]
    if args.study:
        write_csv(study_path_for(args.out), study_level(run.predictions))
        written.append(study_path_for(args.out))
    errors_path = errors_path_for(args.out)
    if run.errors:
        write_errors(errors_path, run.errors)
        written.append(errors_path)
    elif os.path.exists(errors_path):
        os.remove(errors_path)  # a stale list from an earlier run would mislead
    rate = run.images / run.seconds if run.seconds > 0 else 0.0
    print(f"predicted {run.images} image(s) in {run.seconds:.1f} s ({rate:.1f} images/s), "
          f"{len(run.errors)} unreadable; wrote {', '.join(written)}")
    return 1 if run.errors and not args.allow_errors else 0


def _benchmark(args) -> int:
    _require_torch()
    from chexphoto.learning.benchmark import benchmark

    result = benchmark(
        model=args.model, csv=args.csv, data_root=args.data_root, out=args.out, transforms=args.transforms,
        levels=args.levels, bootstrap=args.bootstrap, seed=args.seed, batch_size=args.batch_size,
        workers=args.workers, level=args.score_level, tasks=_model_tasks(args), image_size=args.image_size,
        allow_errors=args.allow_errors, overwrite=args.overwrite, log=lambda line: print(line, flush=True),
    )
    print(f"wrote {args.out}/robustness.csv and robustness.json")
    return 1 if result.errors and not args.allow_errors else 0
