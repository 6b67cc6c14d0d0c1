"""CheXpertDataset (uncertainty policies, masks, formats, errors), RandomPhotographic, models."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from chexphoto.cli import main  # noqa: E402
from chexphoto.csvschema import COMPETITION_TASKS, OBSERVATIONS  # noqa: E402
from chexphoto.imageio import ImageReadError, write_image  # noqa: E402
from chexphoto.learning.augment import FixedTransform, RandomPhotographic, transform_set  # noqa: E402
from chexphoto.learning.data import CheXpertDataset  # noqa: E402
from chexphoto.learning.models import build_model, init_from_file  # noqa: E402

PREFIX = "CheXpert-v1.0-small/train"


@pytest.fixture
def small_set(tmp_path, rg1_path):
    """Four rows: JPEG, PNG (lateral), DICOM, colour JPEG; labels covering 1, 0, -1 and blank."""
    rng = np.random.default_rng(0)
    rows = [
        (f"{PREFIX}/patient00001/study1/view1_frontal.jpg", "Frontal", {"Cardiomegaly": "1.0", "Edema": "-1.0"}),
        (f"{PREFIX}/patient00001/study1/view2_lateral.png", "Lateral", {"Cardiomegaly": "0.0", "Edema": ""}),
        (f"{PREFIX}/patient00002/study1/view1_frontal.dcm", "Frontal", {"Cardiomegaly": "-1.0", "Edema": "1.0"}),
        (f"{PREFIX}/patient00003/study2/view1_frontal.jpg", "Frontal", {"Cardiomegaly": "", "Edema": "0.0"}),
    ]
    records = []
    for i, (rel, view, labels) in enumerate(rows):
        path = tmp_path / rel
        os.makedirs(path.parent, exist_ok=True)
        if rel.endswith(".dcm"):
            shutil.copy(rg1_path, path)
        elif i == 3:
            write_image(path, rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
        else:
            write_image(path, rng.integers(0, 255, (40, 48), dtype=np.uint8))
        record = {"Path": rel, "Sex": "Male", "Age": "60", "Frontal/Lateral": view, "AP/PA": "AP"}
        record.update({obs: "" for obs in OBSERVATIONS})
        record.update(labels)
        records.append(record)
    csv = tmp_path / "train.csv"
    pd.DataFrame(records).to_csv(csv, index=False)
    return tmp_path, csv


def test_uncertainty_policies_and_masks(small_set):
    root, csv = small_set
    tasks = ["Cardiomegaly", "Edema"]
    ones = CheXpertDataset(csv, root, tasks=tasks, uncertainty="u-ones", image_size=32)
    zeros = CheXpertDataset(csv, root, tasks=tasks, uncertainty="u-zeros", image_size=32)
    ignore = CheXpertDataset(csv, root, tasks=tasks, uncertainty="u-ignore", image_size=32)
    # rows: (1, -1), (0, blank), (-1, 1), (blank, 0)
    np.testing.assert_array_equal(ones.labels, [[1, 1], [0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(ones.masks, np.ones((4, 2)))
    np.testing.assert_array_equal(zeros.labels, [[1, 0], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(zeros.masks, np.ones((4, 2)))
    np.testing.assert_array_equal(ignore.labels, [[1, 0], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(ignore.masks, [[1, 0], [1, 0], [0, 1], [0, 1]])
    image, labels, mask = ignore[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert labels.tolist() == [1.0, 0.0] and mask.tolist() == [1.0, 0.0]

    from chexphoto.learning.train import masked_bce

    logits = torch.tensor([[10.0, -10.0]])
    # the masked-out entry (a confident wrong answer) adds nothing to the loss
    assert masked_bce(logits, torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])).item() < 1e-3
    assert masked_bce(logits, torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 1.0]])).item() > 4


def test_tasks_frontal_only_and_formats(small_set):
    root, csv = small_set
    assert CheXpertDataset(csv, root).tasks == list(COMPETITION_TASKS)
    every = CheXpertDataset(csv, root, tasks="all", image_size=24)
    assert every.tasks == list(OBSERVATIONS) and every.labels.shape == (4, 14)
    frontal = CheXpertDataset(csv, root, tasks=["Edema"], frontal_only=True, image_size=24)
    assert len(frontal) == 3 and "lateral" not in " ".join(frontal.csv["Path"])
    assert frontal.csv["Path"].tolist() == [p for p in pd.read_csv(csv)["Path"] if "lateral" not in p]
    np.testing.assert_array_equal(frontal.labels[:, 0], [1, 1, 0])  # u-ones, aligned with .csv
    for index in range(len(every)):  # JPEG, PNG, DICOM, colour JPEG
        image = every[index][0]
        assert image.shape == (3, 24, 24)
        assert torch.equal(image[0] * 0.229 + 0.485, image[1] * 0.224 + 0.456) or torch.allclose(
            image[0] * 0.229 + 0.485, image[2] * 0.225 + 0.406, atol=1e-5)  # grey in 3 channels
    raw = every[2][0][0] * 0.229 + 0.485  # the DICOM, back to [0, 1]
    assert 0 <= raw.min() and raw.max() <= 1 and raw.std() > 0.05
    with pytest.raises(ValueError, match="unknown task"):
        CheXpertDataset(csv, root, tasks=["Heart Attack"])
    with pytest.raises(ValueError, match="uncertainty"):
        CheXpertDataset(csv, root, uncertainty="u-maybe")


def test_missing_and_corrupt_images_are_named(small_set, tmp_path, capsys):
    root, csv = small_set
    frame = pd.read_csv(csv)
    os.remove(root / frame["Path"][1])
    with pytest.raises(FileNotFoundError, match=r"row 3: .*view2_lateral\.png"):
        CheXpertDataset(csv, root)
    (root / frame["Path"][1]).write_bytes(b"\xff\xd8garbage")
    dataset = CheXpertDataset(csv, root, image_size=16)
    with pytest.raises(ImageReadError, match=r"view2_lateral\.png"):
        dataset[1]
    # in training (through a DataLoader worker) it stops the run with the path, one clean line
    code = main(["train", "--csv", str(csv), "--data-root", str(root), "--arch", "tiny", "--image-size", "16",
                 "--epochs", "1", "--workers", "1", "--out", str(tmp_path / "corrupt")])
    err = capsys.readouterr().err
    assert code == 2 and "view2_lateral.png" in err and "Traceback" not in err, err
    # the command says so before training starts, as a clean error
    os.remove(root / frame["Path"][1])
    code = main(["train", "--csv", str(csv), "--data-root", str(root), "--arch", "tiny", "--image-size", "16",
                 "--epochs", "1", "--out", str(tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run" / "last.pt").exists()
    escaping = frame.copy()
    escaping.loc[0, "Path"] = "../outside.jpg"
    escaping.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="row 2"):
        CheXpertDataset(tmp_path / "bad.csv", root)


def test_random_photographic_is_seeded_and_changes_images(rg1_small):
    image = np.ascontiguousarray(rg1_small[:200, :200])
    aug = RandomPhotographic("photographic", levels=(2, 3), p=1.0, seed=7)
    again = RandomPhotographic("photographic", levels=(2, 3), p=1.0, seed=7)
    outs = [aug(image) for _ in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(outs, [again(image) for _ in range(4)], strict=True))
    assert not np.array_equal(outs[0], outs[1])  # the k-th call draws from (seed, k)
    for out in outs:
        assert out.dtype == np.uint8
        assert out.shape != image.shape or np.abs(out.astype(int) - image).mean() > 1.0
    # keyed draws do not depend on call order
    a = [aug(image, key=["x.jpg", e]) for e in (1, 2)]
    b = [again(image, key=["x.jpg", e]) for e in (2, 1)][::-1]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])
    assert aug.last_chain and all(name in ("glare_matte", "moire", "tilt") for name, _ in aug.last_chain)
    # p=0 never changes anything; PIL in -> PIL out
    assert np.array_equal(RandomPhotographic(p=0.0, seed=1)(image), image)
    from PIL import Image

    pil = RandomPhotographic("digital", p=1.0, seed=3)(Image.fromarray(image))
    assert isinstance(pil, Image.Image) and pil.mode == "L"
    # picklable for DataLoader workers; p=0.5 leaves some images alone and changes others
    clone = pickle.loads(pickle.dumps(aug))
    assert np.array_equal(clone(image, key="k"), aug(image, key="k"))
    half = RandomPhotographic("default", p=0.5, seed=0)
    changed = [not np.array_equal(half(image, key=i), image) for i in range(30)]
    assert 5 < sum(changed) < 25
    assert set(transform_set("all")) >= {"tilt", "moire", "blur"} and "identity" not in transform_set("all")
    with pytest.raises(KeyError, match="unknown transform"):
        RandomPhotographic("tilt,warp")


def test_augmentation_inside_dataset_is_keyed_by_path_and_epoch(small_set):
    root, csv = small_set
    dataset = CheXpertDataset(csv, root, image_size=32,
                              transform=RandomPhotographic("tilt", levels=(4,), p=1.0, seed=5))
    first = dataset[0][0]
    assert torch.equal(first, dataset[0][0])
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0][0])
    plain = CheXpertDataset(csv, root, image_size=32)
    assert not torch.equal(first, plain[0][0])
    fixed = FixedTransform("blur", 4, seed=0)
    img = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    assert np.array_equal(fixed(img, key=["a.jpg", 0]), fixed(img, key=["a.jpg", 9]))


def test_models_build_and_init(tmp_path):
    dense = build_model("densenet121", 5).eval()
    with torch.no_grad():
        out = dense(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 5)
    tiny = build_model("tiny", 3)
    assert tiny(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet9000", 2)
    # an ImageNet-style state dict: features load, the 1000-class classifier is left fresh
    imagenet = build_model("densenet121", 1000).state_dict()
    renamed = {k.replace("norm1.", "norm.1.") if "denselayer" in k else k: v for k, v in imagenet.items()}
    torch.save(renamed, tmp_path / "imagenet.pth")
    target = build_model("densenet121", 5)
    summary = init_from_file(target, tmp_path / "imagenet.pth")
    assert summary["fresh"] == ["classifier.bias", "classifier.weight"]
    assert torch.equal(target.features.conv0.weight, imagenet["features.conv0.weight"])
    key = "features.denseblock1.denselayer1.norm1.weight"
    assert torch.equal(target.state_dict()[key], imagenet[key])
    with pytest.raises(ValueError, match="wrong architecture"):
        init_from_file(build_model("tiny", 5), tmp_path / "imagenet.pth")
