"""The three backends on a real model: vLLM's engine in this process, a real `vllm serve` reached
through the OpenAI-compatible client, and transformers.

The model is the tiny world's architecture re-initialised with larger weights (built here, in a
tmp dir): the world's own random model answers every prompt with the same run of newlines, which
would make "identical outputs" an empty check; this one writes varied text. Three engines start per
module, in parallel: the in-process one and two servers (the second is killed mid-run by the last
test: the `openai` backend over several servers loses and duplicates nothing).
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from formats import trajectory
from formats.config import build
from inference.backends import BackendConfig, BackendError, TurnRequest, VLLMBackend
from inference.generate import GenerateConfig, generate_async

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def model(tiny_world, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("model")
    config = AutoConfig.from_pretrained(tiny_world / "model")
    config.initializer_range = 0.3
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_world / "model").save_pretrained(out)
    shutil.copy(tiny_world / "model" / "generation_config.json", out)
    return out


class Server:
    """`vllm serve` in its own process group; `url` waits until it answers."""

    def __init__(self, model: Path, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        # `vllm serve` itself: the console script cannot find its version under vllm-cpu's name.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
             "--host", "127.0.0.1", "--port", str(self.port),
             "--enforce-eager", "--dtype", "float32", "--max-model-len", "2048", "--seed", "0",
             "--no-enable-chunked-prefill"],
            # Unbuffered: the tests count the requests it answered in its access log as they happen.
            env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._ready = False

    @property
    def url(self) -> str:
        deadline = time.monotonic() + 600
        while not self._ready:
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, "vllm serve did not start in 600 s"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=5)
                self._ready = True
            except OSError:
                time.sleep(2)
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, None)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


    def completions(self) -> int:
        """Completion requests it answered, from its access log."""
        return Path(self.log.name).read_text().count('"POST /v1/completions HTTP/1.1" 200')


@pytest.fixture(scope="module")
def servers(model, tmp_path_factory):
    started = [Server(model, tmp_path_factory.mktemp(f"server{i}") / "serve.log") for i in range(2)]
    yield started
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


@pytest.fixture(scope="module")
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def engine(model, loop, servers):  # the servers first: all three engines start at the same time
    for key, value in ENV.items():
        os.environ.setdefault(key, value)

    async def make():
        cfg = BackendConfig(enforce_eager=True, dtype="float32", max_model_len=2048)
        return VLLMBackend(cfg, str(model), None, AutoTokenizer.from_pretrained(model), 0)

    backend = loop.run_until_complete(make())
    yield backend
    backend.close()
    loop.run_until_complete(asyncio.sleep(0.1))  # let its output task see the cancellation


def config(model: Path, tiny_world: Path, out: Path, **over) -> GenerateConfig:
    data = {"model": str(model), "output": str(out), "progress": False,
            "data": {"path": str(tiny_world / "data" / "test.jsonl"), "name": "gsm8k", "limit": 8},
            "sampling": {"temperature": 0.0, "max_tokens_per_turn": 48},
            "backend": {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048},
            "sandbox": {"prestarted": 1}}
    for key, value in over.items():
        section, _, name = key.rpartition(".")
        (data.setdefault(section, {}) if section else data)[name] = value
    return build(GenerateConfig, data, "test")


def by_id(path: Path) -> dict:
    return {r["id"]: r for r in trajectory.read(path)}


def test_three_backends_give_identical_greedy_trajectories(model, tiny_world, tmp_path, engine, server, loop):
    runs = {}
    for kind, backend in (("vllm", engine), ("openai", None), ("transformers", None)):
        cfg = config(model, tiny_world, tmp_path / f"{kind}.jsonl", **{
            "backend.kind": kind, "backend.base_url": server.url})
        loop.run_until_complete(generate_async(cfg, backend))
        runs[kind] = by_id(tmp_path / f"{kind}.jsonl")
    keys = ("messages", "stop_reason", "turns", "pred", "prompt_tokens", "generated_tokens")
    view = {k: {i: tuple(json.dumps(r[f]) for f in keys) for i, r in recs.items()} for k, recs in runs.items()}
    assert len(view["vllm"]) == 8
    assert view["vllm"] == view["openai"] == view["transformers"]
    texts = {r["messages"][1]["content"] for r in runs["vllm"].values()}
    assert len(texts) == 8  # varied text, not one repeated answer


def test_sampling_is_reproducible_and_every_sample_differs(model, tiny_world, tmp_path, engine, loop):
    for name in ("a", "b"):
        cfg = config(model, tiny_world, tmp_path / f"{name}.jsonl", **{
            "sampling.temperature": 1.0, "sampling.top_p": 0.95, "sampling.top_k": 50,
            "sampling.n": 3, "sampling.seed": 11, "data.limit": 4})
        loop.run_until_complete(generate_async(cfg, engine))
    a, b = by_id(tmp_path / "a.jsonl"), by_id(tmp_path / "b.jsonl")
    assert len(a) == 12 and {i: r["messages"] for i, r in a.items()} == {i: r["messages"] for i, r in b.items()}
    for idx in {r["idx"] for r in a.values()}:
        turns = {a[f"{idx}:{k}"]["messages"][1]["content"] for k in range(3)}
        assert len(turns) == 3, f"the samples of problem {idx} are not all different"
    assert next(iter(a.values()))["sampling"]["top_k"] == 50


def test_a_request_vllm_rejects_fails_alone(engine, loop):
    def request(rid: str, ids: list[int]) -> TurnRequest:
        return TurnRequest(rid, ids, 8, 0.0, 1.0, -1, 0, ["```output"], [1, 5])

    with pytest.raises(BackendError, match="out of vocabulary") as info:
        loop.run_until_complete(engine.complete(request("bad", [2, 4, 5000])))
    assert not info.value.fatal
    ok = loop.run_until_complete(engine.complete(request("good", [2, 4, 90, 88])))
    assert ok.n_tokens > 0


def test_sigkill_then_rerun_completes_the_file(model, tiny_world, tmp_path, server):
    """The CLI, killed -9 while writing, then run again: every trajectory once, none lost."""
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "inference.generate", f"model={model}", f"output={out}",
           f"data.path={tiny_world / 'data' / 'test.jsonl'}", "data.limit=40", "sampling.n=2",
           "sampling.max_tokens_per_turn=256", "backend.kind=openai", f"backend.base_url={server.url}",
           "max_active=4", "progress=false", "sandbox.prestarted=1"]
    env = {**os.environ, **ENV}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not out.exists() or len(out.read_bytes().splitlines()) < 5:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = out.read_bytes().split(b"\n")
    assert 5 <= len(before) - 1 < 80, "the run finished before it could be killed"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = out.read_text().split("\n")[:-1]  # not splitlines(): the text holds \x1c, \u2028...
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == 80
    assert lines[: len(before) - 1] == [b.decode() for b in before[:-1]]  # finished lines untouched
    list(trajectory.read(out))


def test_losing_a_server_mid_run_loses_and_duplicates_nothing(model, tiny_world, tmp_path, servers):
    """Last in this module: it kills the second server.

    No race with the machine's speed: the second server is warmed up first (the tests above used
    only the first; a cold server's first answers came after a fast machine had finished the whole
    run on the other), and frozen (SIGSTOP) once both have answered, so that the requests it is
    given from then on hang until it is killed, and the run cannot end before the loss."""
    urls = [srv.url for srv in servers]  # waits for both
    warm = json.dumps({"model": str(model), "prompt": [2, 4, 90, 88], "max_tokens": 8}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{urls[1]}/completions", data=warm, headers={
        "Content-Type": "application/json"}), timeout=600).read()
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "inference.generate", f"model={model}", f"output={out}",
           f"data.path={tiny_world / 'data' / 'test.jsonl'}", "data.limit=40", "sampling.n=2",
           "sampling.max_tokens_per_turn=256", "backend.kind=openai", f"backend.base_urls=[{','.join(urls)}]",
           "max_active=8", "progress=false", "sandbox.prestarted=1"]
    served_earlier = [srv.completions() for srv in servers]  # by the tests above and the warm-up
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 600

    def served() -> list[int]:
        return [srv.completions() - n for srv, n in zip(servers, served_earlier, strict=True)]

    def wait_for(done, what: str) -> None:
        while not done():
            assert proc.poll() is None, f"the run ended {what} ({served()})\n" + proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"no progress in 600 s {what} ({served()})"
            time.sleep(0.05)

    wait_for(lambda: all(served()), "before both servers answered")
    os.killpg(servers[1].proc.pid, signal.SIGSTOP)
    wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) >= 10, "with the second server frozen")
    served_before = served()
    os.killpg(servers[1].proc.pid, signal.SIGKILL)  # its requests in flight fail mid-run
    servers[1].stop()
    done_at_kill = len(out.read_bytes().splitlines())
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]

    assert done_at_kill < 80
    assert served()[0] > served_before[0]  # the survivor took over
    assert f"server {urls[1]} failed request" in stderr and "trying another" in stderr
    records = list(trajectory.read(out))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 80
    assert {r["id"] for r in records} == {f"{r['idx']}:{k}" for r in records for k in range(2)}
    failed = [r for r in records if r["stop_reason"] == "failed"]
    assert not failed, json.dumps(failed[0]["error"])
