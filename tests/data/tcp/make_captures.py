"""Regenerate the recorded TCP packets in this directory (needs root and tcpdump).

    sudo .venv/bin/python tests/data/tcp/make_captures.py

It creates a throwaway network namespace (removed afterwards) with a TCP server listening
on 127.0.0.80:8080 and [fd00:80::80]:8080, and records with ``tcpdump -w`` on ``lo``
(Ethernet link type), for IPv4 then IPv6, a client connecting from a fixed port to the
listening port (handshake, one request and one reply with data, teardown) and another
connecting from a fixed port to closed port 9 (SYN, then RST). The packets are real kernel
traffic. ``tests/unit/sniffer/test_sniffer_frames.py`` asserts what the parser must make of
them: change the addresses or ports, change the expectations there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILE = "syn_v4_v6.pcap"
INSIDE_ENV = "NM_TCP_CAPTURE_INSIDE"
SERVER4, SERVER6 = "127.0.0.80", "fd00:80::80"
CLIENT4, CLIENT6 = "127.0.0.1", "::1"
OPEN_PORT, CLOSED_PORT = 8080, 9
# (client address, client port, server address, server port) in the order they are made.
CONNECTIONS = [
    (CLIENT4, 41001, SERVER4, OPEN_PORT),
    (CLIENT4, 41002, SERVER4, CLOSED_PORT),
    (CLIENT6, 41003, SERVER6, OPEN_PORT),
    (CLIENT6, 41004, SERVER6, CLOSED_PORT),
]


def _serve(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            if conn.recv(4096):
                conn.sendall(b"pong\n")
            conn.recv(4096)  # until the client closes: the client sends the first FIN


def connect(client: str, port: int, server: str, server_port: int) -> None:
    family = socket.AF_INET6 if ":" in client else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((client, port))
        sock.settimeout(3)
        try:
            sock.connect((server, server_port))
        except ConnectionRefusedError:
            return
        sock.sendall(b"ping\n")
        sock.recv(4096)
        time.sleep(0.1)  # a separate ACK for the reply, not one piggybacked on the FIN


def inside() -> None:
    for address in (SERVER4, SERVER6):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.create_server((address, OPEN_PORT), family=family)
        threading.Thread(target=_serve, args=(sock,), daemon=True).start()
    path = HERE / FILE
    # --immediate-mode: without it packets wait up to 1 s in the ring and a stop loses them.
    cmd = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-n", "-Z", "root", "-w", str(path), "tcp"]
    tcpdump = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert tcpdump.stderr is not None
    for line in tcpdump.stderr:  # "listening on ...": the capture is armed
        if "listening" in line:
            break
    else:
        raise RuntimeError("tcpdump did not start")
    try:
        for connection in CONNECTIONS:
            connect(*connection)
            time.sleep(0.3)  # the server's FIN and the last ACK
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    print(f"{FILE}: {tcpdump.stderr.read().strip().splitlines()[0]}")


def main() -> None:
    if os.environ.get(INSIDE_ENV):
        inside()
        return
    if os.geteuid() != 0:
        sys.exit("needs root: it creates a network namespace and captures packets")
    netns = f"tcpcap-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{SERVER6}/128", "dev", "lo"], check=True)
        subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, __file__],
            check=True,
            env={**os.environ, INSIDE_ENV: "1"},
        )
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)


if __name__ == "__main__":
    main()
