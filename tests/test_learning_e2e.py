"""End to end: train a tiny model with the real ``train`` command on images whose labels are drawn
in them, then ``predict`` and ``benchmark`` it, resume a run, load TorchScript."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from chexphoto.cli import main  # noqa: E402
from chexphoto.csvschema import COMPETITION_TASKS, OBSERVATIONS  # noqa: E402
from chexphoto.imageio import write_image  # noqa: E402

SIZE = 64
ROOT_NAME = "CheXpert-v1.0-small"


def draw_findings(rng: np.random.Generator, labels: dict[str, int]) -> np.ndarray:
    """A 64 px "radiograph": noisy dark background, one visible mark per positive finding."""
    img = rng.normal(60, 12, (SIZE, SIZE))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    if labels["Cardiomegaly"]:  # a bright disc in the middle
        img[(yy - 34) ** 2 + (xx - 32) ** 2 < 11**2] += 120
    if labels["Edema"]:  # a horizontal bar near the top
        img[8:14, 6:58] += 120
    if labels["Atelectasis"]:  # a vertical bar on the left
        img[18:58, 4:10] += 120
    if labels["Consolidation"]:  # a square on the right
        img[22:34, 46:58] += 120
    if labels["Pleural Effusion"]:  # a band along the bottom
        img[56:62, 14:50] += 120
    return np.clip(img, 0, 255).astype(np.uint8)


def make_split(root, split: str, n_studies: int, seed: int, *, two_views_every: int = 0,
               uncertain_rate: float = 0.0) -> str:
    """Write images at CheXpert paths under ``root`` and their CSV; returns the CSV path."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_studies):
        patient = f"patient{seed:02d}{i:04d}"
        truth = {t: int(rng.random() < 0.5) for t in COMPETITION_TASKS}
        views = ["view1_frontal", "view2_lateral"] if two_views_every and i % two_views_every == 0 else [
            "view1_frontal"]
        for view in views:
            ext = "png" if i % 5 == 0 else "jpg"
            rel = f"{ROOT_NAME}/{split}/{patient}/study1/{view}.{ext}"
            write_image(os.path.join(root, rel), draw_findings(rng, truth))
            row = {"Path": rel, "Sex": "Female", "Age": "50",
                   "Frontal/Lateral": "Frontal" if "frontal" in view else "Lateral", "AP/PA": "PA"}
            for obs in OBSERVATIONS:
                row[obs] = ""
            for task, value in truth.items():
                text = "1.0" if value else ("0.0" if rng.random() < 0.7 else "")  # blank = negative
                if uncertain_rate and rng.random() < uncertain_rate:
                    text = "-1.0"
                row[task] = text
            rows.append(row)
    csv = os.path.join(root, ROOT_NAME, f"{split}.csv")
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("chexpert")
    train_csv = make_split(root, "train", 160, 1, uncertain_rate=0.03)
    valid_csv = make_split(root, "valid", 70, 2, two_views_every=4)
    return {"root": str(root), "train": train_csv, "valid": valid_csv}


def train_args(data, out, *extra):
    return ["train", "--csv", data["train"], "--data-root", data["root"], "--valid", data["valid"],
            "--arch", "tiny", "--tasks", "competition", "--uncertainty", "u-ones", "--batch-size", "16",
            "--image-size", str(SIZE), "--lr", "3e-3", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(train_args(data, run, "--epochs", "4", "--workers", "0", "--augment", "none")) == 0
    return run


def test_train_logs_and_learns(trained):
    entries = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in entries] == list(range(1, 5))
    assert entries[-1]["train_loss"] < entries[0]["train_loss"]
    assert set(entries[-1]["valid_auroc"]) == set(COMPETITION_TASKS)
    best = max(e["valid_mean_auroc"] for e in entries)
    assert best > 0.9, entries
    ckpt = torch.load(trained / "best.pt", weights_only=True)
    assert ckpt["arch"] == "tiny" and ckpt["tasks"] == list(COMPETITION_TASKS)
    assert ckpt["image_size"] == SIZE and ckpt["normalization"]["mean"] == [0.485, 0.456, 0.406]
    assert ckpt["epoch"] == max(entries, key=lambda e: e["valid_mean_auroc"])["epoch"]
    assert {"optimizer_state", "rng_states", "history"} <= set(ckpt)
    assert not list(trained.glob("*.tmp*"))


def test_benchmark_degrades_under_strong_transforms(trained, data, tmp_path):
    out = tmp_path / "bench"
    transforms = "tilt,rotation,random_digital,glare_glossy"
    args = ["benchmark", "--model", str(trained / "best.pt"), "--csv", data["valid"], "--data-root",
            data["root"], "--transforms", transforms, "--levels", "1,4", "--bootstrap", "20",
            "--out", str(out), "--workers", "0"]
    assert main(args) == 0
    assert (out / "robustness.csv").exists() and (out / "robustness.json").exists()
    written = {p.name for p in out.rglob("*") if p.is_file()}
    assert not any(name.endswith((".jpg", ".png")) for name in written)  # transformed on the fly
    assert "clean.csv" in written and "glare_glossy_L4.csv" in written

    from chexphoto.evaluation.metrics import evaluate

    labels = data["valid"]
    clean = evaluate(labels, str(out / "predictions" / "clean.csv"), bootstrap=0)["mean"]["auroc"]
    strong = [evaluate(labels, str(out / "predictions" / f"{t}_L4.csv"), bootstrap=0)["mean"]["auroc"]
              for t in transforms.split(",")]
    mild = [evaluate(labels, str(out / "predictions" / f"{t}_L1.csv"), bootstrap=0)["mean"]["auroc"]
            for t in transforms.split(",")]
    assert clean > 0.9
    assert np.mean(strong) < clean - 0.05, (clean, strong)
    assert np.mean(strong) < np.mean(mild), (mild, strong)

    # a rerun with the same settings reuses the finished conditions and gives the same table
    before = (out / "robustness.csv").read_bytes()
    mtime = (out / "predictions" / "tilt_L4.csv").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "robustness.csv").read_bytes() == before
    assert (out / "predictions" / "tilt_L4.csv").stat().st_mtime_ns == mtime


def test_predict_format_and_study_max(trained, data, tmp_path):
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(trained / "last.pt"), "--csv", data["valid"], "--data-root",
                 data["root"], "--out", str(out), "--study", "--batch-size", "7"]) == 0
    pred = pd.read_csv(out)
    labels = pd.read_csv(data["valid"])
    assert list(pred.columns) == ["Path", *COMPETITION_TASKS]
    assert pred["Path"].tolist() == labels["Path"].tolist()
    values = pred[list(COMPETITION_TASKS)].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    study = pd.read_csv(tmp_path / "pred.study.csv")
    assert list(study.columns) == ["Study", *COMPETITION_TASKS]
    pred["Study"] = pred["Path"].str.rsplit("/", n=1).str[0]
    expected = pred.groupby("Study", sort=False)[list(COMPETITION_TASKS)].max().reset_index()
    assert study["Study"].tolist() == expected["Study"].tolist()
    assert study["Study"].iloc[0].endswith("/study1") and "/valid/patient" in study["Study"].iloc[0]
    assert len(study) < len(pred)  # some studies have two views
    np.testing.assert_allclose(study[list(COMPETITION_TASKS)], expected[list(COMPETITION_TASKS)], atol=2e-6)
    assert not (tmp_path / "pred.errors.csv").exists()

    # workers do not change a single byte
    out2 = tmp_path / "pred2.csv"
    assert main(["predict", "--model", str(trained / "last.pt"), "--csv", data["valid"], "--data-root",
                 data["root"], "--out", str(out2), "--workers", "0"]) == 0
    assert out2.read_bytes() == out.read_bytes()


def test_predict_reports_and_skips_unreadable_images(trained, data, tmp_path, capsys):
    labels = pd.read_csv(data["valid"]).head(6)
    root = tmp_path / "root"
    for rel in labels["Path"]:
        os.makedirs(root / os.path.dirname(rel), exist_ok=True)
        (root / rel).write_bytes(open(os.path.join(data["root"], rel), "rb").read())
    (root / labels["Path"][1]).write_bytes(b"not an image at all")
    os.remove(root / labels["Path"][4])
    csv = tmp_path / "six.csv"
    labels.to_csv(csv, index=False)
    out = tmp_path / "pred.csv"
    args = ["predict", "--model", str(trained / "last.pt"), "--csv", str(csv), "--data-root", str(root),
            "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "row 3" in err and "row 6" in err and labels["Path"][4] in err
    pred = pd.read_csv(out)
    assert pred["Path"].tolist() == [p for i, p in enumerate(labels["Path"]) if i not in (1, 4)]
    errors = pd.read_csv(tmp_path / "pred.errors.csv")
    assert errors["row"].tolist() == [3, 6]
    assert errors["path"].tolist() == [labels["Path"][1], labels["Path"][4]]
    assert main([*args, "--allow-errors"]) == 0


def test_resume_continues_exactly(data, tmp_path):
    small = tmp_path / "small.csv"
    pd.read_csv(data["train"]).head(48).to_csv(small, index=False)
    common = ["train", "--csv", str(small), "--data-root", data["root"], "--valid", data["valid"],
              "--arch", "tiny", "--batch-size", "8", "--image-size", "32", "--workers", "0", "--seed", "3",
              "--augment", "photographic", "--augment-p", "1.0", "--uncertainty", "u-ignore"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*common, "--epochs", "3", "--out", str(whole)]) == 0
    assert main([*common, "--epochs", "1", "--out", str(parts)]) == 0
    assert main([*common, "--epochs", "3", "--out", str(parts)]) == 2  # refuses without --resume
    assert main([*common, "--epochs", "3", "--out", str(parts), "--resume", "--lr", "1"]) == 2  # other settings
    assert main([*common, "--epochs", "3", "--out", str(parts), "--resume"]) == 0
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(parts / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key, tensor in a["model_state"].items():
        assert torch.equal(tensor, b["model_state"][key]), key
    log = [json.loads(line)["epoch"] for line in (parts / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]


def test_torchscript_model(trained, data, tmp_path):
    from chexphoto.learning.models import export_torchscript, load_model

    loaded = load_model(trained / "last.pt")
    scripted = tmp_path / "model.ts"
    export_torchscript(loaded, scripted)
    ref, out = tmp_path / "ref.csv", tmp_path / "ts.csv"
    common = ["--csv", data["valid"], "--data-root", data["root"]]
    assert main(["predict", "--model", str(trained / "last.pt"), *common, "--out", str(ref)]) == 0
    assert main(["predict", "--model", str(scripted), *common, "--out", str(out)]) == 0
    a, b = pd.read_csv(ref), pd.read_csv(out)
    assert list(b.columns) == list(a.columns)
    np.testing.assert_allclose(a[list(COMPETITION_TASKS)], b[list(COMPETITION_TASKS)], atol=1e-5)

    # a bare TorchScript file (no chexphoto.json): settings from the options
    bare = tmp_path / "bare.ts"
    torch.jit.save(torch.jit.trace(loaded.model, torch.zeros(1, 3, SIZE, SIZE)), str(bare))
    out3 = tmp_path / "bare.csv"
    assert main(["predict", "--model", str(bare), *common, "--out", str(out3), "--image-size", str(SIZE),
                 "--tasks", ",".join(COMPETITION_TASKS)]) == 0
    np.testing.assert_allclose(pd.read_csv(out3)[list(COMPETITION_TASKS)], a[list(COMPETITION_TASKS)],
                               atol=1e-5)
    # without options: the competition tasks at 320 px (documented default)
    assert load_model(bare).tasks == list(COMPETITION_TASKS) and load_model(bare).image_size == 320
