"""The `openai` backend over several servers: requests go to the least busy live server, a failed
request goes to another one, and the run stops only when no server is left. (A real server killed
mid-run: the last test of test_backends.py, which has two servers running.)"""

import asyncio

import pytest

from inference.backends import BackendConfig, BackendError, OpenAIBackend, TurnRequest


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
