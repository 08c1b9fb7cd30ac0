"""The tool loop, end to end through the real sandbox.

The tiny world's model has random weights: it never writes a ```python block, a \\boxed{}
answer or an error-raising program on purpose. So the turns here come from a small scripted
OpenAI-compatible server (`FakeServer`), reached through the real `openai` backend; that is the
only stand-in. Everything else is real: the tokenizer and chat template of the tiny world, the
sandbox running the programs, the JSONL writer, resume. Real engines are in test_backends.py; the
cut at "```output", on tokens a real engine sampled, is in test_turn_tokens.py.
"""

import asyncio
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from formats import trajectory
from formats.config import build, read_yaml
from inference import generate
from inference.generate import GenerateConfig, main, python_blocks, run, run_many, sample_seed

ROOT = Path(__file__).resolve().parents[2]

# question -> the turns the scripted "model" writes, one per model call.
SCRIPTS = {
    "solve": ["I will compute it.\n```python\nx = 6 * 7\nprint(x)\n```",
              "The answer is $\\boxed{42}$."],
    "persist": ["```python\na = 5\n```", "```python\nprint(a + 1)\n```", "So $\\boxed{6}$."],
    "error": ["```python\nprint(1 / 0)\n```", "Oops.\n```python\nprint(2)\n```", "$\\boxed{2}$"],
    "loop": ["```python\nprint(1)\n```"] * 10,
    "both": ["```python\nprint(99)\n```\nSo the answer is $\\boxed{1}$."],
    "chat": ["I do not know how to solve this."],
    "long": [" ".join(["word"] * 400)],
    "fail": ["unused"],
}


class FakeServer:
    """/v1/models and /v1/completions, answering from SCRIPTS; it applies `max_tokens` the way
    vLLM does, and fails with HTTP 400 on the question "fail"."""

    def __init__(self, tokenizer, model: str, max_model_len: int = 2048):
        self.tok, self.model, self.max_model_len = tokenizer, model, max_model_len
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [
                    {"id": server.model, "object": "model", "max_model_len": server.max_model_len}]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(req)
                code, obj = server.complete(req)
                self._send(code, obj)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def complete(self, req: dict) -> tuple[int, dict]:
        prompt = self.tok.decode(req["prompt"])
        question = next(q for q in SCRIPTS if f"user\n{q}<end_of_turn>" in prompt)
        if question == "fail":
            return 400, {"error": {"message": "scripted failure", "type": "BadRequestError", "code": 400}}
        calls = prompt.count("<start_of_turn>model\n")
        if calls > len(SCRIPTS[question]):
            return 500, {"error": {"message": f"script of {question!r} exhausted", "code": 500}}
        turn = SCRIPTS[question][calls - 1]
        finish = "stop"
        ids = self.tok(turn, add_special_tokens=False)["input_ids"]
        if len(ids) > req["max_tokens"]:
            ids, finish = ids[:req["max_tokens"]], "length"
            turn = self.tok.decode(ids)
        return 200, {"id": "x", "object": "text_completion", "created": 0, "model": self.model,
                     "choices": [{"index": 0, "text": turn, "finish_reason": finish, "logprobs": None}],
                     "usage": {"prompt_tokens": len(req["prompt"]), "completion_tokens": len(ids),
                               "total_tokens": len(req["prompt"]) + len(ids)}}

    def close(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def tokenizer(tiny_world):
    return AutoTokenizer.from_pretrained(tiny_world / "model")


@pytest.fixture
def server(tiny_world, tokenizer):
    srv = FakeServer(tokenizer, str(tiny_world / "model"))
    yield srv
    srv.close()


def write_problems(path: Path, questions: list[str]) -> Path:
    with open(path, "w") as fh:
        for i, q in enumerate(questions):
            fh.write(json.dumps({"idx": i, "question": q, "answer": f"x\n#### {i}"}) + "\n")
    return path


def make_cfg(tmp_path, server, questions, **over) -> GenerateConfig:
    data = {"model": server.model, "output": str(tmp_path / "out.jsonl"), "progress": False,
            "data": {"path": str(write_problems(tmp_path / "q.jsonl", questions)), "name": "gsm8k"},
            "backend": {"kind": "openai", "base_url": server.url},
            "sampling": {"temperature": 0.0}, "sandbox": {"timeout_s": 10, "prestarted": 1}}
    for key, value in over.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return build(GenerateConfig, data, "test")


def records(cfg) -> dict:
    recs = list(trajectory.read(cfg.output))  # validates every line
    by_question = {r["question"]: r for r in recs}
    assert len(by_question) == len(recs)
    return by_question


def assistant(text):
    return {"role": "assistant", "content": text}


def user(text):
    return {"role": "user", "content": text}


def test_code_runs_and_its_output_comes_back_as_a_user_turn(tmp_path, server):
    cfg = make_cfg(tmp_path, server, ["solve", "persist", "error"])
    stats = run(cfg)
    assert sum(stats.stop_reasons.values()) == 3
    recs = records(cfg)
    solve = recs["solve"]
    assert solve["messages"] == [user("solve"), assistant(SCRIPTS["solve"][0]),
                                 user("```output\n42\n```"), assistant(SCRIPTS["solve"][1])]
    assert (solve["stop_reason"], solve["turns"], solve["pred"]) == ("answer", 2, "42")
    assert solve["id"] == "0:0" and solve["gt"] == "0" and solve["source"] == "current"
    # The sandbox session lives as long as the trajectory: state carries across turns.
    assert recs["persist"]["messages"][4] == user("```output\n6\n```")
    err = recs["error"]["messages"][2]["content"]
    assert "ZeroDivisionError" in err and recs["error"]["pred"] == "2"
    # A turn ends at "```output" (cut on a real engine's tokens in test_turn_tokens.py).
    req = server.requests[0]
    assert "```output" in req["stop"] and 5 in req["stop_token_ids"]  # <end_of_turn>, from the template
    assert req["prompt"][0] == 2 and req["prompt"].count(2) == 1  # one BOS


def test_the_turn_cap_ends_with_the_references_marker(tmp_path, server):
    cfg = make_cfg(tmp_path, server, ["loop"], horizon=3)
    run(cfg)
    rec = records(cfg)["loop"]
    obs = user("```output\n1\n```")
    code = assistant("```python\nprint(1)\n```")
    assert rec["messages"] == [user("loop"), code, obs, code, obs, code, obs,
                               assistant(trajectory.MAX_CALLS_MARKER)]
    assert (rec["stop_reason"], rec["turns"], rec["pred"]) == ("max_turns", 3, "")
    assert len(server.requests) == 3


def test_how_turns_without_code_end(tmp_path, server):
    cfg = make_cfg(tmp_path, server, ["both", "chat"])
    run(cfg)
    recs = records(cfg)
    # Code next to an answer is never run (the reference's rule, SPEC 1.3).
    assert recs["both"]["messages"] == [user("both"), assistant(SCRIPTS["both"][0])]
    assert (recs["both"]["stop_reason"], recs["both"]["pred"]) == ("answer", "1")
    assert (recs["chat"]["stop_reason"], recs["chat"]["turns"]) == ("no_code", 1)


def test_token_caps_per_turn_and_per_trajectory(tmp_path, server, tokenizer):
    cfg = make_cfg(tmp_path, server, ["long", "persist"], **{
        "sampling.max_tokens_per_turn": 20, "sampling.max_tokens_per_trajectory": 70})
    run(cfg)
    recs = records(cfg)
    assert (recs["long"]["stop_reason"], recs["long"]["generated_tokens"]) == ("max_tokens", 20)
    for req in server.requests:
        assert req["max_tokens"] <= 20 and len(req["prompt"]) + req["max_tokens"] <= 70
    assert any(r["max_tokens"] < 20 for r in server.requests)  # the trajectory cap bit
    assert recs["persist"]["stop_reason"] == "max_tokens"


def test_no_trajectory_cap_leaves_only_the_context(tmp_path, tiny_world, tokenizer):
    """Evaluation setting "official" (max_tokens_per_trajectory 0): the official scripts cap each call,
    never the trajectory (SPEC 1.1); only the model's context ends a long one."""
    srv = FakeServer(tokenizer, str(tiny_world / "model"), max_model_len=120)
    try:
        cfg = make_cfg(tmp_path, srv, ["persist", "long"], **{
            "sampling.max_tokens_per_turn": 500, "sampling.max_tokens_per_trajectory": 0})
        run(cfg)
    finally:
        srv.close()
    recs = records(cfg)
    assert (recs["persist"]["stop_reason"], recs["persist"]["turns"]) == ("answer", 3)
    assert recs["long"]["stop_reason"] == "context"
    assert all(len(r["prompt"]) + r["max_tokens"] <= 120 for r in srv.requests)


def test_a_failed_request_is_recorded_and_the_run_goes_on(tmp_path, server):
    cfg = make_cfg(tmp_path, server, ["solve", "fail", "chat"])
    stats = run(cfg)
    recs = records(cfg)
    assert recs["fail"]["stop_reason"] == "failed"
    assert "HTTP 400" in recs["fail"]["error"] and "scripted failure" in recs["fail"]["error"]
    assert recs["solve"]["stop_reason"] == "answer" and recs["chat"]["stop_reason"] == "no_code"
    assert stats.stop_reasons["failed"] == 1


def test_a_prompt_longer_than_the_context_is_recorded(tmp_path, tiny_world, tokenizer, caplog):
    srv = FakeServer(tokenizer, str(tiny_world / "model"), max_model_len=80)
    try:
        cfg = make_cfg(tmp_path, srv, ["chat", "very " * 60])
        run(cfg)
    finally:
        srv.close()
    recs = records(cfg)
    long_q = recs[("very " * 60).strip()]
    assert (long_q["stop_reason"], long_q["turns"]) == ("context", 0)
    assert "the model's context is 80" in caplog.text
    assert recs["chat"]["stop_reason"] == "no_code"
    assert len(srv.requests) == 1


def test_every_sample_gets_its_own_seed(tmp_path, server):
    cfg = make_cfg(tmp_path, server, ["solve", "chat"], **{
        "sampling.n": 3, "sampling.temperature": 1.0, "sampling.seed": 7, "sampling.top_p": 0.9,
        "sampling.top_k": 20})
    run(cfg)
    recs = list(trajectory.read(cfg.output))
    assert sorted(r["id"] for r in recs) == ["0:0", "0:1", "0:2", "1:0", "1:1", "1:2"]
    assert {r["seed"] for r in recs} == {sample_seed(7, r["idx"], r["sample"]) for r in recs}
    seeds = [q["seed"] for q in server.requests]
    assert len(set(seeds)) == len(seeds) == 9  # every sample and every turn: its own seed
    assert {(q["temperature"], q["top_p"], q["top_k"]) for q in server.requests} == {(1.0, 0.9, 20)}
    assert recs[0]["sampling"]["temperature"] == 1.0 and recs[0]["sampling"]["horizon"] == 6


def test_resume_skips_finished_ids_and_drops_a_torn_line(tmp_path, server):
    questions = ["solve", "persist", "error", "chat"]
    run(make_cfg(tmp_path, server, questions, **{"data.limit": 2}))
    out = Path(tmp_path / "out.jsonl")
    first = out.read_text().split("\n")[:-1]
    with open(out, "a") as fh:  # what a SIGKILL in the middle of a write leaves
        fh.write('{"id": "2:0", "idx": "2", "sampl')
    n_before = len(server.requests)
    run(make_cfg(tmp_path, server, questions))
    lines = out.read_text().split("\n")[:-1]
    assert lines[:2] == first
    ids = [json.loads(line)["id"] for line in lines]
    assert sorted(ids) == ["0:0", "1:0", "2:0", "3:0"]
    assert all("user\nsolve" not in server.tok.decode(r["prompt"]) for r in server.requests[n_before:])
    run(make_cfg(tmp_path, server, questions))  # nothing left to do
    assert len(out.read_text().split("\n")[:-1]) == 4


def test_resume_refuses_a_file_from_another_configuration(tmp_path, server):
    run(make_cfg(tmp_path, server, ["chat"]))
    with pytest.raises(SystemExit, match="line 1: written by another configuration"):
        run(make_cfg(tmp_path, server, ["chat"], **{"sampling.temperature": 0.5}))


def test_a_second_writer_is_refused_and_told_who_writes(tmp_path):
    """Two runs appending to one JSONL would interleave lines; the second is refused, naming the first."""
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\nfh = open(sys.argv[1], 'a')\nfcntl.flock(fh, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\ntime.sleep(60)"), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=rf"another run is writing to {out}: process {holder.pid} \("):
            generate.Output(str(out), "m", {}, "current")
    finally:
        holder.kill()
        holder.wait()
    generate.Output(str(out), "m", {}, "current").close()  # free again once the writer is gone


def test_unknown_model_path_is_a_clear_error(tmp_path, server):
    cfg = make_cfg(tmp_path, server, ["chat"], model=str(tmp_path / "no-such-model"))
    with pytest.raises(SystemExit, match="no-such-model.*no such folder"):
        run(cfg)


def test_template_without_generation_prompt_is_a_clear_error(tmp_path, server, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    cfg_path = tmp_path / "tok" / "chat_template.jinja"
    cfg_path.write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    cfg = make_cfg(tmp_path, server, ["chat"], tokenizer=str(tmp_path / "tok"))
    with pytest.raises(SystemExit, match="adds no generation prompt"):
        run(cfg)


def test_runs_of_one_model_share_one_engine(tmp_path, server, monkeypatch):
    (tmp_path / "b").mkdir()
    evaluation = make_cfg(tmp_path, server, ["solve", "chat"])
    collection = make_cfg(tmp_path / "b", server, ["persist"], source="previous",
                          **{"sampling.n": 2, "sampling.temperature": 1.0})
    engines = []
    real = generate.make_backend
    monkeypatch.setattr(generate, "make_backend", lambda *a: engines.append(a) or real(*a))
    stats = run_many([evaluation, collection])
    assert len(engines) == 1
    assert [sum(s.stop_reasons.values()) for s in stats] == [2, 2]
    assert records(evaluation)["solve"]["pred"] == "42"
    recs = list(trajectory.read(collection.output))
    assert sorted(r["id"] for r in recs) == ["0:0", "0:1"] and {r["source"] for r in recs} == {"previous"}
    assert {r["sampling"]["temperature"] for r in recs} == {1.0}
    run_many([evaluation, collection])  # both complete: no engine is started
    assert len(engines) == 1


def test_runs_that_cannot_share_an_engine_get_one_each_and_never_share_outputs(tmp_path, server, monkeypatch):
    for sub in "bc":
        (tmp_path / sub).mkdir()
    a = make_cfg(tmp_path, server, ["chat"])
    b = make_cfg(tmp_path / "b", server, ["chat"], **{"backend.max_num_seqs": 7})
    c = make_cfg(tmp_path / "c", server, ["solve"])
    assert generate.engine_groups([a, b, c]) == [[0, 2], [1]]
    engines = []
    real = generate.make_backend
    monkeypatch.setattr(generate, "make_backend", lambda *a: engines.append(a[0]) or real(*a))
    stats = run_many([a, b, c])
    assert [e.max_num_seqs for e in engines] == [None, 7]
    assert [sum(s.stop_reasons.values()) for s in stats] == [1, 1, 1]
    with pytest.raises(SystemExit, match="must agree on model"):
        asyncio.run(generate.generate_many([a, b]))
    with pytest.raises(SystemExit, match="same output file"):
        run_many([a, make_cfg(tmp_path, server, ["solve"])])


def test_the_command_line_joins_runs_with_and(tmp_path, server, capsys):
    data = write_problems(tmp_path / "q.jsonl", ["solve", "chat"])
    common = [f"model={server.model}", f"data.path={data}", "backend.kind=openai", f"backend.base_url={server.url}",
              "sampling.temperature=0", "progress=false", "sandbox.timeout_s=10"]
    main([*common, f"output={tmp_path / 'a.jsonl'}", "data.limit=1", "--and", *common,
          f"output={tmp_path / 'b.jsonl'}"])
    assert len(list(trajectory.read(tmp_path / "a.jsonl"))) == 1
    assert len(list(trajectory.read(tmp_path / "b.jsonl"))) == 2
    assert capsys.readouterr().err.count("wrote 2 trajectories") == 1


def test_python_blocks():
    turn = "a\n```python\nx = 1\n```\ntext\n```python\nprint(x)\n```"
    assert python_blocks(turn) == ["x = 1", "print(x)"]
    assert python_blocks("```python\nprint(1)\n") == ["print(1)\n"]
    assert python_blocks("no code") == []


@pytest.mark.parametrize("name", ["generate_tiny.yaml", "generate_gemma_collect.yaml",
                                  "generate_gemma_eval.yaml"])
def test_shipped_configs_parse(name):
    data, lines = read_yaml(ROOT / "inference" / "configs" / name)
    build(GenerateConfig, data, name, where=lines)  # typed, unknown keys refused; values: the paper's, in the file


def test_help_lists_the_fields():
    proc = subprocess.run([sys.executable, "-m", "inference.generate", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for name in ("sampling.max_tokens_per_turn", "backend.data_parallel_size", "sandbox.timeout_s"):
        assert name in proc.stdout
