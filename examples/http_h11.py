"""HTTP/1.1 over a SecureStream, with h11 doing the HTTP.

h11 turns bytes into HTTP events and events into bytes, and does no I/O of
its own, so it runs over a SecureStream exactly as over a TCP socket. The
server answers ``GET /`` and ``POST /echo``; the client sends three requests
over one kept-alive connection. Run it with ``python examples/http_h11.py``
(after ``pip install h11``).
"""

from __future__ import annotations

from functools import partial

import h11
import trio

import securesess
from keystore import Identity, TrustStore

Outgoing = h11.Request | h11.Response | h11.Data | h11.EndOfMessage


async def next_event(connection: h11.Connection, stream: securesess.SecureStream) -> h11.Event:
    """The next HTTP event, reading from the stream until h11 has one."""
    while (event := connection.next_event()) is h11.NEED_DATA:
        connection.receive_data(bytes(await stream.receive_some()))
    assert isinstance(event, h11.Event)  # not PAUSED: each side ends a cycle before the next
    return event


async def read_body(connection: h11.Connection, stream: securesess.SecureStream) -> bytes:
    body = b""
    while isinstance(event := await next_event(connection, stream), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage)
    return body


async def send(
    connection: h11.Connection, stream: securesess.SecureStream, *events: Outgoing
) -> None:
    """Send a whole message (head, body, end) in one write: one encrypted batch."""
    await stream.send_all(b"".join(connection.send(event) for event in events))


def answer(method: bytes, target: bytes, body: bytes) -> tuple[int, bytes]:
    if (method, target) == (b"GET", b"/"):
        return 200, b"hello from db"
    if (method, target) == (b"POST", b"/echo"):
        return 200, body
    return 404, b"no such page"


async def serve_http(stream: securesess.SecureStream) -> None:
    connection = h11.Connection(h11.SERVER)
    count = 0
    try:
        while isinstance(request := await next_event(connection, stream), h11.Request):
            count += 1
            body = await read_body(connection, stream)
            what = f"{request.method.decode()} {request.target.decode()}"
            print(f"server: {stream.peer.name} sent {what} (request {count} on this connection)")
            status, reply = answer(request.method, request.target, body)
            headers = [("content-type", "text/plain"), ("content-length", str(len(reply)))]
            response = h11.Response(status_code=status, headers=headers)
            await send(connection, stream, response, h11.Data(data=reply), h11.EndOfMessage())
            if connection.our_state is not h11.DONE:
                return  # the client asked to close (or broke keep-alive)
            connection.start_next_cycle()
    except (h11.RemoteProtocolError, trio.BrokenResourceError):
        # Expected when a client misbehaves or vanishes: drop it without an error log.
        return


async def fetch(
    connection: h11.Connection,
    stream: securesess.SecureStream,
    method: str,
    target: str,
    body: bytes = b"",
) -> tuple[int, bytes]:
    headers = [("host", "db"), ("content-length", str(len(body)))]
    request = h11.Request(method=method, target=target, headers=headers)
    await send(connection, stream, request, h11.Data(data=body), h11.EndOfMessage())
    response = await next_event(connection, stream)
    assert isinstance(response, h11.Response)
    reply = await read_body(connection, stream)
    connection.start_next_cycle()  # keep-alive: the next request reuses the connection
    return response.status_code, reply


async def main() -> None:
    server_id, client_id = Identity.generate("db"), Identity.generate("api")
    server_trust, client_trust = TrustStore(), TrustStore()
    server_trust.add_peer("api", client_id.public_key)
    client_trust.add_peer("db", server_id.public_key)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(
                securesess.serve_secure,
                serve_http,
                0,
                host="127.0.0.1",
                identity=server_id,
                trust=server_trust,
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]

        stream = await securesess.open_secure_stream(
            "127.0.0.1", port, identity=client_id, trust=client_trust, expect="db"
        )
        async with stream:
            connection = h11.Connection(h11.CLIENT)
            for method, target, body in (
                ("GET", "/", b""),
                ("POST", "/echo", b"ping over HTTP"),
                ("GET", "/missing", b""),
            ):
                status, reply = await fetch(connection, stream, method, target, body)
                print(f"client: {method} {target} -> {status} {reply.decode()}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
