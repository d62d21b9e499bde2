"""Shared test fixtures: where ../shared is, and the real models built from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
