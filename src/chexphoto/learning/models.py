"""Model architectures, checkpoints and TorchScript loading.

Two architectures:

* ``densenet121``: torchvision's DenseNet-121 (``weights=None``, never downloaded) with the
  classifier replaced by one logit per task: the CheXpert baseline;
* ``tiny``: a 4-layer CNN (~25k parameters) for tests and quick runs.

A *checkpoint* (written by ``chexphoto train``) is a ``torch.save`` dict holding the arch, tasks,
image size and normalisation next to the weights, so ``predict`` and ``benchmark`` need nothing
else. A *TorchScript* file is accepted too; its settings come from an extra file
``chexphoto.json`` stored inside it (see :func:`export_torchscript`) or, when absent, from
the caller (default: the competition tasks, 320 px, ImageNet normalisation).
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field

import torch
from torch import nn

from chexphoto.csvschema import COMPETITION_TASKS
from chexphoto.fsutil import atomic_write_bytes

ARCHS = ("densenet121", "tiny")

#: ImageNet statistics, used for every model (the CheXpert baseline starts from ImageNet DenseNets).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CHECKPOINT_FORMAT = "chexphoto-checkpoint"
CHECKPOINT_VERSION = 1
TORCHSCRIPT_EXTRA = "chexphoto.json"


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU blocks with stride 2, global average pooling and a linear head."""

    def __init__(self, num_outputs: int, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out_channels in (width, width * 2, width * 2, width * 4):
            layers += [
                nn.Conv2d(channels, out_channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build_model(arch: str, num_outputs: int) -> nn.Module:
    """A freshly initialised model with ``num_outputs`` logits (no weights are downloaded)."""
    if num_outputs < 1:
        raise ValueError("a model needs at least one task")
    if arch == "densenet121":
        try:
            from torchvision.models import densenet121
        except ImportError:
            raise ImportError("the densenet121 arch needs torchvision: pip install 'chexphoto[torch]'") from None

        model = densenet121(weights=None)
        model.classifier = nn.Linear(model.classifier.in_features, num_outputs)
        return model
    if arch == "tiny":
        return TinyCNN(num_outputs)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


@dataclass
class LoadedModel:
    """A model ready for inference and the settings its inputs need."""

    model: nn.Module
    tasks: list[str]
    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    arch: str = "torchscript"
    source: str = ""
    info: dict = field(default_factory=dict)


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (it holds a ``code/`` folder; ``torch.save`` files do not)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in name for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write a checkpoint atomically (a crash leaves the previous file intact)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a chexphoto checkpoint dict (``weights_only``: no arbitrary code is unpickled)."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint (neither a 'chexphoto train' checkpoint nor "
                         f"TorchScript): {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path}: not a chexphoto checkpoint (expected one written by 'chexphoto train', "
            "or a TorchScript file)"
        )
    return payload


def _settings(tasks, image_size) -> tuple[list[str], int]:
    tasks = list(tasks) if tasks is not None else list(COMPETITION_TASKS)
    return tasks, int(image_size) if image_size is not None else 320


def load_model(path: str | os.PathLike, *, tasks: list[str] | None = None,
               image_size: int | None = None) -> LoadedModel:
    """Load a checkpoint from ``train`` or a TorchScript file, in eval mode on the CPU.

    For a checkpoint, ``tasks``/``image_size`` must agree with it when given. For TorchScript,
    settings stored in its ``chexphoto.json`` extra file win over the defaults, and explicit
    arguments win over both.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if is_torchscript(path):
        extra = {TORCHSCRIPT_EXTRA: ""}
        try:
            with warnings.catch_warnings():  # torch.jit.load's deprecation notice is not for our users
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        except Exception as exc:
            raise ValueError(f"{path}: not a loadable TorchScript file: {exc}") from exc
        stored = json.loads(extra[TORCHSCRIPT_EXTRA]) if extra[TORCHSCRIPT_EXTRA] else {}
        task_list, size = _settings(
            tasks if tasks is not None else stored.get("tasks"),
            image_size if image_size is not None else stored.get("image_size"),
        )
        model.eval()
        return LoadedModel(
            model, task_list, size,
            tuple(stored.get("mean", IMAGENET_MEAN)), tuple(stored.get("std", IMAGENET_STD)),
            arch=stored.get("arch", "torchscript"), source=path, info=stored,
        )
    payload = read_checkpoint(path)
    ckpt_tasks = list(payload["tasks"])
    if tasks is not None and list(tasks) != ckpt_tasks:
        raise ValueError(f"{path}: the checkpoint predicts {ckpt_tasks}, not {list(tasks)}")
    if image_size is not None and int(image_size) != int(payload["image_size"]):
        raise ValueError(f"{path}: the checkpoint was trained at {payload['image_size']} px, not {image_size}")
    model = build_model(payload["arch"], len(ckpt_tasks))
    model.load_state_dict(payload["model_state"])
    model.eval()
    return LoadedModel(
        model, ckpt_tasks, int(payload["image_size"]),
        tuple(payload["normalization"]["mean"]), tuple(payload["normalization"]["std"]),
        arch=payload["arch"], source=path,
        info={k: payload[k] for k in ("epoch", "best_metric") if k in payload},
    )


def export_torchscript(loaded: LoadedModel, out: str | os.PathLike) -> None:
    """Trace ``loaded.model`` to TorchScript with its settings in a ``chexphoto.json`` extra file."""
    model = loaded.model.eval()
    example = torch.zeros(1, 3, loaded.image_size, loaded.image_size)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    settings = {"arch": loaded.arch, "tasks": loaded.tasks, "image_size": loaded.image_size,
                "mean": list(loaded.mean), "std": list(loaded.std)}
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={TORCHSCRIPT_EXTRA: json.dumps(settings)})
    atomic_write_bytes(out, buf.getvalue())


# torchvision's published DenseNet files use "norm.1"; the modules are now named "norm1".
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def init_from_file(model: nn.Module, path: str | os.PathLike) -> dict:
    """Initialise ``model`` from a local file: a chexphoto checkpoint or a plain state dict.

    Tensors whose name or shape does not match (e.g. an ImageNet 1000-class classifier) are left
    at their fresh initialisation and listed in the returned summary; nothing is downloaded.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"initial weights not found: {path}")
    if is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable weights file: {exc}") from exc
        if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
            state = state["model_state"]
        elif isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: does not hold a state dict")
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        match = _OLD_DENSENET_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    own = model.state_dict()
    usable = {k: v for k, v in renamed.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    # a file for another architecture can match a tensor or two by chance (a 5-wide bias):
    # demand that most of the model's values come from the file
    covered = sum(v.numel() for v in usable.values())
    if covered < 0.5 * sum(v.numel() for v in own.values()):
        raise ValueError(f"{path}: its tensors do not match the model (wrong architecture?); only "
                         f"{len(usable)} of {len(own)} fit")
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "skipped": sorted(set(renamed) - set(usable)),
            "fresh": sorted(set(own) - set(usable))}
