"""A grader that is mathematically right where the official one is lenient or blind (FIELD 5).

Rules, each a deliberate difference from `paper`:
- numbers are exact: decimals become exact rationals (`0.5` == `\\frac12`, `1.0001` != `1`,
  `0.333` != `\\frac13`); only a ground truth written as a decimal is matched by an exact
  prediction that rounds to it (`\\sqrt2` for `1.41`);
- a percentage counts only where one side is written as one, never `500` for `5`; a ground
  truth written as a percentage answers "what percent" and, as in MATH, is matched by the number
  of percent (`10` or `10\\%` for `10\\%`), not by the fraction (`0.1`); a predicted percentage
  matches its value (`25\\%` == `\\frac14`); degrees match radians only where one side carries
  `^\\circ` (inside a trig function the degree sign is the factor pi/180);
- bare lists and sets are unordered (`3,5` == `5,3`, `\\{1,2\\}` == `\\{2,1\\}`), tuples and
  intervals are ordered and keep their brackets (`(1,2]` != `[1,2)`), unions are unordered;
- thousands separators (`18{,}000`, `15,\\!000`, `1,100`; not `1, 100`, a list), units (and
  any words after a plain number: `12 apples`, not `3 dozen`), `\\$`, `\\text{}` wrappers, `x \\in`,
  and `x =` in front of an answer are dropped, but `y = 5` does not answer `x = 5`; plain-text
  mixed numbers are read as such (`2 1/2` == `\\frac52`), Unicode signs as their LaTeX
  (`∞`, `∪`, `π`, `≤`, `≥`, `−`); equations match when one is a non-zero multiple of
  the other, inequalities when they define the same set, matrices element by element, text
  answers case-insensitively; `1011_2` is matched by its digits, or by `11` when it carries its
  base.
Parsing uses latex2sympy2_extended (math-verify's parser); equality of exact expressions is
shown by sympy or, when simplify cannot decide, by evaluation at 60 digits (at random points for
expressions with variables). The grader reads the raw answer (`extract_raw_answer`) when it has
one, because `strip_string` destroys meaning (`\\%`, `\\cdot`, `and`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import lru_cache

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
from latex2sympy2_extended.math_normalization import NormalizationConfig

from .extract import _fix_fracs

_CONVERSION = ConversionConfig(lowercase_symbols=False, interpret_as_mixed_fractions=True)
_NO_NORMALISATION = NormalizationConfig(basic_latex=False, units=False, malformed_operators=False,
                                        nits=False, boxed="none", equations=False)

_UNITS = ("cm|mm|km|m|meters?|metres?|kilometers?|centimeters?|inch|inches|in|feet|foot|ft|yards?|"
          "yd|miles?|mi|units?|square|sq|cubic|cu|degrees?|dollars?|cents?|hours?|hrs?|minutes?|"
          "mins?|seconds?|secs?|s|days?|weeks?|months?|years?|mph|pounds?|lbs?|ounces?|oz|gallons?|"
          "liters?|litres?|ml|l|kg|g|grams?|students?|people|persons?|teachers?|points?|ways?|"
          "times")
_BARE_UNIT_AT_END = re.compile(rf"\s((?:(?:{_UNITS})\.?(?:\^\{{?\d\}}?)?\s*)+)$", re.IGNORECASE)
_TEXT_AT_END = re.compile(r"\\(?:text|mbox|mathrm|textrm)\s*\{([A-Za-z .]*)\}(?:\^\{?\d\}?)?\s*$")
_DAYTIME = re.compile(r"[ap]\.?\s*m\.?", re.IGNORECASE)
# Words after a plain number are its unit (`12 apples`, `45 miles per hour`) unless they change
# its value or are maths.
_WORDS_AFTER_NUMBER = re.compile(r"^([-+]?(?:\d+(?:\.\d+)?|\.\d+|\d+\s+\d+/\d+|\d+/\d+))"
                                 r"\s+([A-Za-z]{3,}(?:\s+[A-Za-z]+)*)\.?$")
_NOT_UNITS = {"dozen", "dozens", "score", "hundred", "hundreds", "thousand", "thousands", "million",
              "millions", "billion", "billions", "trillion", "half", "halves", "third", "thirds",
              "quarter", "quarters", "squared", "cubed", "sqrt", "root", "roots", "factorial", "and",
              "plus", "minus", "times", "over", "log", "sin", "cos", "tan", "exp", "more", "less"}
_MIXED_NUMBER = re.compile(r"(^|,\s*)(-?)(\d+)\s+(\d+)/(\d+)(?=\s*(?:,|$))")
_UNICODE = {"∞": "\\infty", "∪": "\\cup", "π": "\\pi", "≤": "\\le", "≥": "\\ge", "−": "-"}
_PERCENT = re.compile(r"\\?%|\bpercent\b")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)"
                       r"\s*{")
_SPACES = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad|~|\\displaystyle|\\(?:big|Big|bigg|Bigg)[lr]?")
_MATRIX = re.compile(r"\\begin\{[pbvBV]?matrix\}.*?\\end\{[pbvBV]?matrix\}")
_ROW_BREAK = re.compile(r"(?<!\\)\\(?=[\s\d\-+.(])")
_REPEATING = re.compile(r"(-?)(\d*)\.(\d*)\\(?:overline|bar)\{(\d+)\}")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")  # no space after a comma: `1, 100` is a list
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)(?![\d.])")
_ASSIGNED = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?(?:\([^()]*\))?\s*(?:=|\\approx)(?!=)")
_VARIABLE = re.compile(r"^\s*([A-Za-z](?:_\{?\w+\}?)?)\s*(?:=|\\approx)(?!=)")  # `x =`, not `f(x) =`
_TRIG = re.compile(r"\\(?:sin|cos|tan|sec|csc|cot)\b")
_MATRIX_IN_BRACKETS = re.compile(r"^\[\s*\\begin\{matrix\}(.*)\\end\{matrix\}\s*\]$")
_BASE = re.compile(r"^(\d+)_\{?(\d+)\}?$")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                 "nineteen", "twenty")
# Whole answers that name the same thing another way.
_SAME_AS = {**{w: str(n) for n, w in enumerate(_NUMBER_WORDS)},
            "\\varnothing": "\\emptyset", "\\{\\}": "\\emptyset", "\\{ \\}": "\\emptyset",
            "all real numbers": "(-\\infty,\\infty)", "\\mathbb{r}": "(-\\infty,\\infty)"}
_WORD = re.compile(r"^[A-Za-z][A-Za-z\s'\-.]*$")
_CHOICE = re.compile(r"^\(?([A-Za-z])\)?$")
# points for identity tests: irregular, of both signs, so that |x| != x and branches show
_RANDOM_POINTS = (sympy.Rational(7317, 10000), sympy.Rational(-12391, 10000), sympy.Rational(25173, 10000))


@dataclass(frozen=True)
class Answer:
    """A cleaned answer and what the cleaning took away that still matters."""

    text: str
    percent: bool = False
    degrees: bool = False
    thousands: str = ""  # the text before `1,100` became `1100`: a list of two, to another reader


def _unwrap_text(s: str) -> str:
    """`\\text{abc}` -> `abc` (brace-balanced), for every text-like command."""
    while (m := _TEXT_CMD.search(s)) is not None:
        depth, end = 1, m.end()
        while end < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[end], 0)
            end += 1
        inner = s[m.end():end - 1] if depth == 0 else s[m.end():]
        s = s[:m.start()] + inner + s[end:]
    return s


def _drop_unit(s: str) -> str:
    """Drop a trailing unit (`5\\text{ cm}^2`, `81 teachers`) when a value remains; times of day
    (`9 a.m.`) keep theirs."""
    m = _TEXT_AT_END.search(s) or _BARE_UNIT_AT_END.search(s)
    if m and not _DAYTIME.fullmatch(m.group(1).strip()):
        rest = s[:m.start()].strip()
        if re.search(r"[\d}]", rest):
            return rest
    m = _WORDS_AFTER_NUMBER.match(s)
    if m and not {w.lower() for w in m.group(2).split()} & _NOT_UNITS:
        return m.group(1)
    return s


def _mixed_number(m: re.Match) -> str:
    """`2 1/2` -> `\\frac{5}{2}`: a whole number and a proper fraction, as written in plain text."""
    whole, num, den = int(m.group(3)), int(m.group(4)), int(m.group(5))
    if not 0 < num < den:
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}\\frac{{{whole * den + num}}}{{{den}}}"


def _repeating(m: re.Match) -> str:
    """`1.2\\overline{34}` -> the exact fraction it denotes."""
    sign, whole, fixed, period = m.group(1), m.group(2) or "0", m.group(3), m.group(4)
    value = Fraction(int(whole + fixed + period) - int(whole + fixed),
                     10 ** len(fixed) * (10 ** len(period) - 1))
    return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}"


def normalise(raw: str) -> Answer:
    s = str(raw).strip().replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\left", "").replace("\\right", "").replace("{,}", ",")
    s = re.sub(r",\s*\\!\s*", ",", s)  # `15,\\!000`: a TeX thousands separator
    for sign, latex in _UNICODE.items():
        s = s.replace(sign, latex)
    s = _SPACES.sub(" ", s)
    percent = bool(_PERCENT.search(s))
    s = _PERCENT.sub("", s)
    if _TRIG.search(s):  # `\\cos 60^\\circ`: the degree sign is a factor pi/180 inside the function
        s = _DEGREES.sub(r"\\cdot\\frac{\\pi}{180}", s)
    degrees = bool(_DEGREES.search(s) or re.search(r"\bdegrees?\b", s))
    s = _DEGREES.sub("", s).replace("\\$", "").replace("$", "")
    s = _REPEATING.sub(_repeating, s)
    s = _unwrap_text(_drop_unit(s.strip()))
    s = _drop_unit(s.strip()).strip().rstrip(".").strip()
    s = _MIXED_NUMBER.sub(_mixed_number, s)
    s = re.sub(r"^(?:[A-Za-z]\s*\\in|\\approx)\s*", "", s)
    s = re.sub(r"\binfinity\b|\binf\b", r"\\infty", s)
    s = _fix_fracs(re.sub(r"\\sqrt\s*(\d|[A-Za-z])", r"\\sqrt{\1}", s).replace("\\frac ", "\\frac"))
    s = _MATRIX.sub(lambda m: _ROW_BREAK.sub(r"\\\\", m.group(0)), s)  # `strip_string` halves `\\`
    s = _MATRIX_IN_BRACKETS.sub(r"\\begin{bmatrix}\1\\end{bmatrix}", _unbrace(s))
    s = _SAME_AS.get(re.sub(r"\s+", " ", s.lower()), s)
    thousands = ""
    if _THOUSANDS.fullmatch(s) or re.fullmatch(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
        thousands, s = s, s.replace(",", "").replace(" ", "")
    return Answer(s, percent, degrees, thousands)


def _unbrace(s: str) -> str:
    """`{{5}}` -> `5`: braces around the whole answer carry nothing."""
    while len(s) > 1 and s[0] == "{" and _closing(s, 0) == len(s) - 1:
        s = s[1:-1].strip()
    return s


def _closing(s: str, start: int) -> int:
    """Index of the bracket closing the one at `start` (any of ([{ vs )]}), or -1."""
    depth = 0
    for i in range(start, len(s)):
        if s[i] in "([{" and s[i - 1:i] != "\\" or s.startswith("\\{", i):
            depth += 1
        elif s[i] in ")]}" and s[i - 1:i] != "\\" or s.startswith("\\}", i):
            depth -= 1
            if depth == 0:
                return i + (1 if s.startswith("\\}", i) else 0)
    return -1


def _split_top(s: str, seps: tuple[str, ...]) -> list[str]:
    """Split on separators outside any bracket pair."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s.startswith("\\{", i) or s.startswith("\\begin", i):
            depth, i = depth + 1, i + 2
            continue
        if s.startswith("\\}", i) or s.startswith("\\end", i):
            depth, i = depth - 1, i + 2
            continue
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            sep = next((x for x in seps if s.startswith(x, i)), None)
            if sep:
                parts.append(s[start:i])
                start = i = i + len(sep)
                continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


@dataclass(frozen=True)
class Node:
    """kind: scalar | list (unordered) | set | seq (ordered, with its brackets) | union."""

    kind: str
    items: tuple = ()
    text: str = ""
    brackets: str = ""
    name: str = ""  # the variable a scalar was given for (`x = 5`), if any


def _expand_pm(items: list[str]) -> list[str]:
    out = []
    for it in items:
        if "\\pm" in it or "\\mp" in it:
            plus = it.replace("\\pm", "+").replace("\\mp", "-")
            out += [plus, it.replace("\\pm", "-").replace("\\mp", "+")]
        else:
            out.append(it)
    return out


def _strip_assignment(s: str) -> str:
    """`x = 5` -> `5`, `f(x) = 2x` -> `2x`, `a = b = 3` -> `3`: the name is not the answer."""
    if _ASSIGNED.match(s):
        return re.split(r"=|\\approx", s)[-1].strip()
    return s


def structure(s: str) -> Node:
    s = _unbrace(s.strip())
    union = _split_top(s, ("\\cup",))
    if len(union) > 1:
        return Node("union", tuple(structure(u) for u in union))
    if s.startswith("\\{") and s.endswith("\\}") and _closing(s, 0) == len(s) - 1:
        return Node("set", tuple(_scalars(_split_top(s[2:-2], (",", ";")))))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _closing(s, 0) == len(s) - 1:
        inner = _split_top(s[1:-1], (",",))
        if len(inner) == 1 and s[0] == "(":
            return structure(inner[0])
        return Node("seq", tuple(_scalars(inner)), brackets=s[0] + s[-1])
    items = _split_top(s, (",", ";", " and ", " or ", "\\text{ and }", "\\text{ or }"))
    items = [i for i in _expand_pm(items) if i]
    if len(items) > 1:
        return Node("list", tuple(_scalars(items)))
    return _scalar(s)


def _scalar(s: str) -> Node:
    m = _VARIABLE.match(s)
    return Node("scalar", text=_strip_assignment(s), name=m.group(1).replace("{", "").replace("}", "") if m else "")


def _scalars(items: list[str]) -> list[Node]:
    out = []
    for item in _expand_pm(items):
        if item:
            node = structure(_strip_assignment(item))
            out.append(_scalar(item) if node.kind == "scalar" else node)
    return out


@lru_cache(maxsize=4096)
def _parse(s: str):
    """sympy expression (or relation, set, matrix) with decimals made exact, or None."""
    exact = _DECIMAL.sub(lambda m: "(\\frac{" + (m.group(1) + m.group(2)).lstrip("0").rjust(1, "0")
                         + "}{1" + "0" * len(m.group(2)) + "})", s)
    try:
        expr = latex2sympy(exact, conversion_config=_CONVERSION, normalization_config=_NO_NORMALISATION)
    except Exception:  # noqa: BLE001 - any parser failure means "not a formula"
        return None
    return expr if isinstance(expr, sympy.Basic | sympy.MatrixBase) else None


def _number(s: str) -> sympy.Rational | None:
    if _PLAIN_NUMBER.fullmatch(s):
        return sympy.Rational(s.replace("+", "") if "e" not in s.lower() else str(Decimal(s)))
    return None


def _as_value(s: str):
    n = _number(s)
    return n if n is not None else _parse(s)


def _decimals(s: str) -> int | None:
    """Decimal places of a plain decimal ground truth (`1.41` -> 2), else None."""
    m = re.fullmatch(r"-?\d*\.(\d+)", s)
    return len(m.group(1)) if m else None


def _close(a, b) -> bool | None:
    """Equal at 60 digits? None when either side does not evaluate to a finite number."""
    x, y = sympy.N(a, 60), sympy.N(b, 60)
    if not (x.is_number and y.is_number) or x.has(sympy.nan, sympy.zoo) or y.has(sympy.nan, sympy.zoo):
        return None
    scale = max(1, abs(x), abs(y))
    return bool(abs(x - y) <= sympy.Float("1e-45", 60) * scale)


def _expr_equal(a, b) -> bool:
    """Exact equality of two parsed answers; no tolerance beyond 60-digit evaluation."""
    if a == b:
        return True
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        return _matrix_equal(a, b)
    if isinstance(a, sympy.Set) or isinstance(b, sympy.Set):
        return isinstance(a, sympy.Set) and isinstance(b, sympy.Set) and _set_equal(a, b)
    if isinstance(a, sympy.Rel | sympy.And | sympy.Or) or isinstance(b, sympy.Rel | sympy.And | sympy.Or):
        return _relation_equal(a, b)
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return False
    i = sympy.Symbol("i")
    free = a.free_symbols | b.free_symbols
    if free == {i}:  # a complex answer: `i` is the imaginary unit
        a, b, free = a.subs(i, sympy.I), b.subs(i, sympy.I), set()
    try:
        if a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
            return bool(sympy.simplify(a) == sympy.simplify(b))
        if a.free_symbols != b.free_symbols:
            return False
        if not free:
            diff = (a - b).doit()
            if diff.is_Rational:
                return diff == 0
            close = _close(a, b)
        else:
            close = _close_at_points(a, b, sorted(free, key=str))
        if close is not None:
            return close
        return bool(sympy.simplify(a - b) == 0)
    except Exception:  # noqa: BLE001 - sympy failures mean "not shown equal"
        return False


def _close_at_points(a, b, symbols: list) -> bool | None:
    """Identity test at three points: equal at all -> True, different at one -> False."""
    verdicts = []
    for j in range(len(_RANDOM_POINTS)):
        point = {sym: _RANDOM_POINTS[(j + k) % 3] + k for k, sym in enumerate(symbols)}
        verdicts.append(_close(a.subs(point), b.subs(point)))
    if False in verdicts:
        return False
    return True if all(verdicts) else None


def _matrix_equal(a, b) -> bool:
    if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
        return False
    return all(_expr_equal(x, y) for x, y in zip(a, b, strict=True))


def _set_equal(a: sympy.Set, b: sympy.Set) -> bool:
    if isinstance(a, sympy.FiniteSet) and isinstance(b, sympy.FiniteSet):
        return _multiset_equal(list(a), list(b), _expr_equal)
    if a == b:
        return True
    try:
        return bool(sympy.simplify(sympy.Complement(a, b)) == sympy.S.EmptySet
                    and sympy.simplify(sympy.Complement(b, a)) == sympy.S.EmptySet)
    except Exception:  # noqa: BLE001
        return False


def _relation_equal(a, b) -> bool:
    if isinstance(a, sympy.Eq) and isinstance(b, sympy.Eq):
        da, db = a.lhs - a.rhs, b.lhs - b.rhs
        try:
            ratio = sympy.simplify(da / db)
        except Exception:  # noqa: BLE001
            return False
        return bool(ratio.is_number and ratio != 0 and ratio.is_finite)
    sa, sb = _as_set(a), _as_set(b)
    return sa is not None and sb is not None and _set_equal(sa, sb)


def _as_set(x):
    if isinstance(x, sympy.Set):
        return x
    if isinstance(x, sympy.Rel | sympy.And | sympy.Or) and len(x.free_symbols) == 1:
        try:
            return x.as_set()
        except Exception:  # noqa: BLE001
            return None
    return None


def _multiset_equal(xs: list, ys: list, eq) -> bool:
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        hit = next((k for k, y in enumerate(left) if eq(x, y)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _word(s: str) -> str | None:
    """A text answer (`Saturday`, `even`, `no solution`): three letters or more, no maths."""
    s = s.strip()
    if _WORD.match(s) and len(re.sub(r"[^A-Za-z]", "", s)) >= 3:
        return re.sub(r"[^a-z]", "", s.lower())
    return None


def _loose_text(s: str) -> str | None:
    """Text with words in it (`1:03 PM`), compared without case, spaces and dots."""
    return re.sub(r"[\s.]", "", s.lower()) if re.search(r"[A-Za-z]{2}", s) else None


def _scalar_equal(p: str, g: str, pa: Answer, ga: Answer) -> bool:
    if _key(p) == _key(g) or (_loose_text(p) is not None and _loose_text(p) == _loose_text(g)):
        return True
    pw, gw = _word(p), _word(g)
    if pw is not None or gw is not None:
        return pw == gw
    pc, gc = _CHOICE.match(p), _CHOICE.match(g)
    if pc and gc:
        return pc.group(1) == gc.group(1)
    if _BASE.match(p) or _BASE.match(g):
        return _same_in_base(p, g)
    pv, gv = _as_value(p), _as_value(g)
    if pv is None or gv is None:
        return False
    for target in _targets(gv, pa, ga):
        if _expr_equal(pv, target):
            return True
    if ga.degrees != pa.degrees and isinstance(pv, sympy.Expr) and isinstance(gv, sympy.Expr):
        if ga.degrees and pv.has(sympy.pi) and _expr_equal(pv, gv * sympy.pi / 180):
            return True
        if pa.degrees and gv.has(sympy.pi) and _expr_equal(pv * sympy.pi / 180, gv):
            return True
    places = _decimals(g)
    if places is not None and _decimals(p) is None and _number(p) is None and isinstance(pv, sympy.Expr):
        return _rounds_to(pv, g, places)
    return False


def _same_in_base(p: str, g: str) -> bool:
    """`1011_2` matches `1011_2`, and `11` or `1011` when the prediction carries the base; a
    ground truth in base 2 is matched by its digits, not by a bare decimal value (`22`)."""
    pm, gm = _BASE.match(p), _BASE.match(g)
    try:
        if pm and gm:
            return int(pm.group(1), int(pm.group(2))) == int(gm.group(1), int(gm.group(2)))
        if gm:
            return p == gm.group(1)
        return g.isdigit() and int(g) in (int(pm.group(1)), int(pm.group(1), int(pm.group(2))))
    except ValueError:  # a digit too large for its base, or a base outside 2..36
        return p == g


def _targets(gv, pa: Answer, ga: Answer) -> list:
    """Values the prediction may equal: a predicted percentage may be read as written or as a
    fraction; a ground truth percentage answers "what percent" with the number of percent (MATH)."""
    if not isinstance(gv, sympy.Expr):
        return [gv]
    if pa.percent and not ga.percent:
        return [gv, gv * 100]
    return [gv]


def _rounds_to(value: sympy.Expr, g: str, places: int) -> bool:
    """An exact value with no finite decimal expansion (`\\frac13`, `\\sqrt2`) matches its
    rounding; a terminating one (`\\frac{39}{20}`) must equal the decimal exactly."""
    try:
        value = value.doit()
        if value.is_Rational and not sympy.factorint(value.q).keys() - {2, 5}:
            return False
        v = sympy.N(value, 40)
        if not v.is_real:
            return False
        rounded = Decimal(str(v)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        return rounded == Decimal(g)
    except Exception:  # noqa: BLE001
        return False


def _node_equal(p: Node, g: Node, pa: Answer, ga: Answer) -> bool:
    if g.kind == "scalar" and p.kind == "scalar":
        if p.name and g.name and p.name != g.name:  # `y = 5` does not answer `x = 5`
            return False
        return _scalar_equal(p.text, g.text, pa, ga)
    if g.kind in ("list", "set") and p.kind in ("list", "set", "seq"):
        return _multiset_equal(list(p.items), list(g.items), lambda x, y: _node_equal(x, y, pa, ga))
    if g.kind == "seq" and (p.kind == "seq" or p.kind == "list" and g.brackets == "()"):
        if p.kind == "seq" and p.brackets != g.brackets:  # `(1,2]` is not `[1,2)`
            return False
        return len(p.items) == len(g.items) and all(
            _node_equal(x, y, pa, ga) for x, y in zip(p.items, g.items, strict=True))
    if g.kind == "union" and p.kind == "union":
        return _multiset_equal(list(p.items), list(g.items), lambda x, y: _node_equal(x, y, pa, ga))
    return _via_sympy(p, g, pa, ga)


def _node_text(n: Node) -> str:
    if n.kind == "scalar":
        return n.text
    inner = ",".join(_node_text(i) for i in n.items)
    if n.kind == "seq":
        return n.brackets[0] + inner + n.brackets[1]
    if n.kind == "union":
        return "\\cup".join(_node_text(i) for i in n.items)
    return "\\{" + inner + "\\}"


def _via_sympy(p: Node, g: Node, pa: Answer, ga: Answer) -> bool:
    """Mixed kinds: an interval against an inequality, a vector against a tuple, one-item lists."""
    if p.kind in ("list", "set") and len(p.items) == 1:
        return _node_equal(p.items[0], g, pa, ga)
    if g.kind in ("list", "set") and len(g.items) == 1:
        return _node_equal(p, g.items[0], pa, ga)
    for seq, other in ((p, g), (g, p)):
        if seq.kind == "seq" and seq.brackets == "()" and other.kind == "scalar":
            vector = _parse(other.text)
            if isinstance(vector, sympy.MatrixBase) and 1 in vector.shape:
                values = [_as_value(it.text) if it.kind == "scalar" else None for it in seq.items]
                return len(values) == len(vector) and all(
                    v is not None and _expr_equal(v, x) for v, x in zip(values, vector, strict=True))
    pv, gv = _parse(_node_text(p)), _parse(_node_text(g))
    ps, gs = _as_set(pv), _as_set(gv)
    return ps is not None and gs is not None and _set_equal(ps, gs)


def _key(s: str) -> str:
    """The answer without insignificant spaces (`2x - 1` = `2x-1`, `\\pi r` = `\\pi{}r`)."""
    return re.sub(r"\s+", "", re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", r"\1{}", s))


def strict_equal(pred: str, gt: str) -> bool:
    """Whether `pred` answers a problem whose answer is `gt` (raw or normalised strings)."""
    pa, ga = normalise(pred), normalise(gt)
    if not pa.text or not ga.text:
        return False
    if pa == ga or (_key(pa.text), pa.percent, pa.degrees) == (_key(ga.text), ga.percent, ga.degrees):
        return True
    if "=" in pa.text or "=" in ga.text:
        pv, gv = _parse(pa.text), _parse(ga.text)
        if isinstance(pv, sympy.Eq) and isinstance(gv, sympy.Eq) and _relation_equal(pv, gv):
            return True
        if "=" in ga.text and not _ASSIGNED.match(ga.text):  # the answer is an equation
            return False
    g = structure(ga.text)
    if _node_equal(structure(pa.text), g, pa, ga):
        return True
    # `45,135` for the list `45^\\circ, 135^\\circ`: the separators were the list's commas
    return bool(pa.thousands) and g.kind == "list" and _node_equal(structure(pa.thousands), g, pa, ga)


def grade_strict(pred: str, gt: str, pred_raw: str | None = None, gt_raw: str | None = None) -> bool:
    return strict_equal(pred_raw if pred_raw else pred, gt_raw if gt_raw else gt)
