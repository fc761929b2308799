"""The HTTP layer of the sandbox's Kubernetes API server, and `ApiServer`, its public face.

Requests arrive over plain HTTP/1.1 (keep-alive, one thread per connection) from the real
Python `kubernetes` client, kubectl and the sandbox's own components; each is parsed into a
`handlers.Request`, answered by `handlers.Api`, and written back as JSON, plain text, or a
chunked stream (watches, followed logs). Any exception stops at the request boundary: an
`ApiError` becomes its `Status`, anything else a 500 InternalError `Status` plus one log line.

Authentication: every client gets the kubeconfig's bearer token; it is checked only when the
server is built with `require_token=True` (otherwise any or no `Authorization` is accepted, so
ad-hoc `curl`/`requests` calls in tests need no token). Tokens are never logged.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from sandbox.apiserver.errors import ApiError, status_object
from sandbox.apiserver.handlers import Api, Request, Response
from sandbox.apiserver.store import Store
from sandbox.apiserver.webhookclient import Dial, tcp_dial
from sandbox.apiserver.webhooks import MutatingWebhooks

log = logging.getLogger("sandbox.apiserver")

CONTEXT_NAME = "network-mapper-sandbox"


@dataclass(frozen=True, slots=True)
class ServingTls:
    """HTTPS for the API server, as a cluster's has: its certificate and key (PEM), the CA that
    signed them (what kubeconfigs and the pods' service-account volume carry as ``ca.crt``), and a
    private directory where the key is written (mode 0600) for ``load_cert_chain`` to read."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    directory: Path

    def context(self) -> ssl.SSLContext:
        self.directory.mkdir(parents=True, exist_ok=True)
        cert, key = self.directory / "apiserver.crt", self.directory / "apiserver.key"
        cert.write_bytes(self.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(self.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        return context


HANDSHAKE_TIMEOUT = 10.0  # seconds a client may take to finish the TLS handshake


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], api: Api, token: str | None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.api = api
        self.token = token
        self.tls = tls
        # Open connections, so stop() can close idle keep-alive sockets instead of leaking them.
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection; with TLS, the handshake happens here, in the connection's own
        thread, so a slow or broken client never holds up ``accept``."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            secured = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # a client that does not speak TLS, or went away
            log.info("TLS handshake failed from %s: %s", client_address[0], exc)
            return
        secured.settimeout(None)
        try:
            super().finish_request(secured, client_address)
        finally:
            with contextlib.suppress(OSError):
                secured.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-apiserver"
    # Headers and body go out in separate writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers, 40 ms per request on a kept-alive connection.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client already went away
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib writes every request to stderr; we log one structured line in _serve instead.
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path.rstrip("/") or "/",
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            content_type=self.headers.get("Content-Type", ""),
            accept=self.headers.get("Accept", ""),
        )
        try:
            request.body = self._read_body()
            self._check_token()
            response = self.server.api.handle(request)
        except ApiError as error:
            response = Response(error.code, error.status())
        except Exception as error:
            # The request boundary: one failing request must never take the server down.
            log.error(  # noqa: TRY400 - one line per failure; the traceback goes to DEBUG
                "internal error on %s %s: %s: %s", self.command, url.path, type(error).__name__, error
            )
            log.debug("traceback", exc_info=True)
            response = Response(
                500, status_object(500, "InternalError", f"an internal error occurred: {error}")
            )
        sent = self._write(response)
        log.debug(
            "method=%s path=%s query=%s code=%d bytes=%d ms=%.1f",
            self.command,
            url.path,
            url.query,
            response.code,
            sent,
            (time.monotonic() - started) * 1000,
        )

    def _check_token(self) -> None:
        if self.server.token is None:
            return
        given = self.headers.get("Authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {self.server.token}".encode()):
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _write(self, response: Response) -> int:
        """Send the response; returns the body bytes written."""
        try:
            if response.stream is not None:
                return self._write_stream(response.code, response.content_type, response.stream)
            body = response.body
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            self.send_response(response.code)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return len(data)
        except OSError:
            self.close_connection = True
            return 0

    def _write_stream(self, code: int, content_type: str, stream: Iterator[bytes]) -> int:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        total = 0
        try:
            for chunk in stream:
                if not chunk:
                    if self._client_gone():
                        self.close_connection = True
                        return total
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                total += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            raise  # the client went away: handled by _write
        except Exception as error:
            # Headers are gone already, so no Status can be sent: log, and drop the connection
            # without the final chunk so the client sees a broken (not a cleanly ended) stream.
            log.error(  # noqa: TRY400 - one line per failure; the traceback goes to DEBUG
                "stream failed on %s %s: %s: %s", self.command, self.path, type(error).__name__, error
            )
            log.debug("traceback", exc_info=True)
            self.close_connection = True
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        return total

    def _client_gone(self) -> bool:
        """True if the peer closed its end (readable with no data) while we were idle."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        if isinstance(self.connection, ssl.SSLSocket):
            # TLS has no MSG_PEEK: read what came. A client sends nothing on a watch, so this is
            # its close_notify (b""), or TLS-level records only (SSLWantReadError: still there).
            timeout = self.connection.gettimeout()
            self.connection.settimeout(0)
            try:
                return self.connection.recv(1) == b""
            except ssl.SSLWantReadError:
                return False
            except OSError:
                return True
            finally:
                self.connection.settimeout(timeout)
        try:
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True


class ApiServer:
    """An in-memory Kubernetes API server on a real port, for the sandbox and for tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: Path | None = None,
        history_limit: int = 1000,
        cluster_name: str = "sandbox",
        *,
        require_token: bool = False,
        token: str | None = None,
        dial: Dial = tcp_dial,
        tls: ServingTls | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`dial(host, port, timeout)` opens the TCP connections to admission webhooks (a Service's
        ClusterIP and port, or a webhook URL's host and port): pass one that connects from where
        ClusterIPs are reachable. ``tls`` serves HTTPS (what in-cluster clients require) instead of
        HTTP. ``clock`` stamps ``creationTimestamp`` (default: now; a simulation passes its own)."""
        self.tls = tls
        self.host = host
        self.requested_port = port
        self.cluster_name = cluster_name
        self.token = token or secrets.token_hex(16)
        self.require_token = require_token
        self.store = Store(history_limit=history_limit, clock=clock)
        webhooks = MutatingWebhooks(self.store, dial)
        self.api = Api(self.store, Path(log_dir) if log_dir is not None else None, webhooks)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._preload()

    def stable_uid(self, kind: str, name: str) -> str:
        """A UID that is the same on every start for this cluster_name (kube-system's is the cluster id)."""
        return str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"network-mapper-sandbox://{self.cluster_name}/{kind}/{name}")
        )

    def _preload(self) -> None:
        for name in ("default", "kube-system", "kube-public"):
            namespace: dict[str, Any] = {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            self.store.create("namespaces", namespace, uid=self.stable_uid("Namespace", name))
        self.api.allocator.reserve("10.96.0.1")
        service = {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.1",
                "clusterIPs": ["10.96.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "sessionAffinity": "None",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
            "status": {"loadBalancer": {}},
        }
        self.store.create("services", service, uid=self.stable_uid("Service", "default/kubernetes"))

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the API server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> int:
        """Bind and serve in a background thread; returns the bound port."""
        if self._httpd is not None:
            return self.port
        context = self.tls.context() if self.tls is not None else None
        self._httpd = _HTTPServer(
            (self.host, self.requested_port), self.api, self.token if self.require_token else None, context
        )
        self.api.server_address = f"{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="apiserver", daemon=True
        )
        self._thread.start()
        log.info("sandbox API server listening on %s", self.url)
        return self.port

    def stop(self) -> None:
        """End every watch and log stream, close every connection, release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.api.stop.set()
        self.store.close()
        httpd.shutdown()
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.info("sandbox API server stopped")

    def compact(self) -> None:
        """Forget the watch history, so resuming from any older resourceVersion gets 410 Expired."""
        self.store.compact()

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT_NAME, "cluster": self._cluster()}],
            "users": [{"name": CONTEXT_NAME, "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": CONTEXT_NAME,
                    "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": "default"},
                }
            ],
            "current-context": CONTEXT_NAME,
            "preferences": {},
        }

    def _cluster(self) -> dict[str, str]:
        cluster = {"server": self.url}
        if self.tls is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.tls.ca_pem).decode()
        return cluster

    def write_kubeconfig(self, path: Path | str) -> Path:
        """Write (atomically, mode 0600: it holds the token) a kubeconfig for this server."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        temporary.chmod(0o600)
        temporary.replace(target)
        return target

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
