"""The one fixture every stage's tests share; pytest loads this file for all of them."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    path = Path(os.environ.get("TINY_WORLD", ROOT / "runs" / "test_world"))
    if not (path / "WORLD.json").exists():
        pytest.fail(f"no tiny world at {path}: run `bash scripts/test.sh` (it builds one)")
    return path
