"""Stalled connections to the real mapper process are closed (issue 11, defect 9): a peer that
opens connections and sends half a request head, or nothing, used to hold them forever (uvicorn
times out only idle keep-alive connections). ``--request-timeout`` bounds how long a request may
take to arrive; the mapper keeps answering everyone else meanwhile."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.mapper_process import Cluster, MapperProcess, running_cluster

pytestmark = pytest.mark.slow
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_cluster(tmp_path_factory.mktemp("stalled-cluster")) as running:
        yield running


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the peer closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    return True, received


def test_stalled_requests_are_closed_and_others_served(cluster: Cluster, tmp_path: Path) -> None:
    with MapperProcess(cluster, tmp_path, args=["--request-timeout", str(TIMEOUT)]) as mapper:
        silent = [socket.create_connection(("127.0.0.1", mapper.port)) for _ in range(5)]
        halves = [socket.create_connection(("127.0.0.1", mapper.port)) for _ in range(5)]
        for i, sock in enumerate(halves):
            if i % 2:  # half a body
                sock.sendall(b"POST /query HTTP/1.1\r\nHost: mapper\r\nContent-Length: 100\r\n\r\n{")
            else:  # half a head
                sock.sendall(b"POST /query HTTP/1.1\r\nHost: map")
        started = time.monotonic()
        health = requests.get(f"{mapper.url}/healthz", timeout=5)  # others are served meanwhile
        assert health.status_code == 200
        for sock in silent + halves:
            closed, received = _closed_within(sock, TIMEOUT + 10)
            assert closed, "a stalled connection was still open"
            if sock in halves:
                assert received.startswith(b"HTTP/1.1 408"), received[:80]
            sock.close()
        assert time.monotonic() - started < TIMEOUT + 10
