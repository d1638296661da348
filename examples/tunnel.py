"""Tunnel an unchanged TCP service: Python's http.server, fetched with urllib.

Run it with ``python examples/tunnel.py``. It does what an operator does
from a shell, with the ``securesess`` command, in a throwaway directory:

1. gives each side an identity and pins the other's public key;
2. starts the service on loopback only, and the tunnel's server end in
   front of it, which admits only peers in the group "web";
3. starts the tunnel's client end, where the application connects;
4. fetches a page through the tunnel, shows that a stranger is refused
   without ever reaching the service, and stops both ends with SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

SECURESESS = [sys.executable, "-m", "securesess"]


def securesess(*args: str, home: Path) -> str:
    """Run one ``securesess`` command and return what it printed."""
    result = subprocess.run(
        [*SECURESESS, *args, "--home", str(home)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def tunnel_end(*args: str, home: Path) -> tuple[subprocess.Popen[str], int]:
    """Start ``securesess tunnel``; return the process and the port it listens on."""
    process = subprocess.Popen(
        [*SECURESESS, "tunnel", "--listen", "127.0.0.1:0", *args, "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # "listening on 127.0.0.1:PORT as NAME (...), ..."
    print(f"{args[0].removeprefix('--')} end: {first.strip()}")
    return process, int(first.split()[2].rpartition(":")[2])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        app_home, web_home, stranger_home = tmp / "app", tmp / "web", tmp / "stranger"
        # 1. Identities (unencrypted: these are unattended services), pinned both ways.
        for name, home in (("app", app_home), ("web", web_home), ("app", stranger_home)):
            securesess("keys", "new", name, "--no-passphrase", home=home)
        web_key = securesess("keys", "export", "web", home=web_home)
        securesess("peers", "add", "web", web_key, home=app_home)
        securesess("peers", "add", "web", web_key, home=stranger_home)
        app_key = securesess("keys", "export", "app", home=app_home)
        securesess("peers", "add", "app", app_key, "--group", "web", home=web_home)
        policy = tmp / "tunnel.toml"
        policy.write_text('[[rule]]\nname = "web clients"\ngroups = ["web"]\n')

        # 2. The service, unchanged, reachable on loopback only.
        (tmp / "www").mkdir()
        (tmp / "www" / "index.html").write_text("hello through the tunnel\n")
        service_port = free_port()
        service = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(service_port), "--bind", "127.0.0.1",
             "--directory", str(tmp / "www")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ends = []
        try:
            server, server_port = tunnel_end(
                "--server", "--forward", f"127.0.0.1:{service_port}",
                "--identity", "web", "--policy", str(policy), home=web_home,
            )  # fmt: skip
            ends.append(server)
            # 3. The client end, where the application connects.
            client, client_port = tunnel_end(
                "--connect", f"127.0.0.1:{server_port}", "--identity", "app", "--expect", "web",
                home=app_home,
            )  # fmt: skip
            ends.append(client)
            stranger, stranger_port = tunnel_end(
                "--connect", f"127.0.0.1:{server_port}", "--identity", "app", "--expect", "web",
                home=stranger_home,
            )  # fmt: skip
            ends.append(stranger)

            # 4. An unchanged client, through the tunnel.
            print(f"app: fetched {fetch(client_port)!r}")
            try:
                fetch(stranger_port)
            except OSError as exc:
                print(f"stranger: refused ({type(exc).__name__})")
        finally:
            for end in ends:
                end.send_signal(signal.SIGTERM)
            for end in ends:
                end.wait(timeout=15)
            service.terminate()
            service.wait(timeout=15)
        assert server.stderr is not None
        for line in server.stderr.read().splitlines():
            if " connection=" in line:
                print("server end log:", line.partition(" connection=")[2])


if __name__ == "__main__":
    main()
