"""The model build: int8/float TFLite from the reference ONNX, its card, cache and CLI (real LiteRT)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_sdk.build.builder import build_model
from edge_sdk.build.calibration import calibration_images
from edge_sdk.classifier import Classifier
from edge_sdk.cli.main import cli
from edge_sdk.errors import ModelError
from edge_sdk.models import store
from edge_sdk.models.card import ModelCard
from edge_sdk.preprocess import read_image

CATS = {281, 282, 285}
ESPRESSO = 967


def test_int8_model_on_litert(classifier: Classifier, photos: Path) -> None:
    spec_in, spec_out = classifier.runtime.input_spec, classifier.runtime.output_spec
    # Camera pixels go in as they come: uint8, scale 1, zero point 0; out comes the int8 map.
    assert (spec_in.dtype, spec_in.scale, spec_in.zero_point) == ("uint8", 1.0, 0)
    assert spec_out.dtype == "int8" and spec_out.shape == (1, 13, 13, 1000)
    card = classifier.card
    kinds = (card.output_kind, card.colour, card.layout, card.precision)
    assert kinds == ("logit_map", "BGR", "NHWC", "int8")
    assert classifier.classify(read_image(photos / "chelsea.png")).top[0].index in CATS
    assert classifier.classify(read_image(photos / "coffee.png")).top[0].index == ESPRESSO


def test_int8_file_and_card(model_home: Path) -> None:
    path = store.built_path("squeezenet1.1", "tflite", "int8", model_home)
    assert path.stat().st_size <= 1_400_000
    card = ModelCard.load(store.card_path(path))
    assert card.notes["model_sha256"] == store.sha256_of(path)
    assert card.notes["calibration_images"] == 200 and len(card.notes["build_key"]) == 64


def test_logit_map_average_has_no_ties(classifier: Classifier, imagenet: Path) -> None:
    # The integer average of the 13x13 map is far finer than one int8 logit: top-1 ties, which
    # an int8 1000-class output has in 5-6% of images, should (almost) never happen.
    names = sorted(p for p in imagenet.glob("*.jpg"))[:40]
    ties = 0
    for path in names:
        probs = classifier.scores(read_image(path))
        best = np.sort(probs)[-2:]
        ties += int(best[0] == best[1])
    assert ties <= 1


def test_calibration_images_are_the_calibration_split(imagenet: Path) -> None:
    paths = calibration_images(imagenet)
    assert len(paths) == 200 and paths == sorted(paths)
    rows = (imagenet / "labels.csv").read_text().splitlines()[1:]
    split = {r.split(",")[0]: r.split(",")[3] for r in rows}
    assert {split[p.name] for p in paths} == {"calibration"}


@pytest.mark.parametrize(("table", "message"), [
    (b"\xef\xbb\xbffilename,split\na.jpg,calibration\n", None),  # Excel's byte-order mark
    (b"name,split\na.jpg,calibration\n", "has no filename column"),
    (b"filename,split\na.jpg,eval\n", r"has no rows of split 'calibration' \(it has: eval\)"),
    (b"filename,split\na.jpg, calibration\n", None),  # spaces around a value, as eval allows
    (b"\xff\xfe\x00f", r"cannot read .*labels.csv .*; write it as UTF-8 CSV"),
])
def test_calibration_tables_are_read_or_refused_in_one_line(
    tmp_path: Path, imagenet: Path, table: bytes, message: str | None
) -> None:
    shutil.copy(imagenet / "n01440764_tench.jpg", tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_bytes(table)
    if message is None:
        assert [p.name for p in calibration_images(tmp_path)] == ["a.jpg"]
    else:
        with pytest.raises(ModelError, match=message):
            calibration_images(tmp_path)


def test_calibration_folders_skip_what_is_no_image_file(tmp_path: Path, imagenet: Path) -> None:
    shutil.copy(imagenet / "n01440764_tench.jpg", tmp_path / "a.jpg")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert [p.name for p in calibration_images(tmp_path)] == ["a.jpg"]


def test_cli_build_is_cached(model_home: Path, mirror: Path, imagenet: Path) -> None:
    result = CliRunner().invoke(
        cli, ["models", "build", "squeezenet1.1", "--mirror", str(mirror), "--images", str(imagenet)]
    )
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output and "1.3" in result.output


def test_cli_build_prebuilt_verifies_checksum(mirror: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "build", "mobilenet-v2-quant", "--mirror", str(mirror)])
    assert result.exit_code == 0, result.output
    assert "checksum verified" in result.output


def test_cli_build_errors(tmp_path: Path, mirror: Path, imagenet: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "build", "squeezenet1.1", "--mirror", str(tmp_path / "no")])
    assert result.exit_code != 0 and "does not exist" in result.output
    assert "Traceback" not in result.output
    bad = tmp_path / "mirror"
    bad.mkdir()
    shutil.copy(mirror / "imagenet_classes.txt", bad)
    (bad / "squeezenet1.1.onnx").write_bytes((mirror / "squeezenet1.1.onnx").read_bytes()[:1000])
    result = runner.invoke(cli, ["models", "build", "squeezenet1.1", "--mirror", str(bad)])
    assert result.exit_code != 0 and "corrupt" in result.output
    result = runner.invoke(
        cli, ["models", "build", "squeezenet1.1", "--mirror", str(mirror), "--images", str(tmp_path)]
    )
    assert result.exit_code != 0 and "no calibration images" in result.output


def test_an_unwritable_model_cache_is_one_model_error(
    tmp_path: Path, mirror: Path, imagenet: Path
) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the cache folder should be")
    with pytest.raises(ModelError, match=r"cannot write to the model cache .*; set EDGE_SDK_HOME"):
        build_model("squeezenet1.1", mirror=mirror, images=imagenet, home=home)


def test_what_a_killed_build_left_is_swept_by_the_next(
    model_home: Path, mirror: Path, imagenet: Path
) -> None:
    # Only a build holding the cache's lock writes these, so under the lock they are stale.
    folder = store.built_path("squeezenet1.1", "tflite", "int8", model_home).parent
    stale_file = folder / ".tmp99999-squeezenet1.1.int8.tflite"
    stale_file.write_bytes(b"half a model")
    stale_dir = folder / ".quant-killed"
    stale_dir.mkdir()
    (stale_dir / "folded.onnx").write_bytes(b"x")
    result = build_model("squeezenet1.1", mirror=mirror, images=imagenet, home=model_home)
    assert not result.built  # up to date: the sweep needs no build
    assert not stale_file.exists() and not stale_dir.exists()


def test_a_model_that_cannot_be_written_leaves_no_temporary_file() -> None:
    from edge_sdk.build.builder import _write_atomic

    target = Path("/proc/edge-sdk-test.tflite")  # /proc takes no new files, whoever asks
    with pytest.raises(ModelError, match=r"cannot write /proc/edge-sdk-test.tflite: "):
        _write_atomic(target, b"model bytes")
    assert not list(Path("/proc").glob(".tmp*edge-sdk-test*"))


def test_int8_needs_images(tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_SDK_CALIBRATION_IMAGES", raising=False)
    with pytest.raises(ModelError, match="--images DIR"):
        build_model("squeezenet1.1", mirror=mirror, home=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "float"])
@pytest.mark.parametrize("name", ["squeezenet1.1", "squeezenet1.1-caffe", "squeezenet1.0-dc"])
def test_every_squeezenet_on_litert(
    name: str, precision: str, model_home: Path, mirror: Path, imagenet: Path, photos: Path
) -> None:
    # Built once per machine (cached by build key), so only the first run pays for the builds.
    result = build_model(name, precision=precision, mirror=mirror, images=imagenet, home=model_home)
    assert result.path.stat().st_size <= (1_400_000 if precision == "int8" else 5_200_000)
    with Classifier.from_model(name, precision=precision, num_threads=2, home=model_home) as clf:
        kind = "logit_map" if precision == "int8" else "logits"
        assert clf.runtime.input_spec.dtype == "uint8" and clf.card.output_kind == kind
        assert clf.classify(read_image(photos / "chelsea.png")).top[0].index in CATS
        assert clf.classify(read_image(photos / "coffee.png")).top[0].index == ESPRESSO


@pytest.mark.slow
def test_same_inputs_give_the_same_bytes(
    model_home: Path, mirror: Path, imagenet: Path, tmp_path: Path
) -> None:
    # A fresh build in another folder (and process state) must equal the cached one byte for byte.
    cached = store.built_path("squeezenet1.1", "tflite", "int8", model_home)
    fresh = build_model("squeezenet1.1", mirror=mirror, images=imagenet, home=tmp_path, force=True)
    assert fresh.built and fresh.path != cached
    assert store.sha256_of(fresh.path) == store.sha256_of(cached)
    assert fresh.card.notes["build_key"] == ModelCard.load(store.card_path(cached)).notes["build_key"]
