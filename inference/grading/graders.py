"""The graders by name, what one grading call takes, and the versions recorded with scores."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

GRADERS = ("paper", "strict")  # what evaluation reports; `paper` is the default (the paper's numbers)
BASELINES = ("math_verify",)   # compared against in tests and benchmarks only
# What a grader's decisions depend on: its modules here (the normalisation in extract.py included)
# and the libraries they call. A version is a digest of these, so any change to them moves it and
# stale scores are re-graded; a hand-kept number was once left behind when `strict` changed.
DEPENDS_ON = {
    "paper": (("paper.py", "extract.py"), ("sympy",)),
    "strict": (("strict.py", "extract.py"), ("sympy", "latex2sympy2_extended")),
    "math_verify": (("graders.py",), ("math-verify", "latex2sympy2_extended", "sympy")),
}
_HERE = Path(__file__).resolve().parent


def source_version(modules: tuple[str, ...], libraries: tuple[str, ...], here: Path = _HERE) -> str:
    """12 hex digits of sha256 over the modules' source and the libraries' installed versions."""
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    for lib in libraries:
        try:
            installed = metadata.version(lib)
        except metadata.PackageNotFoundError:
            installed = "absent"
        digest.update(f"{lib}=={installed}\0".encode())
    return digest.hexdigest()[:12]


VERSIONS = {name: source_version(*deps) for name, deps in DEPENDS_ON.items()}


class Pair(NamedTuple):
    """A prediction and its ground truth: normalised as the reference does (`extract_answer`,
    `parse_ground_truth`), plus the raw strings when known, which the strict grader prefers."""

    pred: str
    gt: str
    pred_raw: str | None = None
    gt_raw: str | None = None


def grader_version(graders: tuple[str, ...] | list[str]) -> str:
    """What goes in a score record's `grader_version`, e.g. `paper=3f0c2a91b7de,strict=...`."""
    check_names(graders)
    return ",".join(f"{g}={VERSIONS[g]}" for g in graders)


def check_names(graders: tuple[str, ...] | list[str]) -> None:
    unknown = [g for g in graders if g not in VERSIONS]
    if unknown or not graders:
        raise ValueError(f"unknown grader(s) {unknown or graders}; choose from {sorted(VERSIONS)}")


def math_verify_equal(pred: str, gt: str) -> bool:
    """Plain math-verify as a baseline: both answers parsed as LaTeX in `$...$`, the gold first
    (its `verify` is asymmetric). Signal timeouts are off: the caller's pool enforces them."""
    from math_verify import parse, verify

    gold = parse(f"${gt}$", parsing_timeout=None)
    answer = parse(f"${pred}$", parsing_timeout=None)
    return bool(verify(gold, answer, timeout_seconds=None))


def grade_now(pair: Pair, grader: str) -> bool:
    """One decision, in this process and without a timeout (workers call this)."""
    if grader == "paper":
        from .paper import grade_paper

        return grade_paper(pair.pred, pair.gt)
    if grader == "strict":
        from .strict import grade_strict

        return grade_strict(pair.pred, pair.gt, pair.pred_raw, pair.gt_raw)
    if grader == "math_verify":
        return math_verify_equal(pair.pred_raw or pair.pred, pair.gt_raw or pair.gt)
    check_names([grader])
    raise AssertionError("unreachable")
