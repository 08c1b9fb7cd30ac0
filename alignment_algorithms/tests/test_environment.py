"""The alignment environment's packages import (the pins themselves are checked where they are
installed; that the trainers train is test_trainers.py)."""


def test_trl_trainers_import():
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer  # noqa: F401


def test_training_stack_imports():
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import deepspeed  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
