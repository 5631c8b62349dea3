"""Shared test fixtures: where the real datasets live, and a skip marker when they are absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REFIT_GYM_DATASETS", REPO.parent / "shared" / "datasets"))


def shared_dataset(name: str) -> Path:
    """Path of ``../shared/datasets/<name>``; skips the test with a clear reason when it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared dataset {path} is absent (set REFIT_GYM_DATASETS or place ../shared/datasets beside the repo)")
    return path
