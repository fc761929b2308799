"""Istio's sidecar (``istio-proxy``) stand-in: ``python -m sandbox.istiosidecar --namespace NS
--workload W --app A --service-account SA [--inbound-port 15006 --app-port 8080] ...``.

It runs as the second container of an Istio pod, in the pod's network namespace, and does for
real what Envoy does for the mapper's purposes:

* **outbound** (``127.0.0.1:15001``): an HTTP proxy the workload sends its requests through
  (absolute-form request lines, as to any HTTP proxy — Envoy gets them by iptables capture). It
  resolves the host by the cluster DNS, forwards the request with this workload's identity in the
  peer-metadata headers (Istio's metadata exchange), reads the server's identity from the
  response's, and counts the request with ``reporter="source"``;
* **inbound** (``0.0.0.0:15006``, the Service's target port): a reverse proxy in front of the
  workload (``127.0.0.1:<app-port>``), counting each request it forwards with
  ``reporter="destination"`` and the caller's identity from its peer-metadata header;
* **stats** (``0.0.0.0:15090/stats/prometheus``): the Prometheus text format of those counters
  (:mod:`sandbox.istiometrics`), which start at 0 with the process, as Envoy's do.

Each proxied request is also one access-log line on stdout (the container's log), in the field
order of Istio's default access log format.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from sandbox.istiometrics import (
    PEER_METADATA_HEADER,
    PEER_METADATA_ID_HEADER,
    Peer,
    Telemetry,
    decode_peer,
    encode_peer,
    request_labels,
    service_fqdn,
)
from sandbox.programs import stop_on_signals

UPSTREAM_TIMEOUT = 5.0
# Not forwarded: connection-level headers, and the metadata exchange's (the sidecar sets its own).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        PEER_METADATA_HEADER,
        PEER_METADATA_ID_HEADER,
    }
)


@dataclass(frozen=True, slots=True)
class Sidecar:
    """This sidecar: whom it speaks for, and where it sends inbound requests."""

    me: Peer
    metadata_id: str  # sidecar~<pod ip>~<pod>.<ns>~<ns>.svc.<domain>
    cluster_domain: str
    app_port: int
    telemetry: Telemetry


@dataclass(frozen=True, slots=True)
class _Upstream:
    code: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    peer: Peer | None
    flags: str  # Envoy's response flags: "-", or "UF" when the upstream could not be reached


@dataclass(frozen=True, slots=True)
class _Hop:
    """One request as a sidecar forwards it."""

    method: str
    target: str  # origin-form: path and query
    authority: str
    headers: dict[str, str]
    body: bytes
    cluster: str  # Envoy's name for where it goes: outbound|80||<fqdn>, inbound|8080||


def _forward(host: str, port: int, hop: _Hop) -> _Upstream:
    conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)  # resolves the name now
    try:
        conn.request(hop.method, hop.target, body=hop.body or None, headers=hop.headers)
        response = conn.getresponse()
        data = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        peer = decode_peer(response.getheader(PEER_METADATA_HEADER))
        return _Upstream(response.status, response.reason, kept, data, peer, "-")
    except (OSError, http.client.HTTPException):
        text = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
        return _Upstream(503, "Service Unavailable", [("content-type", "text/plain")], text, None, "UF")
    finally:
        conn.close()


class _Proxy(BaseHTTPRequestHandler):
    server_version = "envoy"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    sidecar: Sidecar  # set on the subclass each listener serves
    outbound: bool

    def _serve(self) -> None:
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.setdefault("x-request-id", str(uuid.uuid4()))
        side = self.sidecar
        source: Peer | None
        destination: Peer | None
        if self.outbound:
            url = urlsplit(self.path)
            if url.scheme != "http" or not url.hostname:
                self.send_error(400, "expected an absolute http:// URL")
                return
            port = url.port or 80
            service = service_fqdn(url.hostname, side.me.namespace, side.cluster_domain)
            headers |= {"Host": url.netloc, PEER_METADATA_HEADER: encode_peer(side.me)}
            headers[PEER_METADATA_ID_HEADER] = side.metadata_id
            target = url.path + (f"?{url.query}" if url.query else "")
            hop = _Hop(self.command, target, url.netloc, headers, body, f"outbound|{port}||{service}")
            upstream = _forward(url.hostname, port, hop)
            source, destination = side.me, upstream.peer
        else:
            authority = self.headers.get("Host", "")
            service = service_fqdn(authority or side.me.app, side.me.namespace, side.cluster_domain)
            headers |= {"Host": authority, "x-forwarded-proto": "http"}
            hop = _Hop(self.command, self.path, authority, headers, body, f"inbound|{side.app_port}||")
            upstream = _forward("127.0.0.1", side.app_port, hop)
            source, destination = decode_peer(self.headers.get(PEER_METADATA_HEADER)), side.me
        millis = (time.monotonic() - started) * 1000
        labels = request_labels(
            "source" if self.outbound else "destination",
            source,
            destination,
            service,
            response_code=upstream.code,
            response_flags=upstream.flags,
        )
        side.telemetry.record(
            labels,
            hop.method,
            hop.target,
            millis=millis,
            request_bytes=len(body),
            response_bytes=len(upstream.body),
            upstream_cluster=hop.cluster,
        )
        self._reply(upstream, millis)
        self._access_log(hop, upstream, millis)

    def _reply(self, upstream: _Upstream, millis: float) -> None:
        self.send_response(upstream.code, upstream.reason)
        for key, value in upstream.headers:
            if key.lower() not in ("server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(upstream.body)))
        self.send_header("x-envoy-upstream-service-time", str(round(millis)))
        if not self.outbound:  # the metadata exchange's answer: who served the request
            self.send_header(PEER_METADATA_HEADER, encode_peer(self.sidecar.me))
            self.send_header(PEER_METADATA_ID_HEADER, self.sidecar.metadata_id)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(upstream.body)

    def _access_log(self, hop: _Hop, upstream: _Upstream, millis: float) -> None:
        start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        downstream = f"{self.client_address[0]}:{self.client_address[1]}"
        took = round(millis)
        fields = [
            f'[{start}] "{hop.method} {hop.target} HTTP/1.1" {upstream.code} {upstream.flags}',
            f'via_upstream - "-" {len(hop.body)} {len(upstream.body)} {took} {took} "-"',
            f'"{self.headers.get("User-Agent", "-")}" "{hop.headers["x-request-id"]}" "{hop.authority}"',
            f"{hop.cluster} {downstream}",
        ]
        print(" ".join(fields), flush=True)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the access log line above is the record of each request."""


class _Stats(BaseHTTPRequestHandler):
    server_version = "envoy"
    sys_version = ""
    telemetry: Telemetry

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/stats/prometheus":
            self.send_error(404)
            return
        body = self.telemetry.exposition()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: scrapes are not traffic."""


def _listen(address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(address, handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    return server


def serve(
    sidecar: Sidecar, stats_port: int, outbound_port: int, inbound_port: int
) -> list[ThreadingHTTPServer]:
    """Start the listeners (inbound only with an inbound port); returns them, serving."""
    stats = type("Stats", (_Stats,), {"telemetry": sidecar.telemetry})
    servers = [_listen(("0.0.0.0", stats_port), stats)]
    outbound = type("Outbound", (_Proxy,), {"sidecar": sidecar, "outbound": True})
    servers.append(_listen(("127.0.0.1", outbound_port), outbound))
    if inbound_port:
        inbound = type("Inbound", (_Proxy,), {"sidecar": sidecar, "outbound": False})
        servers.append(_listen(("0.0.0.0", inbound_port), inbound))
    return servers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.istiosidecar", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--service-account", default="default")
    parser.add_argument("--cluster-domain", default="cluster.local")
    parser.add_argument("--pod-name", default="")
    parser.add_argument("--pod-ip", default="")
    parser.add_argument("--stats-port", type=int, default=15090)
    parser.add_argument("--outbound-port", type=int, default=15001)
    parser.add_argument("--inbound-port", type=int, default=0, help="0: no inbound listener")
    parser.add_argument("--app-port", type=int, default=0, help="where inbound requests go")
    args = parser.parse_args(argv)
    if bool(args.inbound_port) != bool(args.app_port):
        parser.error("--inbound-port and --app-port go together")
    me = Peer(args.workload, args.namespace, args.app, args.app, args.service_account)
    metadata_id = (
        f"sidecar~{args.pod_ip}~{args.pod_name}.{args.namespace}~{args.namespace}.svc.{args.cluster_domain}"
    )
    sidecar = Sidecar(me, metadata_id, args.cluster_domain, args.app_port, Telemetry())
    servers = serve(sidecar, args.stats_port, args.outbound_port, args.inbound_port)
    print(
        f"istio-proxy stand-in for {args.namespace}/{args.workload}: ports {args.stats_port} "
        f"(stats) {args.outbound_port} (outbound) {args.inbound_port or '-'} (inbound -> {args.app_port})",
        flush=True,
    )
    stop_on_signals().wait()
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
