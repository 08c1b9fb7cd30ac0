"""The inference environment's packages work for what this stage does with them (the pins
themselves are checked where they are installed)."""


def test_vllm_imports():
    from vllm import LLM, SamplingParams  # noqa: F401


def test_parse_latex_works_with_the_installed_antlr_runtime():
    # With antlr 4.13, parse_latex fails and graders silently fall back to string comparison.
    from sympy import simplify
    from sympy.parsing.latex import parse_latex

    assert simplify(parse_latex(r"\frac{x}{7}+\frac{2}{7}") - parse_latex(r"\frac{x+2}{7}")) == 0


def test_tool_packages_import():
    import IPython  # noqa: F401
    import math_verify  # noqa: F401
    import numpy  # noqa: F401
    import sympy  # noqa: F401
