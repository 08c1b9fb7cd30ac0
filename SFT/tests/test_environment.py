"""The SFT environment's axolotl imports on this machine (the pins themselves are checked where
they are installed; that it trains is test_tiny_run.py)."""


def test_axolotl_imports():
    from axolotl.utils.schemas.config import AxolotlInputConfig  # noqa: F401


def test_deepspeed_and_torch():
    import deepspeed  # noqa: F401
    import torch  # noqa: F401
