"""Messages between the parent, the zygote and the workers.

JSON, not pickle or marshal: a worker runs untrusted code that can write anything to its socket,
and the parent must not be crashable by what it reads back. Worker channels are stream sockets
with length-prefixed frames (observations can be large); the zygote's control channel is a
SOCK_SEQPACKET socket, one small message per packet, which may carry a file descriptor.
"""

from __future__ import annotations

import json
import select
import socket
import struct

_HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 30
MAX_PACKET = 1 << 16


class ChannelClosed(EOFError):
    pass


def _encode(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> dict:
    try:
        obj = json.loads(data.decode("utf-8", "surrogatepass"))
    except ValueError as exc:
        raise ChannelClosed(f"malformed message: {exc}") from None
    if not isinstance(obj, dict):
        raise ChannelClosed("malformed message: not an object")
    return obj


def send(sock: socket.socket, obj: dict) -> None:
    data = _encode(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ChannelClosed("peer closed the channel")
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket) -> dict:
    (size,) = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    if size > MAX_FRAME:
        raise ChannelClosed(f"frame of {size} bytes refused")
    return _decode(_read_exact(sock, size))


def send_packet(sock: socket.socket, obj: dict, fds: tuple[int, ...] = ()) -> None:
    socket.send_fds(sock, [_encode(obj)], list(fds))


def recv_packet(sock: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(sock, MAX_PACKET, 4)
    if not data:
        for fd in fds:
            socket.close(fd)
        raise ChannelClosed("peer closed the channel")
    return _decode(data), fds


def readable(socks: list[socket.socket], timeout_s: float) -> list[socket.socket]:
    """Those of `socks` with something to read (poll, not select: descriptors may exceed 1023)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(max(timeout_s, 0) * 1000)]
