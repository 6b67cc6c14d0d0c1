"""The HTML report and the evaluate / compare / report commands (in-process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from chexphoto.cli import main
from chexphoto.evaluation import report, robustness
from test_evaluation_metrics import TASKS, make_data, write_csv
from test_evaluation_robustness import fake_result


@pytest.fixture
def files(tmp_path):
    labels, preds = make_data(40, seed=1, signal=0.5)
    rng = np.random.default_rng(0)
    photo = preds.assign(Path=preds["Path"].str.replace("CheXpert-v1.0", "CheXphoto-v1.0/natural", regex=False))
    photo[TASKS] = np.clip(0.6 * preds[TASKS].to_numpy() + 0.4 * rng.random((len(preds), len(TASKS))), 0, 1)
    bench = tmp_path / "bench"
    results = {(t, lv): fake_result(0.9 - 0.05 * lv * (i + 1)) for i, t in enumerate(["blur", "glare"]) for lv in (1, 2, 3)}
    robustness.write(bench, robustness.build_table(fake_result(0.92), results))
    return {"labels": write_csv(labels, tmp_path / "valid.csv"), "xray": write_csv(preds, tmp_path / "xray.csv"),
            "photo": write_csv(photo, tmp_path / "photo.csv"), "bench": str(bench), "tmp": tmp_path}


def referenced_files(index) -> list[str]:
    text = index.read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert not any(r.startswith(("http:", "https:", "//", "/")) for r in refs), refs
    assert "<script" not in text and "@import" not in text
    embedded = [r for r in refs if r.startswith("data:image/png;base64,")]
    linked = [r for r in refs if not r.startswith("data:")]
    # every figure is embedded (the page alone is the report) and linked to its file beside it
    assert len(embedded) == len([r for r in linked if r.endswith(".png")])
    return linked


def test_report_writes_self_contained_page(files):
    out = files["tmp"] / "report"
    index = report.build_report(files["labels"], {"x-ray": files["xray"], "photo": files["photo"]}, out,
                                benchmark_dir=files["bench"], bootstrap=100, seed=0)
    assert index == out / "index.html"
    refs = referenced_files(index)
    pngs = sorted(r for r in refs if r.endswith(".png"))
    assert pngs == ["auroc_by_task.png", "differences.png", "robustness_drop.png", "robustness_severity.png"]
    for name in refs:
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = index.read_text()
    assert "photo &minus; x-ray" in text and "Cardiomegaly" in text and "glare" in text
    data = json.loads((out / "report.json").read_text())
    assert data["comparison"]["reference"] == "x-ray" and data["robustness"]["transforms"] == ["blur", "glare"]


def test_report_single_condition_and_benchmark_only(files):
    index = report.build_report(files["labels"], {"x-ray": files["xray"]}, files["tmp"] / "one", bootstrap=50)
    assert sorted(r for r in referenced_files(index) if r.endswith(".png")) == ["auroc_by_task.png"]
    # same inputs and seed: same bytes
    before = {p.name: p.read_bytes() for p in index.parent.iterdir()}
    report.build_report(files["labels"], {"x-ray": files["xray"]}, files["tmp"] / "one", bootstrap=50)
    assert {p.name: p.read_bytes() for p in index.parent.iterdir()} == before
    index = report.build_report(None, {}, files["tmp"] / "bench_only", benchmark_dir=files["bench"])
    assert sorted(r for r in referenced_files(index) if r.endswith(".png")) == [
        "robustness_drop.png", "robustness_severity.png"]
    with pytest.raises(ValueError, match="nothing to report"):
        report.build_report(None, {}, files["tmp"] / "none")


def test_evaluate_command_json(files, capsys):
    assert main(["evaluate", "--labels", files["labels"], "--predictions", files["photo"], "--bootstrap", "100",
                 "--seed", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["level"] == "image" and set(result["tasks"]) == set(TASKS)
    assert set(result["mean"]) == {"auroc", "ci"} and len(result["mean"]["ci"]) == 2
    assert main(["evaluate", "--labels", files["labels"], "--predictions", files["photo"], "--level", "study",
                 "--bootstrap", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["level"] == "study"


def test_evaluate_command_table(files, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["evaluate", "--labels", files["labels"], "--predictions", files["xray"], "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "Pleural Effusion" in out and "Mean (5 tasks)" in out and "95% CI" in out


def test_evaluate_command_errors_are_one_line(files, capsys):
    bad = files["tmp"] / "bad.csv"
    bad.write_text(open(files["xray"]).read().replace("patient10003/", "patient99999/", 1))
    assert main(["evaluate", "--labels", files["labels"], "--predictions", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "match no labelled image" in err and "patient99999" in err
    assert main(["evaluate", "--labels", files["labels"], "--predictions", str(files["tmp"] / "nope.csv")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_compare_command(files, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "140")
    argv = ["compare", "--labels", files["labels"], "--predictions", f"xray={files['xray']}",
            "--predictions", f"photo={files['photo']}", "--bootstrap", "100"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reference"] == "xray" and result["differences"][0]["condition"] == "photo"
    assert result["differences"][0]["mean"]["difference"] < 0
    assert main(argv) == 0
    assert "photo − xray" in capsys.readouterr().out
    assert main(argv[:5] + ["--bootstrap", "10"]) == 2
    assert "at least two" in capsys.readouterr().err


def test_report_command(files, capsys):
    out = files["tmp"] / "rep"
    assert main(["report", "--labels", files["labels"], "--predictions", f"xray={files['xray']}",
                 "--benchmark", files["bench"], "--out", str(out), "--bootstrap", "50"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert (out / "robustness_severity.png").is_file()
    assert main(["report", "--out", str(out)]) == 2
    assert "--benchmark" in capsys.readouterr().err


def test_commands_work_without_torch(files):
    """evaluate / compare / report run with torch made unimportable (it is an optional extra)."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "from chexphoto.cli import main\n"
        f"L, X, P, B, O = {files['labels']!r}, {files['xray']!r}, {files['photo']!r}, {files['bench']!r}, "
        f"{str(files['tmp'] / 'nt')!r}\n"
        "assert main(['evaluate', '--labels', L, '--predictions', P, '--bootstrap', '10', '--json']) == 0\n"
        "assert main(['compare', '--labels', L, '--predictions', 'a=' + X, '--predictions', 'b=' + P,"
        " '--bootstrap', '10', '--json']) == 0\n"
        "assert main(['report', '--labels', L, '--predictions', 'a=' + X, '--benchmark', B, '--out', O,"
        " '--bootstrap', '10']) == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (files["tmp"] / "nt" / "index.html").is_file()
