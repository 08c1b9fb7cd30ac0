"""`python -m inference.sandbox`: JSON lines in, one JSON line out per input, never a crash."""

import json
import subprocess
import sys

LINES = [
    json.dumps({"id": "state", "cells": ["x = 3", "print(x * 2)"]}),
    "this is not json",
    json.dumps({"id": 7, "cells": []}),
    json.dumps({"id": "escapes", "cells": ["print('a\\nb')", "len('\\\\frac')"]}),
    "",
    json.dumps({"id": "cells not strings", "cells": [1]}),
    json.dumps({"id": "slow", "cells": ["print('start')\nwhile True:\n    pass"]}),
    json.dumps(["a list"]),
    json.dumps({"id": "error", "cells": ["print('before')\n1/0"]}),
]


def run_cli(args, stdin):
    return subprocess.run([sys.executable, "-m", "inference.sandbox", *args], input=stdin, capture_output=True,
                          text=True, timeout=300)


def test_cli_runs_each_trajectory_and_reports_bad_lines():
    done = run_cli(["--mode", "replay", "--timeout", "2", "--workers", "2", "--memory-mb", "512",
                    "--max-output-chars", "1000"], "\n".join(LINES) + "\n")
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["id"] for o in out] == ["state", None, None, "escapes", None, "slow", None, "error"]
    assert (out[0]["observation"], out[0]["status"]) == ("6", "ok")
    assert [t["observation"] for t in out[0]["turns"]] == ["Result is not defined", "6"]
    assert out[1]["line"] == 2 and out[1]["error"].startswith("stdin, line 2: not valid JSON")
    assert out[2]["line"] == 3 and "field 'id'" in out[2]["error"]
    assert [t["observation"] for t in out[3]["turns"]] == ["a\nb", "5"]
    assert out[4]["line"] == 6 and "field 'cells'" in out[4]["error"]
    assert (out[5]["observation"], out[5]["status"]) == ("start\nTimeoutError: 'Timed Out'", "timeout")
    assert out[6]["line"] == 8 and out[6]["status"] == "error"
    assert out[7]["observation"] == "before\nZeroDivisionError: division by zero"


def test_cli_help_lists_the_flags():
    done = run_cli(["--help"], "")
    assert done.returncode == 0
    for flag in ("--timeout", "--memory-mb", "--max-output-chars", "--mode", "--workers", "--isolation"):
        assert flag in done.stdout
