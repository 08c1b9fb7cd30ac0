"""The alignment environment has its stage's packages, at the versions that matter."""

import importlib.metadata as md


def test_trl_trainers_import():
    assert md.version("trl") == "1.16.0"
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer  # noqa: F401


def test_training_stack_imports():
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import deepspeed  # noqa: F401
    import torch
    import transformers  # noqa: F401

    assert torch.__version__.startswith("2.13.0")
