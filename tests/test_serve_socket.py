"""The listening socket `lmctl serve` binds: its connections must have TCP_NODELAY.

asyncio sets TCP_NODELAY only on sockets whose proto says TCP; a socket made with proto 0 left
Nagle's algorithm on, and every response (uvicorn writes headers and body apart) waited ~40 ms for
the client's delayed ACK: /health took 44 ms instead of under 1 ms.
"""

import asyncio
import socket

import pytest

pytest.importorskip("uvicorn")

from lmctl import serve  # noqa: E402


def test_accepted_connections_have_tcp_nodelay():
    async def accepted_nodelay() -> int:
        loop = asyncio.get_running_loop()
        sock = serve.bind("127.0.0.1", 0)
        got = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                got.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(Probe, sock=sock)
        try:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(got, 10)
            writer.close()
            return value
        finally:
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0
