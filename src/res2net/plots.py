"""Pictures people would rather look at than read: training curves and confusion matrices.

matplotlib (the ``plot`` extra) draws them headless (the Agg backend: no display needed). Where it is not
installed, :func:`plotting_available` says so and callers note it once instead of failing: a picture is a
convenience, never a reason for a run to stop.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UserError

PLOT_EXTRA = "pip install 'res2net[plot]'"
CURVES = "curves.png"


def plotting_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch rows of a run folder's ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no metrics.jsonl)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _save(figure: Any, path: Path) -> None:
    """Write the PNG atomically, so a reader never sees half a picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    figure.savefig(partial, dpi=110)
    os.replace(partial, path)


#: The validation score a run's curves show, first found wins: classification, detection, segmentation, saliency.
SCORES = (("val_top1", "validation top-1 (%)"), ("bbox_map", "validation box mAP"), ("miou", "validation mIoU"),
          ("max_f", "validation max F-measure"))


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(row["epoch"], row[key]) for row in rows if isinstance(row.get(key), (int, float))]
    return [e for e, _ in points], [v for _, v in points]


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Each run's legend label: its folder name, with as many parent folders as it takes to tell apart runs of
    the same name (``probe/k20_s0`` and ``recipe/k20_s0``, not two ``k20_s0``)."""
    parts = [run_dir.resolve().parts for run_dir in run_dirs]
    distinct = set(parts)
    depth = 1
    while depth < max(map(len, parts), default=1) and len({p[-depth:] for p in distinct}) < len(distinct):
        depth += 1
    return ["/".join(p[-depth:]) for p in parts]


def plot_runs(run_dirs: Sequence[Path], output: Path) -> Path:
    """Loss (training solid, validation dashed where recorded), the validation score and the learning rate per
    epoch, one colour per run, named once in a legend under the plots (run names can be long); classification
    and detection runs alike."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    figure, (loss_axis, score_axis, lr_axis) = plt.subplots(1, 3, figsize=(13, 3.8))
    score_title = "validation score"
    runs: list[Line2D] = []
    any_val_loss = False
    for run_dir, label in zip(run_dirs, run_labels(run_dirs), strict=True):
        rows = read_metrics(run_dir)
        loss_key = "train_loss" if any("train_loss" in row for row in rows) else "loss"
        line = loss_axis.plot(*_series(rows, loss_key), marker=".")[0]
        colour = line.get_color()
        runs.append(Line2D([], [], color=colour, marker=".", label=label))
        if any("val_loss" in row for row in rows):
            any_val_loss = True
            loss_axis.plot(*_series(rows, "val_loss"), linestyle="--", marker=".", color=colour)
        key, score_title = next(((k, t) for k, t in SCORES if any(k in row for row in rows)), (None, score_title))
        if key is not None:
            score_axis.plot(*_series(rows, key), marker=".", color=colour)
        lr_axis.plot(*_series(rows, "lr"), marker=".", color=colour)
    for axis, title, ylabel in ((loss_axis, "loss", "loss"), (score_axis, score_title, ""),
                                (lr_axis, "learning rate (end of epoch)", "lr")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    if any_val_loss:
        loss_axis.legend(handles=[Line2D([], [], color="grey", label="training"),
                                  Line2D([], [], color="grey", linestyle="--", label="validation")], fontsize=7)
    if len(runs) > 1:
        columns = min(len(runs), 3)
        rows_of_legend = -(-len(runs) // columns)
        figure.legend(handles=runs, loc="lower center", ncol=columns, fontsize=8, frameon=False)
        figure.tight_layout(rect=(0, 0.06 * rows_of_legend + 0.02, 1, 1))
    else:
        figure.tight_layout()
    _save(figure, output)
    plt.close(figure)
    return output


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], output: Path,
                   title: str = "") -> Path:
    """The confusion matrix normalised by row (each true class sums to 1), with the class names."""
    plt = _pyplot()
    count = len(confusion)
    rates = [[cell / max(1, sum(row)) for cell in row] for row in confusion]
    side = min(24.0, max(5.0, 0.45 * count + 2))
    figure, axis = plt.subplots(figsize=(side, side * 0.9))
    image = axis.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    labels = list(class_names)[:count] + [str(i) for i in range(len(class_names), count)]
    if count <= 50:
        axis.set_xticks(range(count), labels, rotation=90 if max(map(len, labels)) > 3 else 0)
        axis.set_yticks(range(count), labels)
        for row in range(count):
            for column in range(count):
                if rates[row][column] >= 0.005:
                    axis.text(column, row, f"{rates[row][column]:.2f}".lstrip("0") if rates[row][column] < 1 else "1",
                              ha="center", va="center", fontsize=7,
                              color="white" if rates[row][column] > 0.5 else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    correct = sum(confusion[i][i] for i in range(count))
    total = sum(map(sum, confusion))
    accuracy = f"top-1 {100 * correct / total:.2f}% of {total} images" if total else "no images"
    axis.set_title(f"{title}: {accuracy}" if title else accuracy)
    figure.tight_layout()
    _save(figure, output)
    plt.close(figure)
    return output


def write_curves(run_dir: Path) -> Path | None:
    """``run_dir/curves.png`` from its metrics so far (None where matplotlib is not installed)."""
    return plot_runs([run_dir], run_dir / CURVES) if plotting_available() else None


def run_plot(args: Any) -> int:
    """``res2net plot RUN_DIR [RUN_DIR ...] [--output FILE]``."""
    if not plotting_available():
        raise UserError(f"res2net plot draws with matplotlib: {PLOT_EXTRA}")
    runs = [Path(d) for d in args.run_dirs]
    output = Path(args.output) if args.output else (runs[0] / CURVES if len(runs) == 1 else Path(CURVES))
    print(f"wrote {plot_runs(runs, output)}")
    return 0
