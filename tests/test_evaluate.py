"""`models eval` and edge_sdk.evaluate on small labelled folders built from the shared images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_sdk.cli.main import cli
from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.evaluate import Accuracy, Comparison, ModelRun, load_labelled_folder

LABELS = tuple(
    ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "crane", "crane"]
    + [f"class {i}" for i in range(7, 1000)]
)
# (file, class, split) from the shared ImageNet sample: 4 eval images and 2 calibration images.
ROWS = [
    ("n01440764_tench.jpg", 0, "calibration"),
    ("n01443537_goldfish.jpg", 1, "eval"),
    ("n01484850_great_white_shark.jpg", 2, "eval"),
    ("n01491361_tiger_shark.jpg", 3, "eval"),
    ("n01494475_hammerhead.jpg", 4, "eval"),
    ("n01496331_electric_ray.jpg", 5, "calibration"),
]


@pytest.fixture()
def csv_folder(tmp_path: Path, imagenet: Path) -> Path:
    folder = tmp_path / "csv"
    folder.mkdir()
    lines = ["filename,class_index,wnid,split"]
    for name, index, split in ROWS:
        shutil.copy(imagenet / name, folder / name)
        lines.append(f"{name},{index},{name.split('_')[0]},{split}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture()
def class_folders(tmp_path: Path, imagenet: Path) -> Path:
    """One sub-folder per class: two named by index, one by label name (any case, underscores)."""
    root = tmp_path / "folders"
    for folder, name in [("0", ROWS[0][0]), ("Goldfish", ROWS[1][0]), ("great_white_shark", ROWS[2][0])]:
        (root / folder).mkdir(parents=True)
        shutil.copy(imagenet / name, root / folder / name)
    (root / "0" / "notes.txt").write_text("not an image: ignored")
    return root


def test_csv_layout_defaults_to_eval_split(csv_folder: Path) -> None:
    folder = load_labelled_folder(csv_folder, LABELS)
    assert folder.layout == "labels.csv" and folder.split == "eval" and folder.split_defaulted
    assert [i.class_index for i in folder.images] == [1, 2, 3, 4]
    calibration = load_labelled_folder(csv_folder, LABELS, split="calibration", limit=1)
    assert [i.class_index for i in calibration.images] == [0] and not calibration.split_defaulted
    with pytest.raises(ConfigError, match="choose one of: calibration, eval"):
        load_labelled_folder(csv_folder, LABELS, split="train")


def test_csv_without_split_column(csv_folder: Path) -> None:
    (csv_folder / "labels.csv").write_text("filename,class_index\nn01443537_goldfish.jpg,1\n")
    folder = load_labelled_folder(csv_folder, LABELS)
    assert folder.split is None and len(folder.images) == 1
    with pytest.raises(ConfigError, match="leave out --split"):
        load_labelled_folder(csv_folder, LABELS, split="eval")


def test_images_labels_csv_lists_but_the_folder_lacks_are_found_before_scoring(csv_folder: Path) -> None:
    table = csv_folder / "labels.csv"
    table.write_text(table.read_text() + "gone-1.jpg,5,n0,eval\ngone-2.jpg,6,n0,eval\n")
    with pytest.raises(SourceError, match=r"labels.csv lists gone-1.jpg and 1 more, not in .*; add the "
                                          r"files or remove their rows$"):
        load_labelled_folder(csv_folder, LABELS)
    assert len(load_labelled_folder(csv_folder, LABELS, limit=2).images) == 2  # not among these


def test_csv_with_a_byte_order_mark_as_excel_saves_it(csv_folder: Path) -> None:
    table = csv_folder / "labels.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())
    assert [i.class_index for i in load_labelled_folder(csv_folder, LABELS).images] == [1, 2, 3, 4]


@pytest.mark.parametrize("index", ["--1", "\u00b2", "1.0"])
def test_a_class_index_that_is_no_whole_number_is_one_line(csv_folder: Path, index: str) -> None:
    (csv_folder / "labels.csv").write_text(f"filename,class_index\nn01443537_goldfish.jpg,{index}\n")
    with pytest.raises(SourceError) as err:
        load_labelled_folder(csv_folder, LABELS)
    assert "\n" not in str(err.value)


def test_labels_csv_errors_name_the_line_of_the_file(csv_folder: Path) -> None:
    table = csv_folder / "labels.csv"
    lines = table.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("n01494475_hammerhead"))
    lines[at] = lines[at].replace(",4,", ",9999,")  # an eval row after a calibration row
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=rf"labels.csv:{at + 1}: class index 9999"):
        load_labelled_folder(csv_folder, LABELS)


def test_an_image_listed_twice_is_refused(csv_folder: Path) -> None:
    (csv_folder / "labels.csv").write_text(
        "filename,class_index\nn01443537_goldfish.jpg,1\nn01443537_goldfish.jpg,5\n")
    with pytest.raises(SourceError, match=r"labels.csv:3 lists n01443537_goldfish.jpg again \(first "
                                          r"on line 2\); keep one row per image"):
        load_labelled_folder(csv_folder, LABELS)


def test_cli_json_for_one_image_has_no_infinite_interval(csv_folder: Path) -> None:
    args = ["models", "eval", "squeezenet1.1", "--images", str(csv_folder), "--runtime", "onnxruntime",
            "--precision", "float", "--limit", "1", "--against", "squeezenet1.1", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert report["comparison"]["top1_difference_ci95"] is None  # one image: no interval


def test_subfolder_layout(class_folders: Path) -> None:
    folder = load_labelled_folder(class_folders, LABELS)
    assert folder.layout == "sub-folders" and folder.split is None
    assert sorted(i.class_index for i in folder.images) == [0, 1, 2]


@pytest.mark.parametrize(
    ("folder_name", "message"),
    [("salmon", "neither a class index nor"), ("crane", "several classes"), ("1000", "outside 0..999")],
)
def test_bad_class_folder(class_folders: Path, folder_name: str, message: str) -> None:
    (class_folders / folder_name).mkdir()
    with pytest.raises(SourceError, match=message):
        load_labelled_folder(class_folders, LABELS)


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no image folder"):
        load_labelled_folder(tmp_path / "missing", LABELS)
    with pytest.raises(SourceError, match="no labelled images"):
        load_labelled_folder(tmp_path, LABELS)
    (tmp_path / "labels.csv").write_text("file,label\na.jpg,1\n")
    with pytest.raises(SourceError, match="lacks the column"):
        load_labelled_folder(tmp_path, LABELS)


def test_metrics_on_known_probabilities() -> None:
    truth = np.array([0, 1, 2, 3])
    ref = np.eye(4, dtype=np.float32)
    model = ref.copy()
    model[3] = [0.0, 0.0, 0.6, 0.4]  # wrong top-1 on the last image, right in top-2
    acc = Accuracy.of(ModelRun(model, 2.0), truth)
    assert acc.top1 == 0.75 and acc.top5 == 1.0 and acc.images_per_second == 2.0
    cmp = Comparison.of(ModelRun(model, 1.0), ModelRun(ref, 1.0), truth)
    assert cmp.top1_agreement == 0.75
    assert cmp.mean_abs_dp == pytest.approx(1.2 / 4)  # L1 of the last row is 0.6 + 0.6
    assert cmp.top1_difference == -0.25
    lo, hi = cmp.top1_difference_ci95
    assert lo < -0.25 < hi
    same = Comparison.of(ModelRun(ref, 1.0), ModelRun(ref, 1.0), truth)
    assert same.top1_agreement == 1.0 and same.mean_abs_dp == 0.0 and same.top1_difference_ci95 == (0, 0)
    # Ties rank the lower class first, as Classifier.top does.
    tied = np.full((1, 4), 0.25, np.float32)
    assert Accuracy.of(ModelRun(tied, 1.0), np.array([0])).top1 == 1.0
    assert Accuracy.of(ModelRun(tied, 1.0), np.array([1])).top1 == 0.0


def test_cli_json_against_reference(csv_folder: Path) -> None:
    args = ["models", "eval", "squeezenet1.1", "--images", str(csv_folder), "--runtime", "onnxruntime"]
    args += ["--precision", "float", "--threads", "1", "--against", "squeezenet1.1-caffe", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"images", "layout", "split", "count", "model", "reference", "comparison"}
    assert report["count"] == 4 and report["split"] == "eval"
    model = report["model"]
    assert {"name", "runtime", "precision", "top1", "top5", "images_per_second", "file_bytes"} <= set(model)
    assert model["name"] == "squeezenet1.1" and model["runtime"] == "onnxruntime"
    assert report["reference"]["name"] == "squeezenet1.1-caffe"
    assert report["reference"]["runtime"] == "onnxruntime"  # a zoo reference runs its float ONNX
    cmp = report["comparison"]
    assert 0.0 <= cmp["top1_agreement"] <= 1.0 and 0.0 < cmp["mean_abs_dp"] <= 2.0
    lo, hi = cmp["top1_difference_ci95"]
    assert lo <= cmp["top1_difference"] <= hi
    assert 0.5 <= model["top1"] <= 1.0  # four easy photos of the eval split


def test_cli_table_on_class_folders(class_folders: Path) -> None:
    args = ["models", "eval", "squeezenet1.1-caffe", "--images", str(class_folders), "--runtime"]
    args += ["opencv", "--precision", "float", "--limit", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "2 images from" in result.stdout and "(sub-folders)" in result.stdout
    assert "top-1" in result.stdout and "squeezenet1.1-caffe" in result.stdout


def test_cli_errors_are_one_line(csv_folder: Path, tmp_path: Path) -> None:
    base = ["models", "eval", "squeezenet1.1", "--runtime", "onnxruntime", "--precision", "float"]
    for extra, message in [
        (["--images", str(tmp_path / "nowhere")], "no image folder"),
        (["--images", str(csv_folder), "--split", "train"], "choose one of: calibration, eval"),
    ]:
        result = CliRunner().invoke(cli, base + extra)
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
