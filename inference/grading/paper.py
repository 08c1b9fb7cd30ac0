"""The official grader's decisions (ToRA's `math_equal`, SPEC 3.4), reproduced for comparability.

Its leniencies are kept on purpose, because the paper's accuracies were measured with them:
every number also matches the reference times 100 or divided by 100 (`500` == `5`), numbers
match within a relative 1e-4, and `{}()` characters are deleted before comparing strings.
`include_percentage=False` / `is_close=False` turn the two numeric leniencies off (SPEC appendix).
"""

from __future__ import annotations

from math import isclose

from .extract import strip_string


def _as_float(s: object) -> float | None:
    try:
        return float(str(s).replace(",", ""))
    except ValueError:
        return None


def _wrapped(s: str, open_: str, close: str) -> bool:
    return s.startswith(open_) and s.endswith(close)


def _parse(s: str):
    """parse_latex, else parse_expr, else the string itself (SPEC 3.4 step 5). parse_expr
    evaluates Python, so strings with dunders are never handed to it."""
    from sympy.parsing.latex import parse_latex
    from sympy.parsing.sympy_parser import parse_expr

    parsers = (parse_latex, parse_expr) if "__" not in s else (parse_latex,)
    for parser in parsers:
        try:
            return parser(s)
        except Exception:  # noqa: BLE001, S112 - the reference falls through on any failure
            continue
    return s


def symbolic_equal(a: str, b: str) -> bool:
    """simplify(a - b) == 0, else N(a) and N(b) within a relative 1e-3 (SPEC 3.4 step 5)."""
    from sympy import N, simplify

    if "__" in a or "__" in b:  # sympy would eval() them below
        return False
    x, y = _parse(a), _parse(b)
    try:
        if simplify(x - y) == 0:
            return True
    except Exception:  # noqa: BLE001, S110 - any sympy failure means "not shown equal"
        pass
    try:
        return isclose(N(x), N(y), rel_tol=1e-3)
    except Exception:  # noqa: BLE001
        return False


def math_equal(pred: str, ref: str, include_percentage: bool = True, is_close: bool = True) -> bool:
    """SPEC 3.4 steps 1-5, in order; `pred` and `ref` are already `strip_string`-normalised."""
    p, r = _as_float(pred), _as_float(ref)
    if p is not None and r is not None:
        targets = (r / 100, r, r * 100) if include_percentage else (r,)
        return any(isclose(t, p, rel_tol=1e-4) if is_close else t == p for t in targets)
    if not pred:
        return False
    pred, ref = str(pred).strip(), str(ref).strip()
    p_str, r_str = pred, ref
    if (_wrapped(pred, "[", "]") and not ref.startswith("(")) or \
            (_wrapped(pred, "(", ")") and not ref.startswith("[")):
        p_str, r_str = p_str.strip("[]()"), r_str.strip("[]()")
    for ch in "{}()":
        p_str, r_str = p_str.replace(ch, ""), r_str.replace(ch, "")
    if p_str == r_str:
        return True
    same_brackets = (_wrapped(pred, "[", "]") and _wrapped(ref, "[", "]")) or \
        (_wrapped(pred, "(", ")") and _wrapped(ref, "(", ")"))
    if same_brackets:
        p_parts, r_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(p_parts) == len(r_parts) and all(math_equal(a, b, include_percentage, is_close)
                                                for a, b in zip(p_parts, r_parts, strict=True)):
            return True
    return symbolic_equal(pred, ref)


def grade_paper(pred: str, gt: str) -> bool:
    """The reference pipeline's decision for an `extract_answer` prediction and a
    `parse_ground_truth` answer: `run_execute` applies `strip_string` once more to the prediction."""
    return math_equal(strip_string(pred), gt)
