import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    path = Path(os.environ.get("TINY_WORLD", ROOT / "runs" / "test_world"))
    if not (path / "WORLD.json").exists():
        pytest.fail(f"no tiny world at {path}: run `bash scripts/test.sh` (it builds one)")
    return path


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable
