"""Accuracy of a model on a labelled image folder, alone or against a reference model.

A labelled folder is either

- a ``labels.csv`` with at least the columns ``filename`` and ``class_index`` (other columns are
  ignored, except ``split``: when it exists, only the rows of one split are used, ``eval`` by
  default, so calibration images never leak into an accuracy figure), or
- one sub-folder per class, named by its class index (``281/``) or by its label name as the model
  card spells it (``tabby/``; case, spaces and underscores do not matter).

Measures, over the same images:

- top-1 / top-5: the true class is the best / among the five best. Ties rank the lower class
  index first, as `Classifier.top` does.
- images per second: classifier work only (preprocess + runtime + postprocess), one image at a
  time, image decoding left out.
- with a reference model: top-1 agreement (both models name the same best class), mean |Δp|
  and the paired 95% interval of the top-1 difference.

**mean |Δp|** is the L1 distance between the two probability vectors, ``sum_c |p_c - q_c|``,
averaged over images. It lies in [0, 2]; half of it is the total-variation distance, i.e. the
probability mass the model moved to other classes. (Per-class averages would be this divided
by the number of classes, around 1e-4 and hard to read.)

The **paired interval** is mean(d) ± 1.96 · sd(d) / sqrt(n) with d_i = correct_model_i -
correct_reference_i: pairing cancels the difficulty each image shares between both models, so
it is much narrower than comparing two independent accuracies.
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_sdk.classifier import Classifier
from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.preprocess import read_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DEFAULT_SPLIT = "eval"
_AMBIGUOUS = -1

Layout = Literal["labels.csv", "sub-folders"]
Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each image."""


@dataclass(frozen=True)
class LabelledImage:
    """One image file and the index of its true class (in the model card's label list)."""

    path: Path
    class_index: int


@dataclass(frozen=True)
class LabelledFolder:
    """The images of a labelled folder selected for evaluation.

    Attributes:
        root: The folder.
        layout: How the labels were given.
        images: The selected images, in file order.
        split: The split used, or None when the folder has no ``split`` column.
        split_defaulted: True when `split` was not asked for but taken as the default.
    """

    root: Path
    layout: Layout
    images: tuple[LabelledImage, ...]
    split: str | None = None
    split_defaulted: bool = False


def _norm_name(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).casefold()


def _class_of(text: str, labels: Sequence[str], by_name: dict[str, int], where: str) -> int:
    text = text.strip()
    # ASCII digits with at most one sign: "--1" or "²" would pass str.isdigit and fail int().
    if re.fullmatch(r"-?[0-9]+", text):
        index = int(text)
        if not 0 <= index < len(labels):
            raise SourceError(
                f"{where}: class index {index} is outside 0..{len(labels) - 1}; "
                "use the model's class indices (edge-classify models info MODEL --card)"
            )
        return index
    key = _norm_name(text)
    if by_name.get(key) == _AMBIGUOUS:
        raise SourceError(
            f"{where}: several classes are named {text!r}; name the folder by class index instead"
        )
    try:
        return by_name[key]
    except KeyError:
        raise SourceError(
            f"{where}: {text!r} is neither a class index nor one of the model's labels; "
            "name the folder by class index or by a label of 'edge-classify models info MODEL --card'"
        ) from None


#: Key under which `_read_csv` keeps each row's line number (no CSV column is named so).
_LINE = "\0line"


def _read_csv(
    root: Path, labels: Sequence[str], by_name: dict[str, int], split: str | None
) -> tuple[list[LabelledImage], str | None, bool]:
    table = root / "labels.csv"
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts the file with a byte-order mark.
        with table.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            # Each row with its line in the file, for messages (a quoted field may span lines).
            rows = []
            for row in reader:
                rows.append({(k or "").strip(): (v or "") for k, v in row.items()})
                rows[-1][_LINE] = str(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"cannot read {table} ({exc}); write it as UTF-8 CSV") from None
    missing = {"filename", "class_index"} - set(columns)
    if missing:
        raise SourceError(
            f"{table} lacks the column(s) {', '.join(sorted(missing))}; its header must start "
            "with filename,class_index"
        )
    defaulted = False
    if "split" in columns:
        if split is None:
            split, defaulted = DEFAULT_SPLIT, True
        available = sorted({row["split"].strip() for row in rows})
        rows = [row for row in rows if row["split"].strip() == split]
        if not rows:
            raise ConfigError(
                f"{table} has no rows of split {split!r}; choose one of: {', '.join(available)}"
            )
    elif split is not None:
        raise ConfigError(f"{table} has no 'split' column; leave out --split")
    images = []
    seen: dict[str, str] = {}  # file name -> the line that listed it
    for row in rows:
        name, line = row["filename"].strip(), row[_LINE]
        if not name:
            continue
        if name in seen:
            raise SourceError(f"{table}:{line} lists {name} again (first on line {seen[name]}); "
                              "keep one row per image")
        seen[name] = line
        images.append(
            LabelledImage(root / name, _class_of(row["class_index"], labels, by_name, f"{table}:{line}"))
        )
    return images, split, defaulted


def _read_subfolders(root: Path, labels: Sequence[str], by_name: dict[str, int]) -> list[LabelledImage]:
    images: list[LabelledImage] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        index = _class_of(folder.name, labels, by_name, f"folder {folder}")
        images.extend(
            LabelledImage(path, index)
            for path in sorted(folder.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
    return images


def load_labelled_folder(
    root: str | Path,
    labels: Sequence[str],
    *,
    split: str | None = None,
    limit: int | None = None,
) -> LabelledFolder:
    """Find the images and true classes of a labelled folder.

    Args:
        root: The folder (``labels.csv`` inside, or one sub-folder per class).
        labels: The model's class names, to resolve sub-folders named by label.
        split: Rows of this ``split`` (``labels.csv`` only); default ``eval`` when the column
            exists.
        limit: Keep only the first `limit` images (in file order), for quick checks.

    Raises:
        ValueError: `limit` < 1.
        SourceError: the folder, its table or its labels are unusable (the message says how).
        ConfigError: `split` names no rows, or the folder has no split column.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"no image folder at {root}; give --images a folder of labelled images")
    by_name: dict[str, int] = {}
    for index, name in enumerate(labels):
        # ImageNet has two "crane"s and two "maillot"s: such names cannot pick a class.
        key = _norm_name(name)
        by_name[key] = _AMBIGUOUS if key in by_name else index
    layout: Layout
    if (root / "labels.csv").is_file():
        layout = "labels.csv"
        images, used_split, defaulted = _read_csv(root, labels, by_name, split)
    else:
        if split is not None:
            raise ConfigError(f"{root} has no labels.csv, so no splits; leave out --split")
        layout = "sub-folders"
        images, used_split, defaulted = _read_subfolders(root, labels, by_name), None, False
    if not images:
        raise SourceError(
            f"no labelled images in {root}; give a labels.csv (filename,class_index) or one "
            "sub-folder per class"
        )
    if limit is not None:
        images = images[:limit]
    # Before any image is scored: a typo found at image 700 would cost the whole run.
    missing = [item.path for item in images if not item.path.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SourceError(f"{root / 'labels.csv'} lists {missing[0].name}{more}, not in {root}; "
                          "add the files or remove their rows")
    return LabelledFolder(root, layout, tuple(images), used_split, defaulted)


@dataclass(frozen=True)
class ModelRun:
    """One model's outputs on a folder.

    Attributes:
        probs: N x classes probabilities, one row per image in folder order.
        seconds: Classifier time (preprocess + runtime + postprocess) summed over the images.
    """

    probs: npt.NDArray[np.float32]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.probs) / self.seconds if self.seconds > 0 else math.inf


def rank_of_truth(probs: npt.NDArray[np.float32], truth: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Return each image's rank (0 = best) of its true class; ties rank the lower index first."""
    rows = np.arange(len(truth))
    p_true = probs[rows, truth][:, None]
    classes = np.arange(probs.shape[1])[None, :]
    ahead = (probs > p_true) | ((probs == p_true) & (classes < truth[:, None]))
    ranks: npt.NDArray[np.int64] = ahead.sum(axis=1).astype(np.int64)
    return ranks


def best_class(probs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """Top-1 class per row; ties go to the lower class index (np.argmax's rule)."""
    best: npt.NDArray[np.int64] = np.argmax(probs, axis=1).astype(np.int64)
    return best


@dataclass(frozen=True)
class Accuracy:
    """Top-1 / top-5 of one model (fractions in [0, 1]) and its speed."""

    top1: float
    top5: float
    images_per_second: float

    @classmethod
    def of(cls, run: ModelRun, truth: npt.NDArray[np.int64]) -> Accuracy:
        ranks = rank_of_truth(run.probs, truth)
        return cls(float(np.mean(ranks < 1)), float(np.mean(ranks < 5)), run.images_per_second)


@dataclass(frozen=True)
class Comparison:
    """A model against a reference on the same images (fractions in [0, 1]).

    Attributes:
        top1_agreement: Share of images where both name the same best class.
        mean_abs_dp: Mean over images of the L1 distance of the probability vectors (0..2).
        top1_difference: Model top-1 minus reference top-1.
        top1_difference_ci95: Paired 95% interval of `top1_difference`.
    """

    top1_agreement: float
    mean_abs_dp: float
    top1_difference: float
    top1_difference_ci95: tuple[float, float]

    @classmethod
    def of(cls, model: ModelRun, reference: ModelRun, truth: npt.NDArray[np.int64]) -> Comparison:
        if model.probs.shape != reference.probs.shape:
            raise ConfigError(
                f"the model has {model.probs.shape[1]} classes and the reference "
                f"{reference.probs.shape[1]}; compare models with the same label list"
            )
        agreement = float(np.mean(best_class(model.probs) == best_class(reference.probs)))
        l1 = np.abs(model.probs.astype(np.float64) - reference.probs).sum(axis=1)
        d = (rank_of_truth(model.probs, truth) < 1).astype(np.float64) - (
            rank_of_truth(reference.probs, truth) < 1
        )
        n = len(d)
        half = 1.96 * float(np.std(d, ddof=1)) / math.sqrt(n) if n > 1 else math.inf
        mean = float(np.mean(d))
        return cls(agreement, float(np.mean(l1)), mean, (mean - half, mean + half))


@dataclass(frozen=True)
class ModelInfo:
    """What is shown about each evaluated model (no effect on the numbers)."""

    name: str
    runtime: str
    precision: str
    path: str = ""
    file_bytes: int = 0
    threads: int | None = None


@dataclass(frozen=True)
class EvalReport:
    """Everything `edge-classify models eval` prints."""

    folder: LabelledFolder
    model: ModelInfo
    accuracy: Accuracy
    reference: ModelInfo | None = None
    reference_accuracy: Accuracy | None = None
    comparison: Comparison | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; accuracies are fractions in [0, 1]."""

        def model_dict(info: ModelInfo, acc: Accuracy) -> dict[str, Any]:
            return {
                "name": info.name,
                "runtime": info.runtime,
                "precision": info.precision,
                "path": info.path,
                "file_bytes": info.file_bytes,
                "threads": info.threads,
                "top1": acc.top1,
                "top5": acc.top5,
                "images_per_second": (round(acc.images_per_second, 2)
                              if math.isfinite(acc.images_per_second) else None),
            }

        out: dict[str, Any] = {
            "images": str(self.folder.root),
            "layout": self.folder.layout,
            "split": self.folder.split,
            "count": len(self.folder.images),
            "model": model_dict(self.model, self.accuracy),
            "reference": None,
            "comparison": None,
        }
        if self.reference is not None and self.reference_accuracy is not None:
            out["reference"] = model_dict(self.reference, self.reference_accuracy)
        if self.comparison is not None:
            c = self.comparison
            out["comparison"] = {
                "top1_agreement": c.top1_agreement,
                "mean_abs_dp": c.mean_abs_dp,
                "mean_abs_dp_definition": "mean over images of sum over classes |p - p_ref| (L1)",
                "top1_difference": c.top1_difference,
                # None when there is no interval (one image): JSON has no infinity.
                "top1_difference_ci95": (list(c.top1_difference_ci95)
                                         if all(map(math.isfinite, c.top1_difference_ci95)) else None),
            }
        return out

    def table(self) -> str:
        """Human-readable report: one row per model, then the comparison."""
        f = self.folder
        where = f"{f.root} ({f.layout}"
        if f.split is not None:
            where += f", split {f.split!r}" + (" by default; --split to change" if f.split_defaulted else "")
        lines = [f"{len(f.images)} images from {where})", ""]
        lines.append(f"{'model':<28}{'runtime':<13}{'precision':<10}{'top-1':>7}{'top-5':>7}{'img/s':>8}{'MB':>7}")
        rows = [(self.model, self.accuracy)]
        if self.reference is not None and self.reference_accuracy is not None:
            rows.append((self.reference, self.reference_accuracy))
        for info, acc in rows:
            size = f"{info.file_bytes / 1e6:.2f}" if info.file_bytes else "-"
            lines.append(
                f"{info.name:<28}{info.runtime:<13}{info.precision:<10}{acc.top1 * 100:>7.2f}"
                f"{acc.top5 * 100:>7.2f}{acc.images_per_second:>8.1f}{size:>7}"
            )
        if self.comparison is not None:
            c = self.comparison
            lo, hi = c.top1_difference_ci95
            lines += [
                "",
                f"against the reference: top-1 agreement {c.top1_agreement * 100:.2f}%, "
                f"mean |Δp| {c.mean_abs_dp:.4f} (L1, 0..2)",
                f"top-1 difference {c.top1_difference * 100:+.2f} points "
                f"(paired 95% interval {lo * 100:+.2f} .. {hi * 100:+.2f})",
            ]
        return "\n".join(lines)


def run_models(
    folder: LabelledFolder, classifiers: Sequence[Classifier], progress: Progress | None = None
) -> list[ModelRun]:
    """Score every image of `folder` with each classifier; each image is decoded once.

    Raises:
        SourceError: an image cannot be read (the message names the file).
    """
    total = len(folder.images)
    probs: list[list[npt.NDArray[np.float32]]] = [[] for _ in classifiers]
    seconds = [0.0 for _ in classifiers]
    for done, item in enumerate(folder.images, start=1):
        image = read_image(item.path)
        for i, clf in enumerate(classifiers):
            t0 = time.perf_counter()
            probs[i].append(clf.scores(image))
            seconds[i] += time.perf_counter() - t0
        if progress is not None:
            progress(done, total)
    return [ModelRun(np.stack(p).astype(np.float32), s) for p, s in zip(probs, seconds, strict=True)]


def evaluate(
    classifier: Classifier,
    folder: LabelledFolder,
    *,
    reference: Classifier | None = None,
    model_info: ModelInfo | None = None,
    reference_info: ModelInfo | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Evaluate `classifier` (and optionally `reference`) on the images of `folder`.

    Raises:
        SourceError: an image cannot be read.
        ConfigError: the two models have different class counts.
    """
    classifiers = [classifier] if reference is None else [classifier, reference]
    # Before any image is scored: both are known from the cards (a mismatch found after the
    # run would cost the whole run).
    if reference is not None and len(reference.card.labels) != len(classifier.card.labels):
        raise ConfigError(
            f"the model has {len(classifier.card.labels)} classes and the reference "
            f"{len(reference.card.labels)}; compare models with the same label list"
        )
    truth = np.array([item.class_index for item in folder.images], dtype=np.int64)
    if len(classifier.card.labels) <= int(truth.max()):
        raise SourceError(
            f"{folder.root} has class indices up to {int(truth.max())} but the model has "
            f"{len(classifier.card.labels)} classes; label the images with this model's classes"
        )
    runs = run_models(folder, classifiers, progress)

    def default_info(clf: Classifier) -> ModelInfo:
        return ModelInfo(clf.card.name, type(clf.runtime).__name__, clf.card.precision)

    report = EvalReport(
        folder=folder,
        model=model_info or default_info(classifier),
        accuracy=Accuracy.of(runs[0], truth),
    )
    if reference is not None:
        report = EvalReport(
            folder=folder,
            model=report.model,
            accuracy=report.accuracy,
            reference=reference_info or default_info(reference),
            reference_accuracy=Accuracy.of(runs[1], truth),
            comparison=Comparison.of(runs[0], runs[1], truth),
        )
    return report


def default_runtime(model: str, *, reference: bool = False) -> str:
    """The runtime to use when none is given.

    A file runs on the runtime of its format (.onnx: onnxruntime, else litert). A zoo name runs
    on litert, except as a reference: then its float ONNX source on onnxruntime, the model every
    quantized build is compared with. The pre-quantized MobileNets exist only for litert.
    """
    from edge_sdk.models import ZOO

    if model in ZOO:
        return "onnxruntime" if reference and not ZOO[model].prebuilt else "litert"
    return "onnxruntime" if Path(model).suffix.lower() == ".onnx" else "litert"


def open_model(
    model: str,
    *,
    runtime: str,
    precision: str,
    num_threads: int | None = None,
    mirror: str | Path | None = None,
    home: str | Path | None = None,
) -> tuple[Classifier, ModelInfo]:
    """Load a model for evaluation and describe it (file and size included).

    Raises:
        ModelError, ConfigError, BackendUnavailable: as `Classifier.from_model`.
    """
    from edge_sdk.models import store
    from edge_sdk.runtimes import runtime_format

    fmt = runtime_format(runtime)
    path, card = store.resolve(model, fmt, precision, mirror=mirror, home=home)  # type: ignore[arg-type]
    clf = Classifier.from_model(
        model, runtime=runtime, precision=precision, num_threads=num_threads, mirror=mirror, home=home
    )
    info = ModelInfo(card.name, runtime, card.precision, str(path), path.stat().st_size, num_threads)
    return clf, info
