"""The benchmark files shipped in inference/data/, and that every config's evaluation data exists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pipeline  # noqa: E402

from formats.config import read_yaml  # noqa: E402
from inference.problems import DataConfig, load_problems  # noqa: E402

DATA = ROOT / "inference" / "data"
SHIPPED = {  # file: (rows, fields of every row, data name)
    "gsm8k/test.jsonl": (1319, {"question", "answer", "idx"}, "gsm8k"),
    "gsm8k/train.jsonl": (7473, {"question", "answer"}, "gsm8k"),
    "math/test.jsonl": (5000, {"problem", "level", "type", "solution", "idx"}, "math"),
}
REMOVED_FROM_HUB = {"hendrycks/competition_math"}  # taken off the Hub in January 2025


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_has_its_rows_and_fields(name):
    rows_expected, fields, data_name = SHIPPED[name]
    rows = [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == rows_expected
    assert all(set(row) == fields for row in rows)
    problems = load_problems(DataConfig(path=str(DATA / name), name=data_name))
    assert len(problems) == rows_expected and all(p.question for p in problems)
    # One MATH answer, \boxed{\mbox{Saturday}}, strips to "" with the reference's strip_string.
    assert sum(not p.gt for p in problems) == (1 if data_name == "math" else 0)
    assert name in (DATA / "README.md").read_text() and f"| {rows_expected} |" in (DATA / "README.md").read_text()


def _pipeline_configs() -> list[Path]:
    return sorted(p for p in (ROOT / "configs").glob("*.yaml"))


def _check_data_path(path: str, where: str) -> None:
    if "{" in path or path.startswith("runs/"):  # written by a run ({world}: the tiny world it builds)
        return
    if pipeline.is_hub_id(path):
        assert path not in REMOVED_FROM_HUB, f"{where}: {path} is no longer on the Hub; use inference/data/"
        return
    assert (ROOT / path).is_file(), f"{where}: {path} does not exist (relative to the repository root)"


@pytest.mark.parametrize("config", _pipeline_configs(), ids=lambda p: p.name)
def test_every_pipeline_config_evaluates_on_data_that_exists(config):
    cfg = pipeline.load(str(config), [])
    assert cfg.evaluate.sets
    for s in cfg.evaluate.sets:
        _check_data_path(s.path, f"{config.name}: evaluate.sets.{s.name}.path")
        if not pipeline.HUB_ID.match(s.path) and "{" not in s.path:
            assert load_problems(DataConfig(path=str(ROOT / s.path), name=s.data_name, limit=3))


@pytest.mark.parametrize("config", sorted((ROOT / "inference" / "configs").glob("generate_*.yaml")),
                         ids=lambda p: p.name)
def test_every_generate_config_names_data_that_exists(config):
    data, _ = read_yaml(config)
    _check_data_path(str((data.get("data") or {}).get("path", "")), f"{config.name}: data.path")


def test_the_check_catches_a_missing_file_and_the_removed_hub_set():
    with pytest.raises(AssertionError, match="does not exist"):
        _check_data_path("inference/data/math/missing.jsonl", "x")
    with pytest.raises(AssertionError, match="no longer on the Hub"):
        _check_data_path("hendrycks/competition_math", "x")
