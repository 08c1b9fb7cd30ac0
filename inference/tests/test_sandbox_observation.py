"""The observation strings: the reference's forms, its defects fixed (no processes started)."""

from inference.sandbox.observation import (
    EMPTY,
    compose,
    error_paragraph,
    exception_paragraph,
    truncate,
)


def test_error_paragraph_is_the_references_get_error():
    tb = ("\x1b[31m-----\x1b[39m\nZeroDivisionError   Traceback (most recent call last)\n"
          "Cell In[1], line 2\n----> 2 1/0\n\n\x1b[31mZeroDivisionError\x1b[39m: division by zero\n")
    assert error_paragraph(tb) == "ZeroDivisionError: division by zero"
    # No "Traceback": the whole text, last paragraph (a syntax error block has no blank line).
    assert error_paragraph("  File <ipython-input-1-x>:1\n    print(\n          ^\nSyntaxError: incomplete input\n") \
        == "File <ipython-input-1-x>:1\n    print(\n          ^\nSyntaxError: incomplete input"


def test_exception_paragraph_matches_ipython_verbose_last_block():
    assert exception_paragraph(NameError, NameError("name 'x' is not defined")) == "NameError: name 'x' is not defined"
    assert exception_paragraph(AssertionError, AssertionError()) == "AssertionError:"
    err = ValueError("a\n\nb")
    assert exception_paragraph(ValueError, err) == "b"
    noted = ValueError("x")
    noted.add_note("hint")
    assert exception_paragraph(ValueError, noted) == "ValueError: x\nhint"

    class Broken(Exception):
        def __str__(self):
            raise RuntimeError

    assert exception_paragraph(Broken, Broken()).startswith("Broken: ")


def test_truncate_keeps_head_and_tail_like_tora():
    text = "a" * 300 + "b" * 300
    assert truncate(text, 400) == "a" * 200 + "..." + "b" * 200
    assert truncate(text, 0) == text
    assert truncate("short", 400) == "short"
    assert truncate("abcdefghij", 5) == "ab...hij"


def test_compose_keeps_prints_before_an_error_and_strips():
    assert compose("before\n", "ZeroDivisionError: division by zero", "error", 0).text \
        == "before\nZeroDivisionError: division by zero"
    assert compose("  \n", None, "ok", 0).text == EMPTY
    assert compose("\n6\n", None, "ok", 0).text == "6"
    assert compose("", "NameError: x", "error", 0).text == "NameError: x"
    assert compose("bad \ud800 text", None, "ok", 0).text == "bad ? text"
    obs = compose("x" * 50, None, "ok", 10)
    assert (obs.text, obs.status) == ("xxxxx...xxxxx", "ok")
