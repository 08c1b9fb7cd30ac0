"""The `openai` backend over several servers: requests go to the least busy live server, a failed
request goes to another one, and a server killed mid-run (two real CPU `vllm serve` processes on
loopback) costs no trajectory and duplicates none."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_backends import ENV, Server, model  # noqa: F401 - `model` is a fixture used here

from formats import trajectory
from inference.backends import BackendConfig, BackendError, OpenAIBackend, TurnRequest

ROOT = Path(__file__).resolve().parents[2]


def request(affinity: int) -> TurnRequest:
    return TurnRequest(f"r{affinity}", [2, 4, 90], 8, 0.0, 1.0, -1, 0, [], [1], affinity=affinity)


def test_least_outstanding_then_the_trajectorys_own_server():
    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1", "http://127.0.0.1:11/v1"]
    backend = OpenAIBackend(BackendConfig(kind="openai", base_urls=urls), "m", None)
    a, b, c = backend.endpoints
    assert [backend._pick(request(k), set()).url for k in range(4)] == [urls[0], urls[1], urls[2], urls[0]]
    a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
    assert all(backend._pick(request(k), set()) is b for k in range(3))  # not round-robin: the least busy
    assert backend._pick(request(1), {1}) is c  # a request is not sent twice to a server that failed it
    c.up = False
    assert backend._pick(request(1), {1}) is a
    assert backend._pick(request(1), {0, 1}) is None


def test_a_server_named_twice_is_refused():
    with pytest.raises(BackendError, match="twice"):
        OpenAIBackend(BackendConfig(kind="openai", base_urls=["http://h:1/v1", "http://h:1/v1"]), "m", None)


@pytest.mark.slow
def test_unreachable_servers_are_fatal_only_when_none_is_left():
    """No server at these ports: the request fails over to the second, then the run must stop."""
    backend = OpenAIBackend(BackendConfig(kind="openai", base_urls=["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"],
                                          request_timeout=5), "m", None)

    async def go():
        try:
            await backend.complete(request(0))
        finally:
            backend.close()

    with pytest.raises(BackendError, match="every server failed") as info:
        asyncio.run(go())
    assert info.value.fatal and "127.0.0.1:9" in str(info.value) and "127.0.0.1:10" in str(info.value)


@pytest.fixture(scope="module")
def servers(model, tmp_path_factory):  # noqa: F811 - the fixture imported above
    started = [Server(model, tmp_path_factory.mktemp(f"server{i}") / "serve.log") for i in range(2)]
    yield started
    for srv in started:
        srv.stop()


def completions(srv: Server) -> int:
    """Completion requests the server answered, from its access log."""
    return Path(srv.log.name).read_text().count('"POST /v1/completions HTTP/1.1" 200')


@pytest.mark.slow
def test_losing_a_server_mid_run_loses_and_duplicates_nothing(model, tiny_world, tmp_path, servers):  # noqa: F811
    urls = [srv.url for srv in servers]  # waits for both
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "inference.generate", f"model={model}", f"output={out}",
           f"data.path={tiny_world / 'data' / 'test.jsonl'}", "data.limit=40", "sampling.n=2",
           "sampling.max_tokens_per_turn=256", "backend.kind=openai", f"backend.base_urls=[{','.join(urls)}]",
           "max_active=8", "progress=false", "sandbox.prestarted=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    # Kill one server once both have answered (a server slow to answer at the start is left out
    # and probed again, so the second may join late) and some trajectories are written.
    while not out.exists() or len(out.read_bytes().splitlines()) < 10 or not all(map(completions, servers)):
        assert proc.poll() is None, (f"the run ended before both servers answered (answered: "
                                     f"{[completions(srv) for srv in servers]})\n{proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline
        time.sleep(0.05)
    served_before = [completions(srv) for srv in servers]
    servers[1].stop()  # SIGTERM, then SIGKILL: its requests in flight fail mid-run
    done_at_kill = len(out.read_bytes().splitlines())
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]

    assert all(n > 0 for n in served_before), served_before  # both servers took requests
    assert done_at_kill < 80, "the run finished before a server could be lost"
    assert completions(servers[0]) > served_before[0]  # the survivor took over
    assert "trying another" in stderr
    records = list(trajectory.read(out))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 80
    assert {r["id"] for r in records} == {f"{r['idx']}:{k}" for r in records for k in range(2)}
    failed = [r for r in records if r["stop_reason"] == "failed"]
    assert not failed, json.dumps(failed[0]["error"])
