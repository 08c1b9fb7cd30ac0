"""The inference environment has its stage's packages, at the versions that matter."""

import importlib.metadata as md


def test_vllm_imports():
    import vllm

    assert vllm.__version__.startswith("0.32")
    from vllm import LLM, SamplingParams  # noqa: F401


def test_parse_latex_works_with_the_pinned_antlr_runtime():
    # With antlr 4.13, parse_latex fails and graders silently fall back to string comparison.
    assert md.version("antlr4-python3-runtime").startswith("4.11")
    from sympy import simplify
    from sympy.parsing.latex import parse_latex

    assert simplify(parse_latex(r"\frac{x}{7}+\frac{2}{7}") - parse_latex(r"\frac{x+2}{7}")) == 0


def test_tool_packages_import():
    import IPython  # noqa: F401
    import math_verify  # noqa: F401
    import numpy  # noqa: F401
    import sympy  # noqa: F401
