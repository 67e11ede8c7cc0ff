"""The stages' plot CSVs (plots/*.csv, `dvc plots show`) drawn as PNGs into reports/ with matplotlib,
headless and offline (DVC's HTML plots load Vega from a CDN and stay blank without a network).

One figure per CSV, one panel per group of columns as in dvc.yaml's `plots:`; blank cells (a value
a run did not have) are left out of their line. A CSV without rows gives a figure that says so; a
CSV with rows but without the expected columns raises `PlotError`."""
from __future__ import annotations

import csv
import io
import math
import posixpath
from dataclasses import dataclass

from ..layout import Layout
from ..storage import atomic_write_bytes, read_text


class PlotError(ValueError):
    """A plot CSV that cannot be drawn (expected columns missing, a cell that is not a number)."""


@dataclass(frozen=True)
class PlotSpec:
    title: str
    x: str
    panels: tuple[tuple[str, ...], ...]  # the y columns of each panel
    bars: bool = False  # x is a category (one bar per row), not a step


PLOTS = {
    "syncnet": PlotSpec("expert SyncNet", "step", (("train_loss", "val_loss", "average_val_loss"),
                                                   ("train_acc", "val_acc", "val_acc_clear", "average_val_acc"))),
    "train": PlotSpec("backbone losses", "step", (("d_loss", "g_adv", "g_total"), ("l1", "sync", "vgg"))),
    "demo_check": PlotSpec("demo check, val split", "step", (
        ("mouth_psnr", "mouth_psnr_copy_reference", "mouth_psnr_open", "mouth_psnr_open_copy_reference",
         "mouth_psnr_swapped_audio"),
        ("mouth_opening_corr", "mouth_opening_corr_swapped_audio", "mouth_opening_gain", "sync_score",
         "sync_score_shuffled_audio"))),
    "eval": PlotSpec("evaluation, test split", "model", (("ssim",), ("psnr",), ("own_sync",)), bars=True),
}


def _number(path: str, row: int, column: str, cell: str) -> float:
    if cell is None or cell.strip() == "":
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise PlotError(f"{path}: row {row}, column {column!r}: {cell!r} is not a number") from None


def read_columns(path: str, spec: PlotSpec) -> tuple[list[str], dict[str, list[float]]]:
    """The x column (as text) and the y columns (floats, NaN for blank cells) of a plot CSV."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    rows = list(reader)
    wanted = [spec.x, *(c for panel in spec.panels for c in panel)]
    missing = [c for c in wanted if c not in (reader.fieldnames or [])]
    if rows and missing:
        raise PlotError(f"{path}: no column(s) {', '.join(missing)} (has: {', '.join(reader.fieldnames or [])})")
    xs = [r[spec.x] for r in rows]
    ys = {c: [_number(path, i + 2, c, r[c]) for i, r in enumerate(rows)] for c in wanted[1:] if rows}
    return xs, ys


def render_png(csv_path: str, spec: PlotSpec) -> bytes:
    """The figure of one plot CSV as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    xs, ys = read_columns(csv_path, spec)
    n = len(spec.panels)
    fig = Figure(figsize=(5.0 * n, 3.6) if not spec.bars else (3.6 * n, 0.6 + 0.45 * max(len(xs), 2)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    name = posixpath.basename(str(csv_path))
    fig.suptitle(f"{spec.title} ({name})" if xs else f"{spec.title}: {name} has no rows yet")
    for ax, panel in zip(fig.subplots(1, n, squeeze=False)[0], spec.panels):
        ax.grid(True, alpha=0.3)
        if not xs:
            continue
        if spec.bars:
            (col,) = panel
            vals = ys[col]
            ax.barh(range(len(xs)), [0.0 if math.isnan(v) else v for v in vals], color="tab:blue")
            ax.set_yticks(range(len(xs)), xs)
            ax.invert_yaxis()
            for i, v in enumerate(vals):  # the value at the bar's end; a dash where there is none
                ax.annotate("—" if math.isnan(v) else f"{v:.3g}", (0.0 if math.isnan(v) else v, i), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=8)
            ax.margins(x=0.2)
            ax.set_title(col)
            continue
        steps = [_number(csv_path, i + 2, spec.x, x) for i, x in enumerate(xs)]
        for col in panel:
            pts = [(s, v) for s, v in zip(steps, ys[col]) if not math.isnan(v)]
            if pts:
                few = len(pts) <= 2  # a point or two (a pass's exported average): markers, no line
                ax.plot(*zip(*pts), linestyle="none" if few else "-", marker="o" if few else "." if len(pts) < 30 else None,
                        label=col)
            else:
                ax.plot([], [], label=f"{col} (no values)")
        ax.set_xlabel(spec.x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_report_plot(csv_path: str, png_path: str, spec: PlotSpec) -> str:
    """Draw `csv_path` into `png_path` (written atomically). Returns png_path."""
    atomic_write_bytes(png_path, render_png(csv_path, spec))
    return png_path


def write_report_plots(layout: Layout, *names: str) -> list[str]:
    """reports/<name>.png of plots/<name>.csv for each name of `PLOTS`. Returns the PNG paths."""
    return [write_report_plot(layout.plots(f"{n}.csv"), layout.reports(f"{n}.png"), PLOTS[n]) for n in names]
