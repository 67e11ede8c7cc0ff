"""The plot CSVs drawn as PNGs (stages/report_plots.py): written, valid, and a clear error for a CSV
without the expected columns."""
from __future__ import annotations

import cv2
import pytest

from stylesync.stages.outputs import write_plot
from stylesync.stages.report_plots import PLOTS, PlotError, write_report_plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _image(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_learning_curve_png(tmp_path):
    csv, png = tmp_path / "plots" / "syncnet.csv", tmp_path / "reports" / "syncnet.png"
    rows = [{"step": s, "train_loss": 0.7 - 0.01 * s, "val_loss": 0.72 - 0.008 * s, "train_acc": 0.5 + 0.01 * s,
             "val_acc": 0.5 + 0.008 * s, "val_acc_clear": ""} for s in range(0, 40, 4)]  # a blank column: no line
    rows[-1] |= {"average_val_loss": 0.4, "average_val_acc": 0.85}  # one point: the exported weight average
    write_plot(str(csv), rows, ["step", "train_loss", "val_loss", "train_acc", "val_acc", "val_acc_clear",
                                "average_val_loss", "average_val_acc"])
    assert write_report_plot(str(csv), str(png), PLOTS["syncnet"]) == str(png)
    _image(png)
    assert not list(png.parent.glob(".*"))  # no temporary file left beside it


def test_bars_and_an_empty_curve(tmp_path):
    csv, png = tmp_path / "eval.csv", tmp_path / "eval.png"
    write_plot(str(csv), [{"model": "backbone", "ssim": 0.61, "psnr": 24.5, "own_sync": ""},
                          {"model": "personal/id1", "ssim": 0.68, "psnr": 26.0, "own_sync": 0.4}],
               ["model", "ssim", "psnr", "own_sync"])
    write_report_plot(str(csv), str(png), PLOTS["eval"])
    _image(png)
    empty = tmp_path / "demo_check.csv"
    write_plot(str(empty), [])  # a run without checkpoints: the header alone
    write_report_plot(str(empty), str(tmp_path / "demo_check.png"), PLOTS["demo_check"])
    _image(tmp_path / "demo_check.png")


def test_missing_columns_fail_clearly(tmp_path):
    csv, png = tmp_path / "train.csv", tmp_path / "train.png"
    write_plot(str(csv), [{"step": 1, "d_loss": 1.3, "g_adv": 0.7}])
    with pytest.raises(PlotError, match=r"train\.csv: no column\(s\) g_total, l1, sync, vgg \(has: step, d_loss, g_adv\)"):
        write_report_plot(str(csv), str(png), PLOTS["train"])
    write_plot(str(csv), [{"step": 1, "d_loss": "x", "g_adv": 0.7, "g_total": 1, "l1": 1, "sync": 1, "vgg": ""}])
    with pytest.raises(PlotError, match=r"row 2, column 'd_loss': 'x' is not a number"):
        write_report_plot(str(csv), str(png), PLOTS["train"])
    assert not png.exists()


def test_evaluate_writes_and_logs_its_reports(tmp_path):
    """The evaluate stage's report step: table1.md, plots/eval.csv, reports/eval.png, all in its MLflow run."""
    from helpers import stage_runs

    from stylesync.config import Params
    from stylesync.eval.evaluate import METRICS
    from stylesync.layout import Layout
    from stylesync.stages import evaluate

    p = Params()
    p.paths.plots, p.paths.reports = str(tmp_path / "plots"), str(tmp_path / "reports")
    p.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    vals = {m: None for m in METRICS} | {"ssim": 0.6, "psnr": 24.0, "own_sync": 0.3, "clips": 2}
    result = {"models": {"backbone": vals, "personal": vals | {"ssim": 0.7}}, "split": "test", "protocol": "p",
              "missing": {"lmd": "no landmarks"}, "lmd_landmarks": None}
    evaluate._log(p, result, evaluate._report(Layout(p.paths), result))
    _image(tmp_path / "reports" / "eval.png")
    (r,) = stage_runs(p.tracking.tracking_uri, "evaluate")
    assert {"table1.md", "eval.png", "eval.json"} <= r.artifacts
    assert r.data.metrics["personal/ssim"] == 0.7 and r.data.params["evaluate.split"] == "test"
