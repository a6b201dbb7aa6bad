"""faster-coco-eval against pycocotools on the same predictions: which evaluator to use.

Predictions are the digits-detection validation set's ground truth with jittered boxes,
random scores and false positives (mAP well below 1, as for a real detector), 100 per image
at most. Both evaluators run alternately; the medians are printed with their mAP, which
must agree.

    python benchmarks/bench_coco_eval.py --data data/digits_detection --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from res2net.detection.coco_eval import coco_evaluate
from res2net.detection.data import annotation_file
from res2net.speed.results import add_record_argument, record_if_asked


def jittered_results(gt: dict, rng: np.random.Generator, extra_per_image: int) -> list[dict]:
    results = []
    categories = [c["id"] for c in gt["categories"]]
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        dx, dy = rng.normal(0, 0.1, size=2) * (w, h)
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "bbox": [x + dx, y + dy, w * rng.uniform(0.85, 1.15), h * rng.uniform(0.85, 1.15)],
                        "score": float(rng.uniform(0.3, 1.0))})
    for image in gt["images"]:
        for _ in range(extra_per_image):
            x, y = rng.uniform(0, image["width"] - 20, size=2)
            results.append({"image_id": image["id"], "category_id": int(rng.choice(categories)),
                            "bbox": [float(x), float(y), 24.0, 24.0], "score": float(rng.uniform(0, 0.6))})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/digits_detection"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extra-per-image", type=int, default=90)
    add_record_argument(parser, "coco_eval")
    args = parser.parse_args()
    path = annotation_file(args.data, args.split)
    results = jittered_results(json.loads(path.read_text()), np.random.default_rng(0), args.extra_per_image)
    times: dict[str, list[float]] = {"faster_coco_eval": [], "pycocotools": []}
    scores: dict[str, float] = {}
    for _ in range(args.repeats):
        for backend in times:
            start = time.perf_counter()
            scores[backend] = coco_evaluate(path, results, "bbox", backend=backend)["map"]  # type: ignore[arg-type]
            times[backend].append(time.perf_counter() - start)
    print(f"{len(results)} detections on {path}")
    for backend, values in times.items():
        print(f"{backend:18s} median {statistics.median(values):.3f} s  mAP {scores[backend]:.4f}")
    ratio = statistics.median(times["pycocotools"]) / statistics.median(times["faster_coco_eval"])
    print(f"pycocotools / faster_coco_eval: {ratio:.2f}x")
    record_if_asked(args, {"detections": len(results), "median_seconds": {b: round(statistics.median(v), 4) for b, v in
                                                                          times.items()},
                           "map": scores, "pycocotools_over_faster_coco_eval": round(ratio, 3)})


if __name__ == "__main__":
    main()
