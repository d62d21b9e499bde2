"""Shared test fixtures: where ../shared is, and the real models built from it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from edge_sdk.classifier import Classifier

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_SDK_SHARED", REPO.parent / "shared")).resolve()
MODELS = SHARED / "models"
PHOTOS = SHARED / "data" / "photos"
IMAGENET = SHARED / "data" / "imagenet-sample"

if not MODELS.is_dir():
    raise pytest.UsageError(f"no shared data at {SHARED}; set EDGE_SDK_SHARED to the shared/ folder")

# Every test reads sources from the shared mirror; nothing is downloaded.
os.environ.setdefault("EDGE_SDK_MODEL_MIRROR", str(MODELS))


@pytest.fixture(scope="session")
def mirror() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def photos() -> Path:
    return PHOTOS


@pytest.fixture(scope="session")
def imagenet() -> Path:
    return IMAGENET


@pytest.fixture(scope="session")
def model_home() -> Path:
    """The model cache with squeezenet1.1 int8 TFLite built into it; returns the cache folder.

    The cache is $EDGE_SDK_HOME (else ~/.cache/edge-sdk), so the build's key (source, calibration
    images, builder version) makes later runs on this machine reuse it instead of rebuilding.
    """
    from edge_sdk.build.builder import build_model
    from edge_sdk.models import store

    home = store.home_dir()
    build_model("squeezenet1.1", precision="int8", mirror=MODELS, images=IMAGENET, home=home)
    return home


@pytest.fixture(scope="session")
def classifier(model_home: Path) -> Iterator[Classifier]:
    """squeezenet1.1 int8 on the real LiteRT interpreter, 2 threads (shared: do not close it)."""
    from edge_sdk.classifier import Classifier

    clf = Classifier.from_model("squeezenet1.1", runtime="litert", num_threads=2, home=model_home)
    yield clf
    clf.close()
