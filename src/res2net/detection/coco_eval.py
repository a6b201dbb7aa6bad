"""COCO mAP through a well-kept evaluator: faster-coco-eval when installed, else pycocotools.

Both compute the same COCO metrics (faster-coco-eval is a C++ reimplementation of pycocotools'
``COCOeval`` whose results match it; ``tests/test_detection.py`` checks that on the demo set).
faster-coco-eval is preferred because it is faster on the same predictions (measured by
``benchmarks/bench_coco_eval.py``; figures in docs/performance.md). Results use COCO's summary names:
``map`` (IoU .50:.95), ``map_50``, ``map_75``, ``map_small`` / ``map_medium`` / ``map_large``,
``mar_100``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import UserError

Backend = Literal["auto", "faster_coco_eval", "pycocotools"]
IouType = Literal["bbox", "segm"]
SUMMARY_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
                 "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def available_backend(requested: Backend = "auto") -> str:
    """The evaluator to use: the requested one, or the fastest installed."""
    candidates = ("faster_coco_eval", "pycocotools") if requested == "auto" else (requested,)
    for name in candidates:
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    raise UserError("COCO evaluation needs faster-coco-eval or pycocotools: pip install 'res2net[detection]'")


def coco_evaluate(
    annotation_file: Path, results: Sequence[dict[str, Any]], iou_type: IouType = "bbox", backend: Backend = "auto"
) -> dict[str, float | None]:
    """COCO summary metrics of ``results`` (COCO result dicts: image_id, category_id, score, bbox
    [x, y, w, h] and for ``segm`` an RLE ``segmentation``) against ``annotation_file``.

    No detections at all scores 0 everywhere (COCO's tools refuse an empty result list); a
    metric without ground truth (no "large" objects, say), which COCO reports as -1, is None.
    """
    if not results:
        return dict.fromkeys(SUMMARY_NAMES, 0.0)
    name = available_backend(backend)
    ground_truth = json.loads(Path(annotation_file).read_text())
    with contextlib.redirect_stdout(io.StringIO()):  # both print progress and the summary table
        if name == "faster_coco_eval":
            from faster_coco_eval import COCO, COCOeval_faster

            gt = COCO(ground_truth)
            evaluator = COCOeval_faster(gt, gt.loadRes(copy.deepcopy(list(results))), iouType=iou_type)
        else:
            from pycocotools.coco import COCO as PyCOCO
            from pycocotools.cocoeval import COCOeval

            gt = PyCOCO()
            gt.dataset = ground_truth
            gt.createIndex()
            evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(list(results))), iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: float(value) if value >= 0 else None for key, value in zip(SUMMARY_NAMES, evaluator.stats)}
