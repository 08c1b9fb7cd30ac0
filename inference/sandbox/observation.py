"""What the model sees after its code ran: the reference's strings, with its defects fixed.

Kept from the reference (SPEC 2.1-2.2), because the SFT data taught the model these forms: an
empty result reads `Result is not defined`; an error reads as the last paragraph of IPython's
traceback (e.g. `NameError: name 'x' is not defined`, or the whole `File <ipython-input-1-...>`
block of a syntax error); a timeout reads `TimeoutError: 'Timed Out'` (the in-process alarm) or
`Timeout Error` (the process had to be killed). Fixed: what was printed before an error or a
timeout is kept (SPEC 8.7), `Out[n]: ` is never deleted from real output (8.6), the status comes
from what happened, never from the text (8.5), and runaway output is bounded (8.8).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "error", "timeout"]

EMPTY = "Result is not defined"
TIMEOUT_IN_CELL = "TimeoutError: 'Timed Out'"
TIMEOUT_KILLED = "Timeout Error"
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


@dataclass(frozen=True)
class Observation:
    text: str  # exactly what goes into "```output\n{text}\n```"
    status: Status


def error_paragraph(traceback_text: str) -> str:
    """The reference's `get_error`: ANSI removed, from `Traceback` on, the last paragraph."""
    text = _ANSI.sub("", traceback_text)
    start = text.find("Traceback")
    if start >= 0:
        text = text[start:]
    return text.split("\n\n")[-1].strip()


def exception_paragraph(etype: type, evalue: BaseException) -> str:
    """The last paragraph of IPython's verbose traceback (`Name: message`, then the notes), which
    is all `get_error` kept of it, without paying for the stack analysis of the rest."""
    try:
        text = f"{etype.__name__}: {evalue}"
    except Exception:
        text = f"{etype.__name__}: <exception str() failed>"
    notes = getattr(evalue, "__notes__", None)
    if isinstance(notes, list | tuple):
        text += "".join(f"\n{note}" for note in notes)
    return _ANSI.sub("", text).split("\n\n")[-1].strip()


def truncate(text: str, limit: int) -> str:
    """Head and tail, as ToRA did (200 + '...' + 200 for 400); 0 means no limit."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit // 2
    return text[:head] + "..." + text[len(text) - (limit - head):]


def compose(output: str, error: str | None, status: Status, limit: int) -> Observation:
    """`output` = stdout then stderr of the cell; `error` = its error paragraph, if any."""
    output = output.strip()
    text = (f"{output}\n{error}" if output else error) if error else output or EMPTY
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates would break tokenizers
    return Observation(truncate(text, limit), status)
