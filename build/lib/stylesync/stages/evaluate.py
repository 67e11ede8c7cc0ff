"""Stage `evaluate`: the Table 1 protocol (eval/evaluate.py) -> metrics/eval.json, reports/table1.md,
plots/eval.csv, its PNG reports/eval.png and an MLflow run with every model's metrics and the reports."""
from __future__ import annotations

from ..config import Params, to_dict
from ..eval.evaluate import METRICS, evaluate
from ..storage import atomic_write_bytes, write_json
from ..layout import Layout
from ..runtime import tracking
from .outputs import write_plot
from .report_plots import write_report_plots


NAMES = {"ssim": "SSIM ↑", "psnr": "PSNR ↑", "lmd": "LMD ↓", "sync_conf": "Sync_conf ↑", "lse_d": "LSE-D ↓",
         "av_offset": "AV offset", "d_id": "D_ID ↑", "id_dlib_cos": "ID dlib cos ↑", "id_dlib_l2": "ID dlib L2 ↓",
         "id_dlib_same": "ID dlib same ↑", "own_sync": "own sync ↑", "own_abs_offset": "own abs offset ↓",
         "mouth_psnr": "mouth PSNR ↑", "mouth_opening_corr": "opening corr ↑", "mouth_opening_gain": "opening gain (1)",
         "ssim_raw_crop": "SSIM raw crop", "psnr_raw_crop": "PSNR raw crop"}
THREE_DECIMALS = {"ssim", "ssim_raw_crop", "d_id", "id_dlib_cos", "id_dlib_l2", "id_dlib_same", "own_sync",
                  "mouth_opening_corr", "mouth_opening_gain"}


def table_markdown(result: dict) -> str:
    lines = ["| Method | " + " | ".join(NAMES[m] for m in METRICS) + " | clips |",
             "|---" * (len(METRICS) + 2) + "|"]
    for model, vals in result["models"].items():
        cells = [("—" if vals.get(m) is None else f"{vals[m]:.3f}" if m in THREE_DECIMALS else f"{vals[m]:.2f}")
                 for m in METRICS]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {vals['clips']} |")
    if result["missing"]:
        lines += ["", "Missing metrics (— in the table):", ""] + [f"- {k}: {v}" for k, v in sorted(result["missing"].items())]
    return "\n".join(lines) + "\n"


def _report(layout: Layout, result: dict) -> list[str]:
    """reports/table1.md, plots/eval.csv and its PNG. Returns the report files."""
    body = ("# Self-reconstruction results (paper Table 1 / Table 3 protocol)\n\n"
            f"Split: {result['split']}. {result['protocol']}.\n\n" + table_markdown(result))
    atomic_write_bytes(layout.reports("table1.md"), body.encode())
    rows = [{"model": model, **{m: "" if vals.get(m) is None else round(vals[m], 5) for m in METRICS}}
            for model, vals in result["models"].items()]
    write_plot(layout.plots("eval.csv"), rows, ["model", *METRICS])
    return [layout.reports("table1.md"), *write_report_plots(layout, "eval")]


def _log(params: Params, result: dict, reports: list[str]) -> None:
    with tracking.run(params.tracking, "evaluate", "table1", system_metrics=False) as active:
        if active is None:
            return
        import mlflow

        tracking.log_params({"evaluate": to_dict(params.evaluate)})
        for model, vals in result["models"].items():
            mlflow.log_metrics({f"{model}/{m}": v for m, v in vals.items() if isinstance(v, (int, float)) and v is not None})
        mlflow.log_dict(result, "eval.json")
        for f in reports:
            mlflow.log_artifact(f)
        for k, v in result["missing"].items():
            mlflow.set_tag(f"missing.{k}", v[:250])


def metrics_only(result: dict) -> dict:
    """What `dvc metrics show` should list: the numbers per model, the split and the landmark model
    by name; the protocol and the reasons for missing metrics are prose (reports/table1.md)."""
    return {"models": result["models"], "split": result["split"], "lmd_landmarks": result["lmd_landmarks"],
            "missing": sorted(result["missing"])}


def run(params: Params, args) -> int:
    layout = Layout(params.paths)
    r = evaluate(params)
    write_json(layout.metrics("eval.json"), metrics_only(r))
    _log(params, r, _report(layout, r))
    print(table_markdown(r))
    return 0
