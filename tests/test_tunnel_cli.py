"""`securesess tunnel` as operators run it: processes, keystores on disk, signals, Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from keystore import Keystore
from tests.tunnels import Backend, outcome_of, parse_logfmt, read_all

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None,
    reason="redis-server and redis-cli are not installed (Debian: apt-get install redis-server)",
)


def keystores(tmp_path: Path) -> tuple[Path, Path]:
    """Two keystores: ``api`` (client end) and ``db`` (server end), each pinning the other."""
    client_home, server_home = tmp_path / "api-home", tmp_path / "db-home"
    client, server = Keystore.open(client_home), Keystore.open(server_home)
    client.new_identity("api", passphrase=None)
    server.new_identity("db", passphrase=None)
    client.add_peer("db", server.public_key("db"))
    server.add_peer("api", client.public_key("api"), ["services"])
    return client_home, server_home


class TunnelProcess:
    def __init__(self, process: trio.Process, port: int) -> None:
        self.process = process
        self.port = port

    async def stop(self, signum: int = signal.SIGTERM) -> tuple[int, list[dict[str, str]]]:
        """Signal it, wait for it to exit, and return its exit code and log lines."""
        self.process.send_signal(signum)
        with trio.fail_after(15):
            code = await self.process.wait()
        return code, await self.log()

    async def log(self) -> list[dict[str, str]]:
        assert self.process.stderr is not None
        text = (await read_all(self.process.stderr)).decode()
        return [parse_logfmt(line) for line in text.splitlines() if " connection=" in line]


@asynccontextmanager
async def tunnel_process(*args: str) -> AsyncIterator[TunnelProcess]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "securesess", "tunnel", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(20):
            line = (await process.stdout.receive_some()).decode()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.split()[2].rpartition(":")[2])
        yield TunnelProcess(process, port)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@asynccontextmanager
async def tunnel_pair(
    tmp_path: Path, backend_port: int, *extra: str
) -> AsyncIterator[tuple[TunnelProcess, TunnelProcess]]:
    client_home, server_home = keystores(tmp_path)
    async with (
        tunnel_process(
            "--server", "--forward", f"127.0.0.1:{backend_port}", "--identity", "db",
            "--home", str(server_home), *extra,
        ) as server,
        tunnel_process(
            "--connect", f"127.0.0.1:{server.port}", "--identity", "api", "--expect", "db",
            "--home", str(client_home),
        ) as client,
    ):  # fmt: skip
        yield server, client


async def test_sigterm_drains_the_open_connection_then_exits(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        backend = Backend()
        await backend.start(nursery)
        async with tunnel_pair(tmp_path, backend.port) as (server, client):
            app = await trio.open_tcp_stream("127.0.0.1", client.port)
            await app.send_all(b"before")
            with trio.fail_after(10):
                assert await app.receive_some() == b"before"
            client.process.send_signal(signal.SIGTERM)
            await trio.sleep(0.3)
            # New connections are refused while the open one goes on.
            with pytest.raises(OSError, match="connect"):
                await trio.open_tcp_stream("127.0.0.1", client.port)
            await app.send_all(b"after SIGTERM")
            with trio.fail_after(10):
                assert await app.receive_some() == b"after SIGTERM"
            assert client.process.returncode is None
            await app.send_eof()
            assert await read_all(app) == b"bye"
            with trio.fail_after(10):
                assert await client.process.wait() == 0
            client_log = await client.log()
            code, server_log = await server.stop()
        nursery.cancel_scope.cancel()
    assert code == 0
    assert [line["outcome"] for line in client_log] == ["closed"]
    (line,) = server_log
    assert (line["peer"], line["outcome"], line["up"], line["down"]) == (
        "api",
        "closed",
        "19",
        "22",
    )


async def test_a_second_sigterm_cuts_open_connections_rather_than_ending_them(
    tmp_path: Path,
) -> None:
    got: list[tuple[bytes, str]] = []

    async def record(stream: trio.SocketStream) -> None:
        got.append(await outcome_of(stream))

    async with trio.open_nursery() as nursery:
        backend = Backend(record)
        await backend.start(nursery)
        async with tunnel_pair(tmp_path, backend.port) as (server, client):
            app = await trio.open_tcp_stream("127.0.0.1", client.port)
            await app.send_all(b"half a request")
            with trio.fail_after(10):
                while backend.accepted == 0:
                    await trio.sleep(0.01)
            client.process.send_signal(signal.SIGTERM)
            await trio.sleep(0.5)
            code, log = await client.stop(signal.SIGTERM)
            with trio.fail_after(10):
                assert await outcome_of(app) == (b"", "reset")
                while not got:
                    await trio.sleep(0.01)
            await server.stop()
        nursery.cancel_scope.cancel()
    assert code == 0
    assert got == [(b"half a request", "reset")]
    assert [(line["outcome"], line["reason"]) for line in log] == [
        ("cut", "the tunnel is shutting down")
    ]


async def test_a_reload_that_fails_keeps_the_tunnel_running(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        backend = Backend()
        await backend.start(nursery)
        async with tunnel_pair(tmp_path, backend.port) as (server, client):
            peers = tmp_path / "db-home" / "peers.toml"
            peers.write_text(peers.read_text() + "\nnot toml at all = = =\n")
            server.process.send_signal(signal.SIGHUP)
            await trio.sleep(0.5)
            app = await trio.open_tcp_stream("127.0.0.1", client.port)
            await app.send_all(b"still served")
            await app.send_eof()
            with trio.fail_after(10):
                assert await read_all(app) == b"still servedbye"
            assert server.process.returncode is None
            await client.stop()
            assert server.process.stderr is not None
            server.process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                assert await server.process.wait() == 0
            stderr = (await read_all(server.process.stderr)).decode()
        nursery.cancel_scope.cancel()
    assert "reload failed, keeping the old trust and policy" in stderr


async def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    client_home, _ = keystores(tmp_path)
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await trio.run_process(
            [sys.executable, "-m", "securesess", "tunnel", "--listen", f"127.0.0.1:{port}",
             "--connect", "127.0.0.1:1", "--identity", "api", "--home", str(client_home)],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines() == [
        f"securesess: error: cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use"
    ]


async def test_the_command_refuses_bad_setups_in_one_line(tmp_path: Path) -> None:
    client_home, _ = keystores(tmp_path)
    base = [sys.executable, "-m", "securesess", "tunnel", "--listen", "127.0.0.1:0"]
    cases = [
        (["--identity", "api"], "give --connect HOST:PORT, or --server with --forward"),
        (["--server", "--identity", "api"], "--server needs --forward HOST:PORT"),
        (
            ["--server", "--forward", "127.0.0.1:1", "--connect", "127.0.0.1:2", "--identity", "a"],
            "--connect and --expect are for the client end, not --server",
        ),
        (
            ["--connect", "127.0.0.1:1", "--forward", "127.0.0.1:2", "--identity", "api"],
            "--forward and --policy are for the server end (--server)",
        ),
        (["--connect", "nowhere", "--identity", "api"], "is not HOST:PORT"),
        (["--connect", "127.0.0.1:1", "--identity", "nobody"], "nobody"),
    ]
    for args, message in cases:
        result = await trio.run_process(
            [*base, *args, "--home", str(client_home)], capture_stdout=True, capture_stderr=True,
            check=False,
        )  # fmt: skip
        assert result.returncode in (1, 2), args
        assert message in result.stderr.decode(), (args, result.stderr)
        assert result.stdout == b""


async def redis_command(port: int, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    assert REDIS_CLI is not None
    result = await trio.run_process(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).decode().strip()


@asynccontextmanager
async def redis_server(tmp_path: Path) -> AsyncIterator[int]:
    assert REDIS_SERVER is not None
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    process = await trio.lowlevel.open_process(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with trio.fail_after(20):
            while (await redis_command(port, "PING"))[1] != "PONG":
                await trio.sleep(0.05)
        yield port
    finally:
        process.kill()
        await process.wait()


async def connections_received(port: int) -> int:
    _, info = await redis_command(port, "INFO", "stats")
    for line in info.splitlines():
        if line.startswith("total_connections_received:"):
            return int(line.partition(":")[2])
    raise AssertionError(f"no connection count in {info!r}")


@needs_redis
async def test_redis_and_redis_cli_through_the_tunnel(tmp_path: Path) -> None:
    big = os.urandom(512 << 10).hex()  # 1 MiB of text
    pipeline = "".join(
        f"*3\r\n$3\r\nSET\r\n${len(f'k{i}')}\r\nk{i}\r\n${len(str(i))}\r\n{i}\r\n"
        for i in range(10_000)
    ).encode()
    async with (
        redis_server(tmp_path) as redis_port,
        tunnel_pair(tmp_path, redis_port) as (server, client),
    ):
        port = client.port
        assert await redis_command(port, "PING") == (0, "PONG")
        assert await redis_command(port, "-x", "SET", "big", stdin=big.encode()) == (0, "OK")
        code, value = await redis_command(port, "GET", "big")
        assert (code, value) == (0, big)
        code, output = await redis_command(port, "--pipe", stdin=pipeline)
        assert code == 0
        assert "errors: 0, replies: 10000" in output
        assert await redis_command(port, "DBSIZE") == (0, "10001")
        assert await redis_command(port, "GET", "k9999") == (0, "9999")
        # Plain Redis protocol straight at the server end: refused, and
        # Redis never sees a connection for it.
        before = await connections_received(redis_port)
        code, output = await redis_command(server.port, "PING")
        assert "PONG" not in output
        assert await connections_received(redis_port) == before + 1  # our own INFO
        client_code, _ = await client.stop()
        server_code, server_log = await server.stop()
    assert client_code == server_code == 0
    carried = [line for line in server_log if line["outcome"] == "closed"]
    assert len(carried) == 6  # one per redis-cli run
    assert all(line["peer"] == "api" for line in carried)
    assert sum(int(line["up"]) for line in carried) > len(big) + len(pipeline)
    failed = [line for line in server_log if line["outcome"] != "closed"]
    assert len(failed) == 1
    assert failed[0]["reason"].startswith("handshake")
