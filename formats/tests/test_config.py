"""The one config loader (formats/config.py): YAML + key=value into dataclasses, errors located."""

import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest

from formats.config import ConfigError, build, load, parse_cli, read_yaml


@dataclass
class Sampling:
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    n: int = 1


@dataclass
class Item:
    name: str = "a"
    path: str = ""
    limit: int = -1


class Strategy(enum.Enum):
    NO = "no"
    STEPS = "steps"


@dataclass
class Cfg:
    model: str = "m"
    mode: Literal["a", "b"] = "a"
    files: list[str] = field(default_factory=list)
    sampling: Sampling = field(default_factory=Sampling)
    items: list[Item] = field(default_factory=lambda: [Item()])
    limit: int | None = None
    strategy: Strategy | str = "steps"
    lr: float = 1e-5


@dataclass
class Other:
    output_dir: str
    seed: int = 0


def test_yaml_then_overrides_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nsampling:\n  temperature: 0\n  n: 4\nfiles: [a, b]\nlr: 4e-7\n")
    cfg = parse_cli(Cfg, ["--config", str(path), "sampling.n=8", "limit=3", "files.1=c", "lr=1e-6"], "d")
    assert cfg.model == "x" and cfg.sampling.temperature == 0.0 and cfg.sampling.n == 8
    assert cfg.files == ["a", "c"] and cfg.limit == 3
    assert cfg.lr == 1e-6 and isinstance(cfg.lr, float)  # YAML 1.1 reads 4e-7 and 1e-6 as strings
    assert load(Cfg, path).lr == 4e-7


def test_list_indices_reach_default_lists_and_append():
    cfg = load(Cfg, None, ["items.0.limit=5", "items.1.path=x", "items.1.name=b", "limit=null"])
    assert cfg.items == [Item("a", "", 5), Item("b", "x", -1)] and cfg.limit is None
    with pytest.raises(ConfigError, match=r"^override 'items.3.path=x': 'items' is a list of 1: '3' is not an "
                                          r"index of it \(0..1\)$"):
        load(Cfg, None, ["items.3.path=x"])
    with pytest.raises(ConfigError, match=r"^override 'model.x=1': 'model' holds a str, not a section or a list$"):
        load(Cfg, None, ["model=m", "model.x=1"])


def test_text_fields_keep_the_word_as_written():
    cfg = load(Cfg, None, ["strategy=no", "model=007", "sampling.n=007"])
    assert cfg.strategy is Strategy.NO and cfg.model == "007" and cfg.sampling.n == 7


def test_unknown_key_names_line_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nsampling:\n  temprature: 0.5\n")
    with pytest.raises(ConfigError, match=rf"^{path}, line 3: unknown key 'sampling.temprature' "
                                          r"\(did you mean 'sampling.temperature'\?\)$"):
        load(Cfg, path)
    with pytest.raises(ConfigError, match=r"^override 'items.0.pth=x': unknown key 'items.0.pth' "
                                          r"\(did you mean 'items.0.path'\?\)$"):
        load(Cfg, None, ["items.0.pth=x"])


def test_bad_values_are_refused_where_they_were_written(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nmode: c\n")
    with pytest.raises(ConfigError, match=rf"^{path}, line 2: key 'mode': 'c' is not one of \['a', 'b'\]$"):
        load(Cfg, path)
    with pytest.raises(ConfigError, match=r"^override 'sampling.n=many': key 'sampling.n': expected int, got 'many'$"):
        load(Cfg, path, ["mode=a", "sampling.n=many"])
    with pytest.raises(ConfigError, match=r"key 'items.0.limit': expected int, got True"):
        build(Cfg, {"items": [{"limit": True}]})


def test_one_file_feeds_several_dataclasses(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nseed: 3\n")
    cfg, other = load((Cfg, Other), path, ["output_dir=o"])
    assert cfg.model == "x" and other.seed == 3 and other.output_dir == "o"
    with pytest.raises(ConfigError, match=r"unknown key 'sed' \(did you mean 'seed'\?\)"):
        load((Cfg, Other), path, ["output_dir=o", "sed=1"])
    with pytest.raises(ConfigError, match="output_dir"):
        load((Cfg, Other), path)


def test_line_table_follows_key_paths(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a:\n  b:\n    - x\n    - {c: 1}\n")
    data, where = read_yaml(path)
    assert data == {"a": {"b": ["x", {"c": 1}]}}
    assert where[("a", "b", 1, "c")] == f"{path}, line 4" and where[("a",)] == f"{path}, line 1"


def test_cli_errors_have_one_shape(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_cli(Cfg, ["sampling.temprature=0"], "d")
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("error: override 'sampling.temprature=0': unknown key 'sampling.temprature' "
                                       "(did you mean 'sampling.temperature'?)\n")
    with pytest.raises(SystemExit):
        parse_cli(Cfg, ["--model", "x"], "d")
    assert "unrecognized arguments: --model" in capsys.readouterr().err


def test_help_lists_fields(capsys):
    with pytest.raises(SystemExit):
        parse_cli(Cfg, ["--help"], "demo")
    out = capsys.readouterr().out
    assert "sampling.temperature = 1.0" in out and "sampling temperature" in out
