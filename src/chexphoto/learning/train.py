"""The CheXpert-style baseline training loop.

DenseNet-121 (or the tiny CNN), Adam (lr 1e-4, betas 0.9/0.999), binary cross-entropy on logits
with the dataset's mask (masked-out labels add nothing; the loss is averaged over the unmasked
ones), images ``S x S`` grey replicated to 3 channels and ImageNet-normalised.

Reproducibility and resume: the weights are initialised from ``torch.manual_seed(seed)``; each
epoch's shuffle order, augmentation draws and torch RNG are derived from ``(seed, epoch)`` alone,
so a run resumed from ``last.pt`` (written atomically after every epoch together with the
optimizer state and RNG states) ends with exactly the weights of an uninterrupted run.
After each epoch the validation AUROC per task (uncertain labels left out, blank = negative) is
computed with :func:`chexphoto.evaluation.metrics.evaluate` and logged to stdout and
``RUN_DIR/log.jsonl``; ``best.pt`` keeps the epoch with the highest mean validation AUROC.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from chexphoto.fsutil import atomic_write_text
from chexphoto.imageio import ImageReadError
from chexphoto.learning.augment import RandomPhotographic, transform_set
from chexphoto.learning.data import UNCERTAINTY_POLICIES, CheXpertDataset, resolve_tasks
from chexphoto.learning.models import (
    ARCHS,
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    build_model,
    init_from_file,
    read_checkpoint,
    save_checkpoint,
)
from chexphoto.learning.predict import make_loader, predict_dataset
from chexphoto.progress import make_progress
from chexphoto.seeding import key_entropy

#: Settings that must match when a run is resumed (epochs may grow).
RESUME_KEYS = ("arch", "tasks", "uncertainty", "augment", "image_size", "batch_size", "lr", "seed",
               "frontal_only", "augment_levels", "augment_p")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint)."""

    csv: str
    data_root: str
    out: str
    valid: str | None = None
    arch: str = "densenet121"
    tasks: list | str = "competition"
    uncertainty: str = "u-ones"
    augment: str = "none"
    augment_levels: tuple = (1, 2)
    augment_p: float = 0.5
    epochs: int = 3
    batch_size: int = 16
    image_size: int = 320
    lr: float = 1e-4
    seed: int = 0
    workers: int = 1
    frontal_only: bool = False
    init: str | None = None
    resume: bool = False

    def checked(self) -> TrainConfig:
        self.tasks = resolve_tasks(self.tasks)
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.uncertainty not in UNCERTAINTY_POLICIES:
            raise ValueError(f"unknown uncertainty policy {self.uncertainty!r}; choose one of "
                             f"{', '.join(UNCERTAINTY_POLICIES)}")
        transform_set(self.augment)  # unknown names fail here
        for name, value, low in (("epochs", self.epochs, 1), ("batch size", self.batch_size, 1),
                                 ("image size", self.image_size, 8), ("workers", self.workers, 0)):
            if int(value) < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        self.augment_levels = tuple(int(v) for v in self.augment_levels)
        return self


def _int_seed(*parts: object) -> int:
    """A 63-bit torch seed from a key (same idea as :func:`chexphoto.seeding.derive_rng`)."""
    words = key_entropy(*parts)
    return (words[0] | (words[1] << 32)) & ((1 << 63) - 1)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the labels whose mask is 1 (0 when none is)."""
    losses = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)


def validation_scores(loaded: LoadedModel, valid: CheXpertDataset, workers: int,
                      batch_size: int) -> dict:
    """Validation loss and AUROC per task (the evaluation module's rules, no bootstrap)."""
    from chexphoto.evaluation.metrics import evaluate

    run = predict_dataset(loaded, valid, batch_size=batch_size, workers=workers,
                          description="validate")
    if run.errors:
        first = run.errors[0]
        raise ValueError(f"validation image unreadable (row {first['row']}): {first['reason']}")
    probs = torch.from_numpy(run.predictions[loaded.tasks].to_numpy(np.float32, copy=True)).clamp(1e-7, 1 - 1e-7)
    logits = torch.log(probs) - torch.log1p(-probs)
    loss = masked_bce(logits, torch.from_numpy(valid.labels), torch.from_numpy(valid.masks)).item()
    result = evaluate(valid.csv, run.predictions, level="image", tasks=loaded.tasks, bootstrap=0)
    per_task = {t: result["tasks"][t]["auroc"] for t in loaded.tasks}
    defined = [v for v in per_task.values() if v is not None]
    mean = float(np.mean(defined)) if defined and len(defined) == len(per_task) else None
    return {"valid_loss": loss, "valid_auroc": per_task, "valid_mean_auroc": mean}


def _rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}


def train(config: TrainConfig, *, log: Callable[[str], None] = print) -> dict:
    """Train (or resume) a run; returns the last epoch's log entry.

    Writes ``RUN_DIR/last.pt`` and ``best.pt`` (atomic), ``RUN_DIR/log.jsonl`` (one line per
    epoch) and ``RUN_DIR/config.json``. An existing run is refused unless ``resume``.
    """
    config.checked()
    out = str(config.out)
    last_path, best_path = os.path.join(out, "last.pt"), os.path.join(out, "best.pt")
    state = None
    if os.path.exists(last_path):
        if not config.resume:
            raise FileExistsError(f"{out} already holds a run (last.pt); pass --resume to continue it "
                                  "or choose another --out")
        state = read_checkpoint(last_path)
        stored = state["config"]
        changed = [k for k in RESUME_KEYS if _comparable(stored.get(k)) != _comparable(getattr(config, k))]
        if changed:
            raise ValueError(f"cannot resume {out}: settings differ from the run's ({', '.join(changed)}: "
                             + ", ".join(f"{stored.get(k)!r} there" for k in changed) + ")")
    elif config.resume:
        log(f"no checkpoint in {out}: starting a new run")

    train_set = CheXpertDataset(config.csv, config.data_root, tasks=config.tasks,
                                uncertainty=config.uncertainty, frontal_only=config.frontal_only,
                                image_size=config.image_size)
    augment_names = transform_set(config.augment)
    if augment_names:
        train_set.transform = RandomPhotographic(augment_names, levels=config.augment_levels,
                                                 p=config.augment_p, seed=config.seed)
    valid_set = None
    if config.valid:
        valid_set = CheXpertDataset(config.valid, config.data_root, tasks=config.tasks,
                                    uncertainty="u-ignore", image_size=config.image_size,
                                    frontal_only=config.frontal_only)
    if len(train_set) == 0:
        raise ValueError(f"{config.csv}: no training images")

    torch.manual_seed(_int_seed("init", config.seed))
    model = build_model(config.arch, len(config.tasks))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
    history: list[dict] = []
    best_metric = -math.inf
    start_epoch = 1
    if state is not None:
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        history = list(state["history"])
        best_metric = state["best_metric"] if state["best_metric"] is not None else -math.inf
        start_epoch = int(state["epoch"]) + 1
        torch.set_rng_state(state["rng_states"]["torch"])
        log(f"resuming {out} after epoch {state['epoch']}")
    elif config.init:
        summary = init_from_file(model, config.init)
        log(f"initialised {summary['loaded']} tensors from {config.init}; fresh: "
            f"{', '.join(summary['fresh']) or 'none'}")
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "config.json"),
                      json.dumps(asdict(config), indent=2, sort_keys=True, default=list) + "\n")
    if start_epoch > config.epochs:
        log(f"{out}: already trained for {start_epoch - 1} epoch(s) (asked for {config.epochs})")
        return history[-1] if history else {}

    # Training and validation share one memory layout (predict uses channels_last): switching
    # layouts between epochs changes float rounding, and a resumed run would drift by ~1e-7.
    model = model.to(memory_format=torch.channels_last)
    loaded = LoadedModel(model, list(config.tasks), config.image_size, IMAGENET_MEAN, IMAGENET_STD,
                         arch=config.arch)
    entry: dict = {}
    for epoch in range(start_epoch, config.epochs + 1):
        began = time.perf_counter()
        torch.manual_seed(_int_seed("epoch", config.seed, epoch))
        shuffle = torch.Generator().manual_seed(_int_seed("shuffle", config.seed, epoch))
        train_set.set_epoch(epoch)
        loader = make_loader(train_set, config.batch_size, config.workers, shuffle=True, generator=shuffle)
        model.train()
        total, seen = 0.0, 0
        with make_progress("images") as bar:
            task = bar.add_task(f"epoch {epoch}/{config.epochs}", total=len(train_set))
            for images, labels, mask in _reraise_clean(loader):
                optimizer.zero_grad(set_to_none=True)
                loss = masked_bce(model(images.contiguous(memory_format=torch.channels_last)), labels, mask)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(images)
                seen += len(images)
                bar.advance(task, len(images))
        entry = {"epoch": epoch, "train_loss": total / max(seen, 1), "images": seen}
        model.eval()
        if valid_set is not None:
            entry.update(validation_scores(loaded, valid_set, config.workers, config.batch_size))
        entry["seconds"] = round(time.perf_counter() - began, 3)
        history.append(entry)
        metric = entry.get("valid_mean_auroc")
        if metric is None:
            metric = -entry.get("valid_loss", entry["train_loss"])
        is_best = metric > best_metric
        best_metric = max(best_metric, metric)
        payload = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "arch": config.arch,
            "tasks": list(config.tasks), "image_size": config.image_size,
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "epoch": epoch, "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "rng_states": _rng_states(), "history": history, "best_metric": best_metric,
            "config": {k: _comparable(v) for k, v in asdict(config).items()},
        }
        save_checkpoint(last_path, payload)
        if is_best:
            save_checkpoint(best_path, payload)
        atomic_write_text(os.path.join(out, "log.jsonl"),
                          "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
        log(_format_entry(entry, config.epochs) + (" (best)" if is_best else ""))
    return entry


def _reraise_clean(loader):
    """Iterate ``loader``; an unreadable image in a worker process is re-raised with its own
    message (the DataLoader wraps it in the worker's whole traceback)."""
    try:
        yield from loader
    except ImageReadError as exc:
        text = str(exc)
        if "Original Traceback" in text:
            last = text.strip().splitlines()[-1]
            text = last.split(": ", 1)[1] if ": " in last else last
            raise ImageReadError(text) from None
        raise


def _comparable(value):
    """Tuples and lists compare equal after a checkpoint round trip."""
    if isinstance(value, tuple | list):
        return [_comparable(v) for v in value]
    return value


def _format_entry(entry: dict, epochs: int) -> str:
    text = f"epoch {entry['epoch']}/{epochs}: train loss {entry['train_loss']:.4f}"
    if "valid_loss" in entry:
        text += f", valid loss {entry['valid_loss']:.4f}"
        aurocs = entry["valid_auroc"]
        text += ", valid AUROC " + ", ".join(
            f"{t} {'n/a' if v is None else f'{v:.3f}'}" for t, v in aurocs.items())
        if entry.get("valid_mean_auroc") is not None:
            text += f" (mean {entry['valid_mean_auroc']:.3f})"
    return text + f" [{entry['seconds']:.1f} s]"
