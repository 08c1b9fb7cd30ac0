"""YAML + key=value configs: typos and bad values are errors that point at the line."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from inference.config import ConfigError, build, load_yaml, parse_cli


@dataclass
class Sampling:
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    n: int = 1


@dataclass
class Cfg:
    model: str = "m"
    mode: Literal["a", "b"] = "a"
    files: list[str] = field(default_factory=list)
    sampling: Sampling = field(default_factory=Sampling)
    limit: int | None = None


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nsampling:\n  temperature: 0\n  n: 4\nfiles: [a, b]\n")
    cfg = parse_cli(Cfg, ["--config", str(path), "sampling.n=8", "limit=3"], "d")
    assert cfg.model == "x" and cfg.sampling.temperature == 0.0 and cfg.sampling.n == 8
    assert cfg.files == ["a", "b"] and cfg.limit == 3


def test_unknown_key_names_line_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nsampling:\n  temprature: 0.5\n")
    data, lines = load_yaml(path)
    with pytest.raises(ConfigError, match=r"line 3: unknown field 'sampling.temprature' .*temperature"):
        build(Cfg, data, str(path), lines=lines)


def test_bad_value_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mode: c\n")
    data, lines = load_yaml(path)
    with pytest.raises(ConfigError, match="line 1: field 'mode'"):
        build(Cfg, data, str(path), lines=lines)
    with pytest.raises(SystemExit, match="sampling.n"):
        parse_cli(Cfg, ["sampling.n=many"], "d")


def test_help_lists_fields(capsys):
    with pytest.raises(SystemExit):
        parse_cli(Cfg, ["--help"], "demo")
    out = capsys.readouterr().out
    assert "sampling.temperature = 1.0" in out and "sampling temperature" in out
