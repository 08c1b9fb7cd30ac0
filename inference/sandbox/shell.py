"""IPython cell semantics, as the reference ran them (SPEC 2.1), inside a worker process.

The reference ran each cell with `InteractiveShell.run_cell` inside `capture_output`, so the last
expression is displayed and stdout/stderr are captured; we do the same, with the history database
off (its thread would not survive fork) and without its defects: the `Out[n]: ` prompt is never
written (rather than deleted from the text afterwards), tracebacks are recorded aside (so what was
printed before an error is kept) and reduced to the last paragraph, all the reference kept of them
(without the cost of IPython's stack analysis, seconds for a deep recursion), and a timeout raises
inside the cell (state is kept, as after an interrupt in a notebook).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from .observation import TIMEOUT_IN_CELL, Status, error_paragraph, exception_paragraph

# A worker runs this before its trajectory arrives: its first cell in a fresh fork costs several
# milliseconds of copy-on-write faults, better paid while it waits in the stock.
PREFAULT = ("print('a')\n1",)
_WARMUP = ("import sympy, numpy, math, fractions, itertools",
           "x = sympy.Rational(1, 3) + sympy.sqrt(2)\nprint(x)\nnumpy.arange(3)",
           "print('a')\n1/0", "print(", "import sys; print('e', file=sys.stderr)",
           "def f(n):\n    return f(n - 1) if n else 0\nf(3)")


class CellTimeout(BaseException):
    """Raised into the running cell at the deadline; its text is the reference's."""

    def __str__(self) -> str:
        return "'Timed Out'"


def _new_shell() -> InteractiveShell:
    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    shell = InteractiveShell(config=config)
    shell.displayhook.write_output_prompt = lambda: None
    shell.InteractiveTB.set_mode("Minimal")  # only the last paragraph is kept: skip stack analysis
    return shell


class CellRunner:
    """One IPython shell; `run` executes a cell and returns (output, error paragraph, status)."""

    def __init__(self, fd_output: int | None = None) -> None:
        warnings.filterwarnings("ignore")  # as the reference's wrapper did
        self.shell = _new_shell()
        self.fd_output = fd_output
        self._traceback: str | None = None
        self._armed = False
        self._fired = False
        self.shell._showtraceback = self._record_traceback

    @classmethod
    def warmed(cls) -> CellRunner:
        """A runner whose every code path ran once (IPython builds its formatters lazily, ~40 ms),
        so forked workers start hot."""
        runner = cls()
        runner.run_invisibly(_WARMUP)
        return runner

    def run_invisibly(self, cells: tuple[str, ...]) -> None:
        """Run cells, then put the namespace back as it was: the shell looks untouched after."""
        shell = self.shell
        user_ns, hidden = dict(shell.user_ns), dict(shell.user_ns_hidden)
        for cell in cells:
            self.run(cell, timeout_s=60.0)
        shell.user_ns.clear()
        shell.user_ns.update(user_ns)
        shell.user_ns["_oh"].clear()
        shell.user_ns_hidden.clear()
        shell.user_ns_hidden.update(hidden)
        for name in ("last_type", "last_value", "last_traceback", "last_exc"):
            sys.__dict__.pop(name, None)

    def _record_traceback(self, etype, evalue, stb) -> None:
        if isinstance(etype, type) and issubclass(etype, SyntaxError):
            self._traceback = error_paragraph("\n".join(stb))  # IPython's own block, file name included
        else:
            self._traceback = exception_paragraph(etype, evalue)

    def _on_alarm(self, signum, frame) -> None:
        if self._armed:
            self._fired = True
            self._armed = False
            raise CellTimeout()

    def _arm(self, deadline: float) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)
        self._fired = False
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3))

    def _disarm(self) -> None:
        self._armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _drain_fd_output(self) -> str:
        """What subprocesses (and C code) wrote to the worker's real stdout/stderr."""
        if self.fd_output is None:
            return ""
        size = os.lseek(self.fd_output, 0, os.SEEK_END)
        data = os.pread(self.fd_output, size, 0) if size else b""
        os.ftruncate(self.fd_output, 0)
        os.lseek(self.fd_output, 0, os.SEEK_SET)
        return data.decode("utf-8", "replace")

    def run(self, code: str, timeout_s: float | None = None,
            deadline: float | None = None) -> tuple[str, str | None, Status]:
        if deadline is None:
            deadline = time.monotonic() + (timeout_s or 0.0)
        self._traceback = None
        self._drain_fd_output()
        failed = False
        try:
            with capture_output() as captured:
                self._arm(deadline)
                try:
                    result = self.shell.run_cell(code, store_history=False)
                    failed = not result.success
                finally:
                    self._disarm()
        except CellTimeout:
            self._fired = True
        output = captured.stdout + captured.stderr + self._drain_fd_output()
        if self._fired:
            return output, TIMEOUT_IN_CELL, "timeout"
        if not failed:
            return output, None, "ok"
        if self._traceback is not None:
            return output, self._traceback, "error"
        # Formatting fell back to printing (e.g. exception groups): split it as the reference would.
        start = output.find("Traceback")
        return (output[:start] if start >= 0 else ""), error_paragraph(output), "error"
