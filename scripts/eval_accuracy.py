#!/usr/bin/env python3
"""Accuracy of the int8 TFLite SqueezeNets against their float ONNX references.

For each model: top-1 / top-5 of the int8 model (LiteRT) and of the float reference
(onnxruntime on the source ONNX), top-1 agreement, mean |Δp| (L1 distance between the two
probability vectors, averaged), the paired 95% interval of the top-1 difference, and the int8
file size. Images: the `eval` split of the ImageNet sample (never the calibration split).

`--crops` scores 10 crops per image (4 corners and the centre of the image resized to the
model's shorter side, each also mirrored) instead of the single centre crop, which gives 10x
the samples: 800 images alone cannot resolve half a point (paired interval about ±0.8).

    .venv/bin/python scripts/eval_accuracy.py [--crops] [--models squeezenet1.1 ...]
    .venv/bin/python scripts/eval_accuracy.py --tflite some.tflite --models squeezenet1.1

The models are built into the cache first if needed (calibration split only).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MODELS = ("squeezenet1.1", "squeezenet1.1-caffe", "squeezenet1.0-dc")


def eval_images(folder: Path) -> list[tuple[Path, int]]:
    with (folder / "labels.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "eval"]
    return sorted((folder / r["filename"], int(r["class_index"])) for r in rows)


def crops_of(image: npt.NDArray[np.uint8], size: tuple[int, int], shorter: int) -> Iterator[Any]:
    """Yield the 10 crops: corners and centre of the shorter-side-resized image, and mirrors."""
    h, w = image.shape[:2]
    scale = shorter / min(h, w)
    if scale != 1.0:
        # cv2 types its result as any numeric array; uint8 in gives uint8 out.
        image = cast(
            npt.NDArray[np.uint8],
            cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA),
        )
    h, w = image.shape[:2]
    ch, cw = size
    for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)):
        crop = np.ascontiguousarray(image[top : top + ch, left : left + cw])
        yield crop
        yield np.ascontiguousarray(crop[:, ::-1])


def scores(clf: Any, crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Probabilities of one ready crop, through the Classifier's own stages.

    The classifier's card must have ``resize_shorter=0`` (see `crop_ready`), so its
    preprocessing takes the crop as it is and only converts it.
    """
    probs: npt.NDArray[np.float32] = clf.probabilities(clf.runtime.run(clf.preprocess(crop)))
    return probs


def crop_ready(clf: Any) -> Any:
    """Tell `clf` its inputs are already cropped to its input size (no further resize/crop)."""
    clf.card = dataclasses.replace(clf.card, resize_shorter=0)
    return clf


def measure(model: str, tflite: Path | None, images: Path, use_crops: bool, threads: int) -> dict[str, Any]:
    from edge_sdk.classifier import Classifier
    from edge_sdk.models import store
    from edge_sdk.preprocess import read_image, resize_crop

    quant = Classifier.from_model(tflite or model, runtime="litert", num_threads=threads)
    if tflite is not None and quant.card.name != model:
        print(f"note: {tflite} card says {quant.card.name}", file=sys.stderr)
    ref = Classifier.from_model(model, runtime="onnxruntime", precision="float", num_threads=threads)
    card = ref.card
    crop_ready(quant)
    crop_ready(ref)
    top1_q, top1_f, top5_q, top5_f, agree, dp = [], [], [], [], [], []
    start = time.monotonic()
    for path, label in eval_images(images):
        image = read_image(path)
        crops = (
            list(crops_of(image, card.input_size, card.resize_shorter))
            if use_crops
            else [resize_crop(image, card.input_size, card.resize_shorter)]
        )
        for crop in crops:
            pq, pf = scores(quant, crop), scores(ref, crop)
            # Ties rank the lower class index first, as Classifier.top does.
            rq = np.lexsort((np.arange(pq.size), -pq))
            rf = np.lexsort((np.arange(pf.size), -pf))
            top1_q.append(rq[0] == label)
            top1_f.append(rf[0] == label)
            top5_q.append(label in rq[:5])
            top5_f.append(label in rf[:5])
            agree.append(rq[0] == rf[0])
            dp.append(float(np.abs(pq - pf).sum()))
    n = len(top1_q)
    d = np.asarray(top1_q, float) - np.asarray(top1_f, float)
    half = 1.96 * d.std(ddof=1) / math.sqrt(n)
    size_path = tflite or store.built_path(model, "tflite", "int8")
    return {
        "model": model,
        "samples": n,
        "int8_top1": 100 * float(np.mean(top1_q)),
        "float_top1": 100 * float(np.mean(top1_f)),
        "int8_top5": 100 * float(np.mean(top5_q)),
        "float_top5": 100 * float(np.mean(top5_f)),
        "delta_top1": 100 * float(d.mean()),
        "delta_ci95": 100 * half,
        "agreement": 100 * float(np.mean(agree)),
        "mean_abs_dp": float(np.mean(dp)),
        "size_mb": size_path.stat().st_size / 1e6,
        "seconds": time.monotonic() - start,
        "file": str(size_path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "imagenet-sample")
    parser.add_argument("--mirror", type=Path, default=SHARED / "models")
    parser.add_argument("--tflite", type=Path, help="evaluate this .tflite (with its card) instead")
    parser.add_argument("--crops", action="store_true", help="10 crops per image")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import os

    os.environ.setdefault("EDGE_SDK_MODEL_MIRROR", str(args.mirror))
    rows = []
    for model in args.models:
        if args.tflite is None:
            from edge_sdk.build.builder import build_model

            build_model(model, precision="int8", mirror=args.mirror, images=args.images)
        rows.append(measure(model, args.tflite, args.images, args.crops, args.threads))
        if not args.json:
            print(f"done {model} in {rows[-1]['seconds']:.0f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"# {'crops x10' if args.crops else 'centre crop'}, eval split, {platform.machine()} "
          f"{platform.processor() or ''}, {time.strftime('%Y-%m-%d')}")
    print("| model | samples | int8 top-1 | float top-1 | Δ top-1 (95% paired) | int8 top-5 | float top-5 "
          "| agreement | mean abs Δp | int8 MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['samples']} | {r['int8_top1']:.2f} | {r['float_top1']:.2f} | "
            f"{r['delta_top1']:+.2f} ± {r['delta_ci95']:.2f} | {r['int8_top5']:.2f} | "
            f"{r['float_top5']:.2f} | "
            f"{r['agreement']:.2f} | {r['mean_abs_dp']:.4f} | {r['size_mb']:.3f} |"
        )


if __name__ == "__main__":
    main()
