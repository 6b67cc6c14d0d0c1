"""The synthesis engine end to end: layout, labels, manifest, replay, determinism across engines,
resume after an interruption, overwrite/refusal. (Bad inputs and the CLI: test_cli_synthesis.py.)"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from chexphoto.csvschema import read_csv
from chexphoto.imageio import read_image, write_image
from chexphoto.synthesis import DatasetExistsError, synthesize
from chexphoto.synthesis import render as render_module
from chexphoto.synthesis import run as run_module
from chexphoto.synthesis.manifest import RECORD_KEYS, Journal, read_manifest, record_line
from chexphoto.synthesis.plan import Job, default_name, plan_jobs
from chexphoto.synthesis.replay import load_records, replay
from chexphoto.synthesis.run import run_jobs
from chexphoto.transforms import Chain, preset

OUT_NAME = "CheXphoto-v1.0"
PREFIX = "CheXpert-v1.0-small"

# Odd but legal values on purpose: "1" vs "1.0", blanks, an extra column with commas, quotes and
# spaces; they must come back exactly as written.
CSV_TEXT = '''Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Cardiomegaly,Edema,Pleural Effusion,Comment
CheXpert-v1.0-small/valid/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,,1.0,-1.0,0.0,"has, comma"
CheXpert-v1.0-small/valid/patient00001/study1/view2_lateral.png,Female,68,Lateral,,1,,0,-1,
CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.png,Male,45,Frontal,PA,1.0,0.0,0.0,0.0, spaced
CheXpert-v1.0-small/valid/patient00003/study2/view1_frontal.dcm,Unknown,,Frontal,AP,,,,,"quote ""q"""
CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg,Male,90,Frontal,AP,0.0,1.0,1.0,1.0,colour
CheXpert-v1.0-small/train/patient00005/study3/view1_frontal.jpg,Female,1,Frontal,AP,1,0,0,0,noise
'''
SPLIT_ROWS = {"valid": [0, 1, 3], "train": [2, 4, 5]}


def make_data_root(root: Path, rg1_small: np.ndarray, rg1_path: str) -> Path:
    """A small CheXpert-style data root: the real radiograph as JPEG, 8-bit PNG, 16-bit PNG and a
    (downsampled) DICOM copy, plus generated colour and noise images. Returns the CSV path."""
    base = root / PREFIX
    write_image(base / "valid/patient00001/study1/view1_frontal.jpg", rg1_small)
    write_image(base / "valid/patient00001/study1/view2_lateral.png", np.ascontiguousarray(rg1_small[:, ::-1]))
    deep = (rg1_small.astype(np.uint16) * 64 + 500).astype(np.uint16)  # 16-bit, 14 bits used
    (base / "train/patient00002/study1").mkdir(parents=True)
    assert cv2.imwrite(str(base / "train/patient00002/study1/view1_frontal.png"), deep)
    ds = pydicom.dcmread(rg1_path)
    pixels = np.ascontiguousarray(ds.pixel_array[::6, ::6])
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    (base / "valid/patient00003/study2").mkdir(parents=True)
    ds.save_as(base / "valid/patient00003/study2/view1_frontal.dcm")
    yy, xx = np.mgrid[0:300, 0:260]
    colour = np.stack([(xx * 255 // 259), (yy * 255 // 299), ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    write_image(base / "train/patient00004/study1/view1_frontal.jpg", colour)
    noise = np.random.default_rng(5).integers(0, 256, (280, 240), dtype=np.uint8)
    write_image(base / "train/patient00005/study3/view1_frontal.jpg", noise)
    csv = root / "input.csv"
    csv.write_text(CSV_TEXT)
    return csv


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def image_bytes(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree_bytes(out).items() if k.endswith((".jpg", ".png"))}


@pytest.fixture(scope="module")
def data(tmp_path_factory, rg1_small, rg1_path):
    root = tmp_path_factory.mktemp("data")
    return root, make_data_root(root, rg1_small, rg1_path)


@pytest.fixture(scope="module")
def photographic_reference(tmp_path_factory, data):
    """The photographic preset rendered in-process (workers=1): the reference for other engines."""
    root, csv = data
    out = tmp_path_factory.mktemp("ref") / OUT_NAME
    result = synthesize(csv, root, out, preset("photographic"), seed=7, workers=1, progress=False)
    assert (result.written, result.failed) == (6, 0)
    return out


def test_contract_layout_labels_and_manifest(tmp_path, data):
    root, csv = data
    out = tmp_path / OUT_NAME
    result = synthesize(csv, root, out, preset("digital"), workers=1, progress=False)
    assert (result.name, result.written, result.skipped, result.failed) == ("digital", 6, 0, 0)

    source = read_csv(csv)
    for split, rows in SPLIT_ROWS.items():
        folder = out / split / "synthetic"
        assert sorted(p.name for p in folder.iterdir()) == [
            "digital", "digital.csv", "digital.errors.csv", "digital.manifest.jsonl"]
        labels = read_csv(folder / "digital.csv")
        # same columns, same order, same values; only Path rewritten
        assert list(labels.columns) == list(source.columns)
        expected = source.iloc[rows].reset_index(drop=True)
        assert labels.drop(columns="Path").equals(expected.drop(columns="Path"))
        records = read_manifest(folder / "digital.manifest.jsonl")
        assert [r["source"] for r in records] == expected["Path"].tolist()
        assert labels["Path"].tolist() == [r["output"] for r in records]
        assert (folder / "digital.errors.csv").read_text() == "row,path,reason\n"
        for row, record in zip(rows, records, strict=True):
            assert list(record) == list(RECORD_KEYS)
            assert record["row"] == row + 2
            key = record["source"].split("/")[-3:]
            view = key[2].rsplit(".", 1)[0]
            assert record["output"] == f"{OUT_NAME}/{split}/synthetic/digital/{key[0]}/{key[1]}/{view}.jpg"
            assert record["seed"] == 0 and record["format"] == "jpg" and record["quality"] == 95
            assert [(s["name"], s["level"]) for s in record["chain"]] == [("random_digital", 1)]
            assert json.loads(json.dumps(record["chain"])) == record["chain"]
            assert record["source_sha256"] == hashlib.sha256((root / record["source"]).read_bytes()).hexdigest()
            written = out.parent / record["output"]
            assert record["output_sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
            img = read_image(written)
            assert img.shape[:2] == (record["height"], record["width"])
    # the colour photograph stays colour, x-rays stay grey
    assert read_image(out / "train/synthetic/digital/patient00004/study1/view1_frontal.jpg").ndim == 3
    assert read_image(out / "valid/synthetic/digital/patient00003/study2/view1_frontal.jpg").ndim == 2


def test_replay_reproduces_every_output(tmp_path, data, photographic_reference):
    root, _ = data
    manifest = photographic_reference / "valid/synthetic/photographic.manifest.jsonl"
    results = replay(load_records(str(manifest)), root, tmp_path / "again", progress=False)
    assert len(results) == 3 and all(r.ok for r in results), [r.reason for r in results]
    for res in results:
        assert Path(res.written).read_bytes() == (photographic_reference.parent / res.record["output"]).read_bytes()
    # one line given as JSON, picked out by row; a tampered record is reported, not reproduced
    line = manifest.read_text().splitlines()[1]
    [record] = load_records(line)
    assert replay([record], root, progress=False)[0].ok
    wrong_output = {**record, "output_sha256": "0" * 64}
    assert "re-rendered output differs" in replay([wrong_output], root, progress=False)[0].reason
    wrong_source = {**record, "source_sha256": "0" * 64}
    assert "source image differs" in replay([wrong_source], root, progress=False)[0].reason


def test_one_and_two_workers_and_any_row_order_are_byte_identical(tmp_path, data, photographic_reference):
    root, csv = data
    out = tmp_path / "pool" / OUT_NAME
    result = synthesize(csv, root, out, preset("photographic"), seed=7, workers=2, progress=False)
    assert result.written == 6
    assert tree_bytes(out) == tree_bytes(photographic_reference)
    # the same rows in another order: the same image bytes (each image's randomness is its own)
    lines = csv.read_text().splitlines()
    body = lines[1:]
    random.Random(3).shuffle(body)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *body]) + "\n")
    out2 = tmp_path / "shuffled" / OUT_NAME
    synthesize(shuffled, root, out2, preset("photographic"), seed=7, workers=1, progress=False)
    assert image_bytes(out2) == image_bytes(photographic_reference)
    # and another seed gives other images
    out3 = tmp_path / "seed8" / OUT_NAME
    synthesize(csv, root, out3, preset("photographic"), seed=8, workers=1, progress=False)
    assert image_bytes(out3).keys() == image_bytes(photographic_reference).keys()
    assert image_bytes(out3) != image_bytes(photographic_reference)


def test_dask_local_cluster_is_byte_identical(tmp_path, data, photographic_reference):
    distributed = pytest.importorskip("distributed")  # dask[distributed] is a dependency
    root, csv = data
    out = tmp_path / "dask" / OUT_NAME
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, scheduler_port=0,
                                  dashboard_address=None) as cluster:
        result = synthesize(csv, root, out, preset("photographic"), seed=7, scheduler=cluster.scheduler_address,
                            progress=False)
    assert (result.written, result.failed) == (6, 0)
    assert tree_bytes(out) == tree_bytes(photographic_reference)


def test_resume_after_an_interrupted_run(tmp_path, data, photographic_reference, monkeypatch):
    root, csv = data
    out = tmp_path / "run" / OUT_NAME
    real_render_job = render_module.render_job
    calls = []

    def interrupted_after_three(job):
        calls.append(job.row)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as if Ctrl-C (or a kill) arrived during the fourth image
        return real_render_job(job)

    monkeypatch.setattr(render_module, "render_job", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        synthesize(csv, root, out, preset("photographic"), seed=7, workers=1, progress=False)
    monkeypatch.setattr(render_module, "render_job", real_render_job)

    journals = sorted(out.rglob("*.partial"))
    assert [p.name for p in journals] == ["photographic.manifest.jsonl.partial"] * 2
    assert sum(len(read_manifest(p)) for p in journals) == 3
    assert not list(out.rglob("photographic.csv")) and not list(out.rglob("photographic.manifest.jsonl"))
    # a crash can also cut the journal's last line short: it is ignored
    with open(journals[0], "a") as fh:
        fh.write('{"row": 99, "source": "trunc')

    with pytest.raises(DatasetExistsError, match="interrupted run.*--resume"):
        synthesize(csv, root, out, preset("photographic"), seed=7, workers=1, progress=False)
    result = synthesize(csv, root, out, preset("photographic"), seed=7, workers=2, resume=True, progress=False)
    assert (result.written, result.skipped, result.failed) == (3, 3, 0)
    assert tree_bytes(out) == tree_bytes(photographic_reference)

    # damaged outputs after a finished run: only those are rendered again
    first = out / "valid/synthetic/photographic/patient00001/study1/view1_frontal.jpg"
    second = out / "train/synthetic/photographic/patient00005/study3/view1_frontal.jpg"
    first.unlink()
    second.write_bytes(second.read_bytes()[:100])
    result = synthesize(csv, root, out, preset("photographic"), seed=7, workers=1, resume=True, progress=False)
    assert (result.written, result.skipped, result.failed) == (2, 4, 0)
    assert tree_bytes(out) == tree_bytes(photographic_reference)


def test_existing_dataset_is_refused_unless_overwrite(tmp_path, data):
    root, csv = data
    out = tmp_path / OUT_NAME
    chain = Chain.from_names("identity", 1)
    synthesize(csv, root, out, chain, workers=1, progress=False)
    before = tree_bytes(out)
    with pytest.raises(DatasetExistsError, match="same dataset.*--resume"):
        synthesize(csv, root, out, chain, workers=1, progress=False)
    with pytest.raises(DatasetExistsError, match="different dataset.*seed"):
        synthesize(csv, root, out, chain, seed=1, workers=1, progress=False)
    with pytest.raises(DatasetExistsError, match="different dataset.*png"):
        synthesize(csv, root, out, chain, fmt="png", workers=1, progress=False)
    assert tree_bytes(out) == before  # refusals write nothing
    # a different CSV (fewer rows) replaces the set with --overwrite, and the left-over images go;
    # splits the CSV does not name are other datasets (train.csv and valid.csv are run separately)
    lines = csv.read_text().splitlines()
    fewer = tmp_path / "fewer.csv"
    fewer.write_text("\n".join(lines[:3]) + "\n")  # two valid rows
    with pytest.raises(DatasetExistsError, match="not in this CSV"):
        synthesize(fewer, root, out, chain, workers=1, resume=True, progress=False)
    result = synthesize(fewer, root, out, chain, workers=1, overwrite=True, progress=False)
    assert result.written == 2
    after = image_bytes(out)
    assert sorted(k for k in after if k.startswith("valid/")) == [
        "valid/synthetic/identity_L1/patient00001/study1/view1_frontal.jpg",
        "valid/synthetic/identity_L1/patient00001/study1/view2_lateral.jpg",
    ]
    assert not (out / "valid/synthetic/identity_L1/patient00003").exists()
    assert {k: v for k, v in after.items() if k.startswith("train/")} == {
        k: v for k, v in before.items() if k.startswith("train/") and k.endswith(".jpg")}
    assert (out / "train/synthetic/identity_L1.csv").read_bytes() == before["train/synthetic/identity_L1.csv"]


def test_default_names_and_split_override(tmp_path, data):
    root, csv = data
    assert default_name(preset("photographic"), "photographic") == "photographic"
    assert default_name(Chain.from_names("blur,tilt", 2)) == "blur-tilt_L2"
    out = tmp_path / "x" / "Synth"
    result = synthesize(csv, root, out, Chain.from_names("identity", 3), split="test", fmt="png",
                        workers=1, progress=False)
    assert result.written == 6 and [o.target.split for o in result.outputs] == ["test"]
    labels = read_csv(out / "test/synthetic/identity_L3.csv")
    assert labels["Path"].str.startswith("Synth/test/synthetic/identity_L3/").all()
    assert labels["Path"].str.endswith(".png").all()
    # identity keeps the pixels: PNG output decodes to exactly the decoded source
    src = read_image(root / PREFIX / "valid/patient00001/study1/view2_lateral.png")
    got = read_image(out / "test/synthetic/identity_L3/patient00001/study1/view2_lateral.png")
    assert np.array_equal(src, got)
    assert os.listdir(out) == ["test"]


@dataclasses.dataclass(frozen=True)
class WorkerKillingJob(Job):
    """A job whose worker process dies abruptly (as if killed or out of memory) when it reads it."""

    parent_pid: int = 0

    def __getattribute__(self, name):
        if name == "source_file" and os.getpid() != object.__getattribute__(self, "parent_pid"):
            os._exit(3)
        return super().__getattribute__(name)


def test_a_dying_worker_fails_only_its_own_image(tmp_path, data):
    root, csv = data
    plan = plan_jobs(read_csv(csv)["Path"].tolist(), data_root=root, out_dir=tmp_path / OUT_NAME,
                     chain=Chain.from_names("identity", 1), name="identity_L1")
    jobs = list(plan.jobs)
    jobs[2] = WorkerKillingJob(**{f.name: getattr(jobs[2], f.name) for f in dataclasses.fields(Job)},
                               parent_pid=os.getpid())
    results = run_jobs(jobs, workers=2)
    by_row = {r["row"]: r for r in results}
    assert sorted(by_row) == sorted(j.row for j in jobs)
    assert by_row[jobs[2].row]["status"] == "failed"
    assert "worker process died" in by_row[jobs[2].row]["reason"]
    assert all(r["status"] == "written" for row, r in by_row.items() if row != jobs[2].row)


@dataclasses.dataclass(frozen=True)
class SlowJob(Job):
    """A job that takes a while in a worker process, so it is still in flight when another dies."""

    parent_pid: int = 0

    def __getattribute__(self, name):
        if name == "source_file" and os.getpid() != object.__getattribute__(self, "parent_pid"):
            time.sleep(0.15)
        return super().__getattribute__(name)


def test_a_dying_worker_does_not_fail_the_single_images_in_flight_beside_it(tmp_path, data):
    """A dying worker breaks every future in flight; near the end of a run chunks are single
    images, and the innocent ones among them must be rendered, not reported as having killed it."""
    root, csv = data
    plan = plan_jobs(read_csv(csv)["Path"].tolist(), data_root=root, out_dir=tmp_path / OUT_NAME,
                     chain=Chain.from_names("identity", 1), name="identity_L1")

    def fields(job):
        return {f.name: getattr(job, f.name) for f in dataclasses.fields(Job)}

    jobs = [SlowJob(**fields(job), parent_pid=os.getpid()) for job in plan.jobs]
    jobs[1] = WorkerKillingJob(**fields(plan.jobs[1]), parent_pid=os.getpid())
    results = run_jobs(jobs, workers=2)  # 6 jobs, 2 workers: single-image chunks, all in flight
    by_row = {r["row"]: r for r in results}
    assert sorted(by_row) == sorted(j.row for j in jobs)
    assert by_row[jobs[1].row]["status"] == "failed"
    assert "worker process died" in by_row[jobs[1].row]["reason"]
    assert all(r["status"] == "written" for row, r in by_row.items() if row != jobs[1].row)


def test_plan_refuses_symlinked_folders_leading_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "study1").mkdir(parents=True)
    (outside / "study1" / "view1_frontal.jpg").write_bytes(b"x")
    inside = root / "CheXpert-v1.0-small" / "valid"
    (inside / "patient00002" / "study1").mkdir(parents=True)
    (inside / "patient00002" / "study1" / "view1_frontal.jpg").write_bytes(b"x")
    (inside / "patient00001").symlink_to(outside, target_is_directory=True)  # a folder leading out
    (inside / "patient00003").symlink_to(inside / "patient00002", target_is_directory=True)  # stays in
    out = tmp_path / "out" / OUT_NAME
    (out / "valid" / "synthetic" / "digital").mkdir(parents=True)
    (out / "valid" / "synthetic" / "digital" / "patient00003").symlink_to(outside, target_is_directory=True)
    paths = [f"CheXpert-v1.0-small/valid/patient0000{i}/study1/view1_frontal.jpg" for i in (1, 2, 3, 1)]
    plan = plan_jobs(paths, data_root=root, out_dir=out, chain=preset("digital"), name="digital")
    assert [job.row for job in plan.jobs] == [3]
    assert plan.jobs[0].source_file == str((inside / "patient00002/study1/view1_frontal.jpg").resolve())
    reasons = {e.row: e.reason for e in plan.errors}
    assert sorted(reasons) == [2, 4, 5]
    assert "resolves outside" in reasons[2] and "resolves outside" in reasons[5]
    assert reasons[4].startswith("output would be written outside --out")


def test_a_failed_background_write_fails_only_its_row(tmp_path, data):
    root, csv = data
    out = tmp_path / OUT_NAME
    plan = plan_jobs(read_csv(csv)["Path"].tolist(), data_root=root, out_dir=out,
                     chain=Chain.from_names("identity", 1), name="identity_L1")
    folders = [Path(job.output_file).parent for job in plan.jobs]
    blocked = next(job for job, folder in zip(plan.jobs, folders, strict=True) if folders.count(folder) == 1)
    Path(blocked.output_file).parent.parent.mkdir(parents=True)
    Path(blocked.output_file).parent.write_bytes(b"a file where the study folder should be")
    results = render_module.render_chunk(plan.jobs)
    assert [r["row"] for r in results] == [job.row for job in plan.jobs]
    failed = results[plan.jobs.index(blocked)]
    assert failed["status"] == "failed" and "Error" in failed["reason"]
    for job, result in zip(plan.jobs, results, strict=True):
        if job is blocked:
            continue
        assert result["status"] == "written" and "_pending" not in result
        record = result["record"]
        assert record["output_sha256"] == hashlib.sha256(Path(job.output_file).read_bytes()).hexdigest()
        assert record["source_sha256"] == hashlib.sha256(Path(job.source_file).read_bytes()).hexdigest()


def test_resume_after_an_interruption_before_anything_was_journaled(tmp_path, data, photographic_reference,
                                                                     monkeypatch):
    """Images written by the first chunk but not yet journaled when the run stops: --resume must
    still see an interrupted run of this command (not unknown files) and finish it."""
    root, csv = data
    out = tmp_path / OUT_NAME
    real_render_job = render_module.render_job
    calls = []

    def interrupted_in_first_chunk(job):
        calls.append(job.row)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_render_job(job)

    monkeypatch.setattr(run_module, "chunk_size", lambda n_jobs, workers: 6)  # first chunk: 3 images
    monkeypatch.setattr(render_module, "render_job", interrupted_in_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        synthesize(csv, root, out, preset("photographic"), seed=7, workers=1, progress=False)
    monkeypatch.setattr(render_module, "render_job", real_render_job)
    assert image_bytes(out)  # outputs on disk ...
    journals = sorted(out.rglob("*.partial"))
    assert journals and all(read_manifest(p) == [] for p in journals)  # ... no record yet

    with pytest.raises(DatasetExistsError, match="interrupted run.*--resume"):
        synthesize(csv, root, out, preset("photographic"), seed=7, workers=1, progress=False)
    result = synthesize(csv, root, out, preset("photographic"), seed=7, workers=1, resume=True, progress=False)
    assert (result.written, result.skipped, result.failed) == (6, 0, 0)
    assert tree_bytes(out) == tree_bytes(photographic_reference)


def test_resume_renders_again_when_the_source_path_changed(tmp_path, data):
    """The source path is part of the random key: the same bytes under another path must not be
    skipped, or the set would differ from a fresh run of this CSV."""
    root, csv = data
    rel = "valid/patient00001/study1/view1_frontal.jpg"
    moved = root / "moved-copy" / rel
    moved.parent.mkdir(parents=True, exist_ok=True)
    moved.write_bytes((root / PREFIX / rel).read_bytes())
    header = csv.read_text().splitlines()[0]
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text(f"{header}\n{PREFIX}/{rel},Female,68,Frontal,AP,,1.0,-1.0,0.0,x\n")
    second.write_text(f"{header}\nmoved-copy/{rel},Female,68,Frontal,AP,,1.0,-1.0,0.0,x\n")
    fresh = tmp_path / "fresh" / OUT_NAME
    synthesize(second, root, fresh, preset("digital"), workers=1, progress=False)

    out = tmp_path / "resumed" / OUT_NAME
    synthesize(first, root, out, preset("digital"), workers=1, progress=False)
    assert image_bytes(out) != image_bytes(fresh)  # the path changes the draw
    result = synthesize(second, root, out, preset("digital"), workers=1, resume=True, progress=False)
    assert (result.written, result.skipped) == (1, 0)
    assert tree_bytes(out) == tree_bytes(fresh)


def test_a_journal_line_torn_inside_a_character_is_skipped(tmp_path):
    """A crash can cut the journal's last line in the middle of a UTF-8 character (non-ASCII
    paths are written as they are): reading it back for --resume must skip that line, not fail."""
    records = [{"row": row, "source": f"CheXpert/valid/patiënt{row}/study1/view1_frontal.jpg", "chain": [],
                "output": f"out/{row}.jpg", "output_sha256": "0" * 64} for row in (2, 3, 4)]
    journal_path = tmp_path / "set.manifest.jsonl.partial"
    journal = Journal(journal_path)
    journal.append(records[:1])
    journal.close()
    torn = record_line(records[1]).encode()
    with open(journal_path, "ab") as fh:
        fh.write(torn[:torn.index("ë".encode()) + 1])  # half of the two-byte "ë"
    journal = Journal(journal_path)  # the resumed run appends after the torn line
    journal.append(records[2:])
    journal.close()
    assert read_manifest(journal_path, lenient=True) == [records[0], records[2]]


def test_a_symlinked_out_dir_keeps_its_name_in_the_label_paths(tmp_path, data):
    """Label paths are relative to the parent of OUT_DIR as given: an OUT_DIR that is a symlink
    (a dataset kept on another disk) still starts them with its own name, not the target's."""
    root, csv = data
    storage = tmp_path / "storage" / "volume-0001"
    storage.mkdir(parents=True)
    out = tmp_path / "datasets" / OUT_NAME
    out.parent.mkdir()
    out.symlink_to(storage, target_is_directory=True)
    synthesize(csv, root, out, Chain.from_names("identity", 1), split="valid", workers=1, progress=False)
    labels = read_csv(out / "valid/synthetic/identity_L1.csv")
    assert labels["Path"].str.startswith(f"{OUT_NAME}/valid/synthetic/identity_L1/").all()
    assert all((out.parent / p).is_file() for p in labels["Path"])
    manifest = read_manifest(out / "valid/synthetic/identity_L1.manifest.jsonl")
    assert [r["output"] for r in manifest] == labels["Path"].tolist()
    assert sorted(os.listdir(storage)) == ["valid"]


def test_resume_with_unreadable_sources_keeps_the_outputs_it_recorded(tmp_path, data, capsys):
    """A wrong or unmounted --data-root on --resume must not wipe a finished set: outputs the
    manifest vouches for (same paths, same sha256 on disk) are kept and the run says so."""
    from chexphoto.synthesis.run import print_summary

    root, csv = data
    out = tmp_path / OUT_NAME
    first = synthesize(csv, root, out, preset("digital"), workers=1, progress=False)
    before = tree_bytes(out)
    empty_root = tmp_path / "not-mounted"
    empty_root.mkdir()
    result = synthesize(csv, empty_root, out, preset("digital"), workers=1, resume=True, progress=False)
    assert (result.written, result.skipped, result.failed) == (0, first.written, 0)
    assert tree_bytes(out) == before
    print_summary(result)
    assert "could not be read now (check --data-root)" in capsys.readouterr().out
