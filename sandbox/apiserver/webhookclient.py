"""One HTTPS POST of an AdmissionReview to a webhook, as kube-apiserver's webhook client makes it.

`webhooks.MutatingWebhooks` hands over where to connect (`Endpoint`: the address to dial, the name
the server certificate must carry, the path), the request body, the configuration's CA bundle and
the webhook's timeout; the response body comes back, or `CallFailed` with a reason worded like
Go's (`Post "https://hook.ns.svc:443/mutate?timeout=10s": dial tcp 10.96.0.5:443: connect:
connection refused`).

The TCP connection is made by the injected `Dial`: the API server runs outside the network
namespace where Service ClusterIPs are reachable, so whoever runs it passes a dialer that opens the
socket where they are (the default, `tcp_dial`, connects from here). TLS is verified against the
CA bundle (the system's roots when it is empty) with the Service's DNS name, as kube does, and the
timeout bounds the whole call (connect, handshake, request, response), not each step.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

Dial = Callable[[str, int, float], socket.socket]
"""(host, port, timeout seconds) → a connected TCP socket; raises OSError on failure."""

# kube-apiserver bounds what it reads back too; a pod's patch is a few KiB.
MAX_RESPONSE_BYTES = 3 * 1024 * 1024
_CHUNK = 64 * 1024


def tcp_dial(host: str, port: int, timeout: float) -> socket.socket:
    """The default dialer: a plain connection from this process's network namespace."""
    return socket.create_connection((host, port), timeout=timeout)


class CallFailed(Exception):
    """The webhook could not be called, or did not answer with a 2xx in time."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    dial_host: str  # where the TCP connection goes: a Service's ClusterIP, or the URL's host
    port: int
    server_name: str  # the name the certificate is verified against (and the Host header)
    path: str  # path and query

    @property
    def url(self) -> str:
        return f"https://{self.server_name}:{self.port}{self.path}"


def tls_context(ca_bundle: bytes) -> ssl.SSLContext:
    """A client context trusting `ca_bundle` (PEM), or the system's roots when it is empty."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not ca_bundle:
        context.load_default_certs()
        return context
    try:
        context.load_verify_locations(cadata=ca_bundle.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise CallFailed("unable to load root certificates: unable to parse bytes as PEM block") from None
    return context


def post(
    endpoint: Endpoint,
    body: bytes,
    ca_bundle: bytes,
    timeout: float,
    *,
    dial: Dial,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """POST `body` (JSON) to the endpoint; the response body of a 2xx answer."""
    deadline = clock() + timeout

    def remaining() -> float:
        left = deadline - clock()
        if left <= 0:
            raise TimeoutError
        return left

    def failed(reason: str) -> CallFailed:
        return CallFailed(f'Post "{endpoint.url}": {reason}')

    context = tls_context(ca_bundle)
    address = f"{endpoint.dial_host}:{endpoint.port}"
    try:
        raw = dial(endpoint.dial_host, endpoint.port, remaining())
    except TimeoutError:
        raise failed("context deadline exceeded") from None
    except ConnectionRefusedError:
        raise failed(f"dial tcp {address}: connect: connection refused") from None
    except OSError as error:
        raise failed(f"dial tcp {address}: {error.strerror or error}") from None
    try:
        raw.settimeout(remaining())
        tls = context.wrap_socket(raw, server_hostname=endpoint.server_name)
    except TimeoutError:
        raw.close()
        raise failed("context deadline exceeded") from None
    except ssl.SSLCertVerificationError as error:
        raw.close()
        raise failed(f"tls: failed to verify certificate: x509: {error.verify_message}") from None
    except (ssl.SSLError, OSError) as error:
        raw.close()
        raise failed(f"remote error: tls: {getattr(error, 'reason', None) or error}") from None
    try:
        return _exchange(tls, endpoint, body, remaining)
    except TimeoutError:
        raise failed("context deadline exceeded") from None
    except http.client.RemoteDisconnected:
        raise failed("EOF") from None  # closed without an answer
    except (http.client.HTTPException, OSError) as error:
        raise failed(f"{type(error).__name__}: {error}" if str(error) else "EOF") from None
    finally:
        tls.close()


def _exchange(tls: ssl.SSLSocket, endpoint: Endpoint, body: bytes, remaining: Callable[[], float]) -> bytes:
    connection = http.client.HTTPConnection(endpoint.server_name, endpoint.port)
    connection.sock = tls  # already connected through the dialer: HTTPConnection must not dial
    tls.settimeout(remaining())
    connection.request(
        "POST",
        endpoint.path,
        body=body,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, */*",
            "User-Agent": "kube-apiserver-admission",
        },
    )
    tls.settimeout(remaining())
    response = connection.getresponse()
    chunks: list[bytes] = []
    size = 0
    while True:
        tls.settimeout(remaining())
        chunk = response.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise CallFailed(f'Post "{endpoint.url}": the response is larger than {MAX_RESPONSE_BYTES} bytes')
        chunks.append(chunk)
    if not 200 <= response.status < 300:
        raise CallFailed(
            f"the server responded with the status code {response.status} but did not return more information"
        )
    return b"".join(chunks)
