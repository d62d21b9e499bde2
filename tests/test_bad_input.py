"""Bad input gives one-line errors that name the fix, never a crash or a traceback.

Covers the Python API (the exception type and message) and the CLI (click's runner, and one real
subprocess): damaged model files, models whose tensors do not fit their card, files that are not
images, missing or wrong sources, unknown runtimes and options. The damaged files are made from
the real shared models in tmp dirs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from support.privileges import without_root_override

from edge_sdk.classifier import Classifier
from edge_sdk.cli.main import cli
from edge_sdk.errors import PERMISSION_FIX, ConfigError, EdgeSDKError, ModelError, SourceError
from edge_sdk.models import ZOO, store
from edge_sdk.models.card import ModelCard
from edge_sdk.preprocess import read_image
from edge_sdk.runtimes import create_runtime

ONNX_ENTRY = ZOO["squeezenet1.1"]
TFLITE_ENTRY = ZOO["mobilenet-v2-quant"]

Damage = Callable[[bytes], bytes]
DAMAGE: dict[str, Damage] = {
    "truncated": lambda b: b[: len(b) // 2],
    "corrupt": lambda b: bytes(x ^ 0xFF for x in b[:64]) + b[64:],
    "random": lambda b: np.random.default_rng(0).integers(0, 256, len(b), dtype=np.uint8).tobytes(),
    "empty": lambda b: b"",
}


def one_line(error: BaseException | str) -> str:
    text = str(error)
    assert text.strip() and "\n" not in text.strip(), f"not one line: {text!r}"
    return text


def run_cli(args: list[str]) -> str:
    """Run edge-classify in-process; return its output, checking it is a one-line error."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def with_card(path: Path, entry_name: str, mirror: Path, **changes: object) -> Path:
    card = store.source_card(ZOO[entry_name], mirror)
    dataclasses.replace(card, **changes).save(store.card_path(path))  # type: ignore[arg-type]
    return path


# -- damaged model files ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize(
    ("entry_name", "runtime"),
    [("squeezenet1.1", "onnxruntime"), ("squeezenet1.1", "opencv"), ("mobilenet-v2-quant", "litert")],
)
def test_damaged_model_file(
    tmp_path: Path, mirror: Path, photos: Path, entry_name: str, runtime: str, damage: str
) -> None:
    entry = ZOO[entry_name]
    path = tmp_path / f"model{Path(entry.source).suffix}"
    path.write_bytes(DAMAGE[damage]((mirror / entry.source).read_bytes()))
    with_card(path, entry_name, mirror)
    with pytest.raises(ModelError, match=r"corrupt or not an? (ONNX|TFLite) model|loaded nothing") as err:
        Classifier.from_model(path, runtime=runtime)
    one_line(err.value)
    line = run_cli(["classify", str(photos / "coffee.png"), "--model", str(path), "--runtime", runtime])
    assert "corrupt" in line or "loaded nothing" in line


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_damaged_weights_caught_by_card_checksum(tmp_path: Path, mirror: Path, fmt: str) -> None:
    # Flipped weight bytes still load, then predict garbage: the card's checksum catches them.
    entry = ONNX_ENTRY if fmt == "onnx" else TFLITE_ENTRY
    data = bytearray((mirror / entry.source).read_bytes())
    path = tmp_path / f"model.{fmt}"
    path.write_bytes(data)
    with_card(path, entry.name, mirror, notes={"model_sha256": store.sha256_of(path)})
    runtime = "onnxruntime" if fmt == "onnx" else "litert"
    Classifier.from_model(path, runtime=runtime).close()  # intact: loads
    middle = len(data) // 2
    data[middle : middle + 256] = bytes(x ^ 0x55 for x in data[middle : middle + 256])
    path.write_bytes(data)
    with pytest.raises(ModelError, match=r"does not match the checksum its card records.*copy it again"):
        Classifier.from_model(path, runtime=runtime)


def test_damaged_built_model_names_the_rebuild(tmp_path: Path, mirror: Path) -> None:
    # A built model in the cache (here the float source standing in for the int8 ONNX build).
    built = store.built_path("squeezenet1.1", "onnx", "int8", tmp_path)
    built.parent.mkdir(parents=True)
    shutil.copy(mirror / ONNX_ENTRY.source, built)
    with_card(built, "squeezenet1.1", mirror, notes={"model_sha256": store.sha256_of(built)})
    with built.open("r+b") as f:
        f.seek(built.stat().st_size // 2)
        f.write(b"\x00" * 64)
    with pytest.raises(ModelError) as err:
        Classifier.from_model("squeezenet1.1", runtime="onnxruntime", home=tmp_path)
    assert "edge-classify models build squeezenet1.1 --format onnx --force" in one_line(err.value)


# -- models whose tensors are not what the card says --------------------------------------------


def tiny_onnx(path: Path, inputs: int = 1, size: int = 224, classes: int = 1000) -> Path:
    """A valid image classifier in miniature: [add] -> global average pool -> linear -> softmax."""
    shape = [1, 3, size, size]
    graph_inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, shape) for i in range(inputs)]
    nodes = [helper.make_node("Add", ["x0", "x1"], ["x"])] if inputs == 2 else []
    first = "x" if inputs == 2 else "x0"
    nodes += [
        helper.make_node("GlobalAveragePool", [first], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["prob"]),
    ]
    weights = [
        numpy_helper.from_array(np.linspace(-1, 1, 3 * classes, dtype=np.float32).reshape(3, classes), "w"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "b"),
    ]
    output = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, classes])
    graph = helper.make_graph(nodes, "tiny", graph_inputs, [output], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_eval_against_a_reference_with_other_classes_fails_before_scoring(
    tmp_path: Path, mirror: Path, imagenet: Path
) -> None:
    from edge_sdk.evaluate import evaluate, load_labelled_folder

    ten = with_card(tiny_onnx(tmp_path / "ten.onnx", classes=10), "squeezenet1.1", mirror,
                    labels=tuple(f"class {i}" for i in range(10)))
    with Classifier.from_model(ten, runtime="onnxruntime") as reference, Classifier.from_model(
        "squeezenet1.1", runtime="onnxruntime", precision="float", mirror=mirror
    ) as model:
        folder = load_labelled_folder(imagenet, model.card.labels, limit=2)
        scored: list[int] = []
        with pytest.raises(ConfigError, match="the model has 1000 classes and the reference 10"):
            evaluate(model, folder, reference=reference, progress=lambda done, total: scored.append(done))
        assert scored == []  # refused before the first image


def test_tiny_onnx_model_is_fine(tmp_path: Path, mirror: Path, photos: Path) -> None:
    # The control: the same construction with the expected tensors loads and classifies.
    path = with_card(tiny_onnx(tmp_path / "tiny.onnx"), "squeezenet1.1", mirror)
    with Classifier.from_model(path, runtime="onnxruntime") as clf:
        assert len(clf.classify(read_image(photos / "coffee.png")).top) == 5


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": 2}, "2 inputs|ninputs == 1"),
        ({"classes": 10}, "output has 10 classes, card lists 1000 labels"),
        ({"size": 100}, r"input tensor is \(1, 3, 100, 100\)"),
    ],
    ids=["two-inputs", "ten-classes", "wrong-input-size"],
)
def test_unexpected_tensors(
    tmp_path: Path, mirror: Path, photos: Path, runtime: str, kwargs: dict[str, int], message: str
) -> None:
    if runtime == "opencv" and "size" in kwargs:
        pytest.skip("OpenCV reads no input shape from the file: it takes the card's")
    path = with_card(tiny_onnx(tmp_path / "odd.onnx", **kwargs), "squeezenet1.1", mirror)
    with pytest.raises(ModelError, match=message) as err:
        Classifier.from_model(path, runtime=runtime)
    one_line(err.value)
    run_cli(["classify", str(photos / "coffee.png"), "--model", str(path), "--runtime", runtime])


def test_card_that_disagrees_with_tflite_model(tmp_path: Path, mirror: Path) -> None:
    path = tmp_path / "mobilenet.tflite"
    shutil.copy(mirror / TFLITE_ENTRY.source, path)
    with_card(path, TFLITE_ENTRY.name, mirror, input_size=(192, 192))
    with pytest.raises(ModelError, match=r"card says NHWC 192x192x3.*rebuild or rewrite it"):
        Classifier.from_model(path, runtime="litert")
    with_card(path, TFLITE_ENTRY.name, mirror, label_offset=0)
    with pytest.raises(ModelError, match=r"output has 1001 classes, card lists 1000 labels"):
        Classifier.from_model(path, runtime="litert")


def test_bad_card_files(tmp_path: Path, mirror: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"whatever")
    with pytest.raises(ModelError, match=r"has no model card; write model.json"):
        Classifier.from_model(path, runtime="onnxruntime")
    store.card_path(path).write_text("{not json")
    with pytest.raises(ModelError, match=r"not valid JSON"):
        Classifier.from_model(path, runtime="onnxruntime")
    store.card_path(path).write_text(
        '{"name": "x", "labels": [], "input_size": [1, 1], "colour": 3, "speed": 1}'
    )
    with pytest.raises(ModelError, match=r"unknown keys \['speed'\]"):
        Classifier.from_model(path, runtime="onnxruntime")



CARD = {"name": "x", "labels": ["cat", "dog"], "input_size": [224, 224]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output_kind": "weird"}, r"output_kind must be one of probabilities, logits, logit_map"),
        ({"colour": "CMYK"}, r"colour must be one of BGR, RGB, got 'CMYK'"),
        ({"std": [0, 0, 0]}, r"std must be > 0 for every channel"),
        ({"mean": [1, 2]}, r"mean must be three numbers"),
        ({"mean": [1, 2, "x"]}, r"mean must be three numbers"),
        ({"input_size": "224"}, r"input_size must be a list, got '224'"),
        ({"input_size": [224]}, r"input_size must be \[height, width\]"),
        ({"labels": None}, r"labels must be a list"),
        ({"labels": []}, r"labels must be a non-empty list"),
        ({"label_offset": -1}, r"label_offset must be an integer >= 0"),
        ({"card_version": 99}, r"card_version 99 is newer than this edge-sdk reads \(1\); upgrade"),
        ({"labels": "<drop>"}, r"missing keys \['labels'\]; add them"),
        ({"notes": None}, r"notes must be an object"),
        ({"notes": [1, 2]}, r"notes must be an object"),
    ],
)
def test_hand_edited_card_values(
    tmp_path: Path, photos: Path, changes: dict[str, object], message: str
) -> None:
    data = {**CARD, **changes}
    data = {k: v for k, v in data.items() if v != "<drop>"}
    with pytest.raises(ModelError, match=message) as err:
        ModelCard.from_dict(data)
    one_line(err.value)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"whatever")
    store.card_path(model).write_text(json.dumps(data))
    assert "model card" in run_cli(["classify", str(photos / "coffee.png"), "--model", str(model),
                                    "--runtime", "onnxruntime"])


def test_a_model_of_the_other_format_names_the_runtimes_that_run_it(tmp_path: Path, mirror: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    shutil.copy(mirror / ONNX_ENTRY.source, onnx_file)
    with pytest.raises(ModelError, match=r"is an ONNX model, which the LiteRT runtime cannot run; "
                                         r"use --runtime onnxruntime or --runtime opencv") as err:
        create_runtime("litert", str(onnx_file))
    one_line(err.value)
    tflite_file = tmp_path / "model.tflite"
    shutil.copy(mirror / TFLITE_ENTRY.source, tflite_file)
    for runtime, name in (("onnxruntime", "onnxruntime"), ("opencv", "OpenCV")):
        with pytest.raises(ModelError, match=rf"is a TFLite model, which the {name} runtime cannot run; "
                                             r"use --runtime litert"):
            create_runtime(runtime, str(tflite_file), **({"input_shape": (1, 3, 224, 224)}
                                                          if runtime == "opencv" else {}))


def test_unreadable_model_and_image_files_in_a_real_process(
    tmp_path: Path, mirror: Path, photos: Path
) -> None:
    model = tmp_path / "model.tflite"
    shutil.copy(mirror / TFLITE_ENTRY.source, model)
    image = tmp_path / "photo.png"
    shutil.copy(photos / "coffee.png", image)
    exe = str(Path(sys.executable).with_name("edge-classify"))
    prefix = without_root_override()
    for args, unreadable in (
        (["classify", str(image), "--model", str(model)], model),
        (["classify", str(image), "--model", "mobilenet-v2-quant"], image),
    ):
        unreadable.chmod(0)
        try:
            proc = subprocess.run([*prefix, exe, *args], capture_output=True, text=True, timeout=60,
                                  check=False)
        finally:
            unreadable.chmod(0o644)
        # LiteRT's own "INFO: Created ... delegate" line goes to the log, not before the error.
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert lines[0] == f"Error: cannot read {unreadable}: {PERMISSION_FIX}"


# -- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"plain text, not a picture", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=r"not an image OpenCV can decode; give a JPEG") as err:
        read_image(path)
    one_line(err.value)
    line = run_cli(
        [
            "classify",
            str(path),
            "--model",
            "squeezenet1.1",
            "--runtime",
            "onnxruntime",
            "--precision",
            "float",
        ]
    )
    assert "not an image" in line
    assert "no such image file" in run_cli(
        ["classify", str(tmp_path / "missing.jpg"), "--runtime", "onnxruntime", "--precision", "float"]
    )


def test_classify_goes_on_past_a_file_it_cannot_read(tmp_path: Path, photos: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not an image")
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "notes.jpg"), str(photos / "coffee.png"),
                                      "--json"])
    assert result.exit_code == 1
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == [str(photos / "coffee.png")]
    assert "notes.jpg is not an image" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: 1 of 2 images could not be read (first: {tmp_path / 'notes.jpg'})")


def test_folders_and_special_files_are_not_images(tmp_path: Path) -> None:
    assert "is a folder; give image files" in run_cli(["classify", str(tmp_path)])
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert "is not a regular file; give an image file" in run_cli(["classify", str(fifo)])


def test_odd_arguments_to_classify_and_the_classifier(mirror: Path) -> None:
    with Classifier.from_model("squeezenet1.1", runtime="onnxruntime", precision="float") as clf:
        for bad in (None, [[[0, 0, 0]]]):
            with pytest.raises(TypeError, match=r"expected a BGR image as a numpy array or a Frame"):
                clf.classify(bad)  # type: ignore[arg-type]  # the point: not an array
        for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 10, 3), np.uint8)):
            with pytest.raises(ValueError, match=r"the image is empty"):
                clf.classify(empty)
    with pytest.raises(RuntimeError, match=r"this Classifier is closed; make a new one"):
        clf.classify(np.zeros((8, 8, 3), np.uint8))
    for options, error, message in (
        ({"top_k": 2.5}, TypeError, r"top_k must be an integer, got 2.5"),
        ({"threshold": "0.5"}, TypeError, r"threshold must be a number, got '0.5'"),
        ({"threshold": float("nan")}, ValueError, r"threshold must be a finite number"),
        ({"num_threads": 2.5}, TypeError, r"num_threads must be an integer"),
        ({"num_threads": 100000}, ValueError, r"num_threads must be within \[1, 64\], got 100000"),
        ({"precision": "fp16"}, ValueError, r"precision must be one of int8, float, got 'fp16'"),
    ):
        with pytest.raises(error, match=message):
            # The float ONNX is the mirror's own file: nothing needs building first.
            Classifier.from_model("squeezenet1.1", runtime="onnxruntime",
                                  **{"precision": "float", **options})  # type: ignore[arg-type]


def test_bad_arrays_are_value_errors(mirror: Path) -> None:
    with Classifier.from_model("squeezenet1.1", runtime="onnxruntime", precision="float") as clf:
        for bad in (
            np.zeros((10, 10), np.uint8),
            np.zeros((10, 10, 3), np.float32),
            np.zeros((10, 10, 4), np.uint8),
        ):
            with pytest.raises(ValueError, match=r"H x W x 3 uint8"):
                clf.classify(bad)  # type: ignore[arg-type]  # the point: arrays of the wrong kind


# -- sources: mirror, file, checksum ------------------------------------------------------------


def test_missing_mirror(tmp_path: Path, photos: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist; pass --mirror DIR") as err:
        Classifier.from_model(
            "squeezenet1.1", runtime="onnxruntime", precision="float", mirror=tmp_path / "no"
        )
    one_line(err.value)
    line = run_cli(
        [
            "classify",
            str(photos / "coffee.png"),
            "--runtime",
            "onnxruntime",
            "--precision",
            "float",
            "--mirror",
            str(tmp_path / "no"),
        ]
    )
    assert "--mirror" in line


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"is not in the model mirror .*; download it from") as err:
        Classifier.from_model("squeezenet1.1", runtime="onnxruntime", precision="float", mirror=tmp_path)
    one_line(err.value)


def test_wrong_checksum(tmp_path: Path, mirror: Path, photos: Path) -> None:
    shutil.copy(mirror / ONNX_ENTRY.labels_file, tmp_path)
    data = bytearray((mirror / ONNX_ENTRY.source).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / ONNX_ENTRY.source).write_bytes(data)
    with pytest.raises(ModelError, match=r"has sha256 .* expected .*download it again") as err:
        Classifier.from_model("squeezenet1.1", runtime="onnxruntime", precision="float", mirror=tmp_path)
    one_line(err.value)
    line = run_cli(
        [
            "classify",
            str(photos / "coffee.png"),
            "--runtime",
            "opencv",
            "--precision",
            "float",
            "--mirror",
            str(tmp_path),
        ]
    )
    assert "download it again" in line


def test_a_card_that_reads_a_logit_map_as_a_vector_is_refused(tmp_path: Path, model_home: Path) -> None:
    # The int8 model's output is 13 x 13 x 1000; read as one vector it would hand out class
    # indices up to 168,999 (an IndexError in the middle of a run).
    built = store.built_path("squeezenet1.1", "tflite", "int8", model_home)
    model = tmp_path / "model.tflite"
    shutil.copy(built, model)
    card = json.loads(store.card_path(built).read_text())
    card["output_kind"] = "probabilities"
    store.card_path(model).write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"holds more than one score per class, yet the card says "
                                         r"probabilities \(a map is output_kind logit_map\)"):
        Classifier.from_model(model, runtime="litert")


def test_label_files_that_are_not_plain_utf8(tmp_path: Path, mirror: Path) -> None:
    shutil.copy(mirror / ONNX_ENTRY.source, tmp_path)
    text = (mirror / "imagenet_classes.txt").read_text()
    (tmp_path / "imagenet_classes.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())  # a BOM
    labels = store.read_labels(ONNX_ENTRY, tmp_path)
    assert labels[0] == text.splitlines()[0].strip()  # no "\ufeff" glued to it
    (tmp_path / "imagenet_classes.txt").write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    with pytest.raises(ModelError, match="is not UTF-8 text; copy it from the model's source again"):
        store.read_labels(ONNX_ENTRY, tmp_path)


def test_an_image_over_opencvs_pixel_limit_is_one_source_error(tmp_path: Path) -> None:
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") * 2  # 65000 x 65000 claimed
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="is larger than OpenCV decodes"):
        read_image(bomb)


def test_missing_labels(tmp_path: Path, mirror: Path) -> None:
    shutil.copy(mirror / ONNX_ENTRY.source, tmp_path)
    with pytest.raises(ModelError, match=r"label file imagenet_classes.txt is not in the model mirror"):
        Classifier.from_model("squeezenet1.1", runtime="onnxruntime", precision="float", mirror=tmp_path)


# -- source URIs -----------------------------------------------------------------------------------

#: Malformed source URIs of every scheme, and a word the one-line error must contain.
BAD_URIS = [
    ("rtsp://cam:abc/x", "rtsp://host[:port]/path"),
    ("rtsp://[::1/x", "rtsp://host[:port]/path"),
    ("http://[::1/x", "http://host[:port]/path"),
    ("https://cam:99999/x", "https://"),
    ("http://", "no host"),
    ("v4l2://video0", "v4l2:///dev/videoN"),
    ("csi://front", "csi://N"),
    ("gst://", "gst://ELEMENT"),
    ("file://", "file:///PATH"),
    ("ftp://cam/x", "use one of"),
    ("test://[", "test://?size=WxH"),
    ("test://?fps=nan", "finite"),
    ("test://?size=100000x100000", "8192x8192"),
    ("test://?live=maybe", "live must be 1 or 0"),
]

#: A live run that needs no model build: the float ONNX model straight from the mirror.
LIVE_RUN = ["--no-display", "--runtime", "onnxruntime", "--precision", "float"]


@pytest.mark.parametrize(("uri", "fragment"), BAD_URIS, ids=[u for u, _ in BAD_URIS])
def test_malformed_source_uri(uri: str, fragment: str, mirror: Path) -> None:
    from edge_sdk.sources import open_source

    with pytest.raises(ConfigError) as err:
        open_source(uri)
    assert fragment in one_line(err.value)
    line = run_cli(["--source", uri, *LIVE_RUN])
    assert fragment in line and "Traceback" not in line


def test_malformed_source_uri_in_a_real_process() -> None:
    """The audit's two cases through the console script: status 1, one line, no traceback."""
    exe = Path(sys.executable).with_name("edge-classify")
    for uri in ("rtsp://cam:abc/x", "http://[::1/x"):
        proc = subprocess.run([str(exe), "--source", uri, *LIVE_RUN], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: bad source URI {uri!r}"), proc.stderr


# -- runtimes --------------------------------------------------------------------------------------


def test_unknown_runtime_and_option(photos: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown runtime 'tensorrt'; choose one of: litert, onnxruntime, opencv"
    ):
        Classifier.from_model("squeezenet1.1", runtime="tensorrt")
    with pytest.raises(ConfigError, match=r"no option 'turbo'; accepted: num_threads"):
        Classifier.from_model("squeezenet1.1", runtime="onnxruntime", precision="float", turbo=True)
    with pytest.raises(ConfigError, match=r"accepted: num_threads, input_shape"):
        Classifier.from_model("squeezenet1.1", runtime="opencv", precision="float", turbo=True)
    assert "choose one of: litert, onnxruntime, opencv" in run_cli(
        ["classify", str(photos / "coffee.png"), "--runtime", "tensorrt"]
    )
    assert "choose one of" in run_cli(["classify", str(photos / "coffee.png"), "--model", "resnet50"])


def test_model_not_built_names_the_build(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError, match=r"not built yet; run: edge-classify models build squeezenet1.1 --format onnx"
    ):
        Classifier.from_model("squeezenet1.1", runtime="onnxruntime", home=tmp_path)


def test_real_process_prints_one_line(tmp_path: Path, photos: Path) -> None:
    """The installed console script, as a user runs it: one line on stderr, status 1."""
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\0" * 100)
    exe = Path(sys.executable).with_name("edge-classify")
    proc = subprocess.run(
        [
            str(exe),
            "classify",
            str(photos / "coffee.png"),
            "--model",
            str(broken),
            "--runtime",
            "onnxruntime",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "has no model card" in lines[0], proc.stderr


def test_every_error_is_an_edge_sdk_error() -> None:
    # The CLI turns EdgeSDKError subclasses into one line; the types above must all be ones.
    for exc in (ModelError, SourceError, ConfigError):
        assert issubclass(exc, EdgeSDKError)
