"""The SFT environment has axolotl at the pinned version, importable on this machine."""

import importlib.metadata as md


def test_axolotl_imports():
    assert md.version("axolotl") == "0.19.0"
    from axolotl.utils.schemas.config import AxolotlInputConfig  # noqa: F401


def test_deepspeed_and_torch():
    import deepspeed  # noqa: F401
    import torch

    assert torch.__version__.startswith("2.13.0")
