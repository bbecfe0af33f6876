"""bench/rest's raw keep-alive client against small loopback servers that close connections the
ways real ones do: idle (a proxy reloading), in the middle of an answer, or not listening at all.

The load tests count what it returns, so it must not hide a failure nor invent one: a request is
sent again only when the connection it reused was closed before any byte of an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from bench.rest import RawClient
from devstack.common import pick_free_port

pytestmark = pytest.mark.integration

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback server calling ``handler(reader, writer, n)`` for its n-th connection; yields its
    port and the list of connection numbers it has accepted."""
    accepted: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        try:
            await handler(reader, writer, accepted[-1])
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    async with srv:
        yield srv.sockets[0].getsockname()[1], accepted


async def test_a_kept_alive_connection_closed_while_idle_is_replaced_and_the_request_sent_again() -> None:
    closed = asyncio.Event()

    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with server(one_answer_then_close) as (port, accepted):
        client = RawClient("127.0.0.1", port)
        try:
            assert await client.send(REQUEST) == 200
            await asyncio.wait_for(closed.wait(), 10)
            assert await client.send(REQUEST) == 200
        finally:
            await client.close()
    assert accepted == [1, 2]


async def test_an_answer_cut_in_the_middle_is_raised_and_the_next_request_gets_a_new_connection() -> None:
    async def cut_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER[:20] if n == 1 else ANSWER)
        await writer.drain()

    async with server(cut_first) as (port, accepted):
        client = RawClient("127.0.0.1", port)
        try:
            with pytest.raises(asyncio.IncompleteReadError):
                await client.send(REQUEST)
            assert await client.send(REQUEST) == 200
        finally:
            await client.close()
    assert accepted == [1, 2]  # raised, not sent again: the server may have acted on it


async def test_a_refused_connection_is_raised() -> None:
    client = RawClient("127.0.0.1", pick_free_port())
    with pytest.raises(OSError):
        await client.send(REQUEST)
