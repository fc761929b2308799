"""The sandbox's "AWS": moto's server app over TLS at the real ``*.amazonaws.com`` names, and the
demo's resources in it.

``python -m sandbox.awscloud --listen IP:PORT --cert-file F --key-file F`` serves
``moto.server.DomainDispatcherApplication``, which picks the service backend (S3, DynamoDB, SQS,
STS, ...) from the request's Host header: clients must reach it by the real AWS names (the
sandbox's DNS sends ``*.amazonaws.com`` here), and the certificate (from :mod:`sandbox.certs`,
names :data:`AWS_CERT_NAMES`) must verify for them. Requests come from the pods (directly or
through the product's proxy); out goes one log line per request — method, host, path, status —
never the query string (presigned URLs carry their signature there), headers or bodies.

``python -m sandbox.awscloud prepare --connect-to 127.0.0.1:PORT --ca-bundle F`` (or
:func:`prepare`) creates the demo's bucket, table and queue through boto3 and prints the queue
URL. ``--connect-to`` stands in for DNS: :class:`ConnectTo` sends each request to that address
while keeping the real name in the Host header, the TLS SNI and the certificate check.
"""

from __future__ import annotations

import argparse
import logging
import socket
import ssl
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from werkzeug.serving import ThreadedWSGIServer

from sandbox.programs import host_port_argument, stop_on_signals

log = logging.getLogger("sandbox.awscloud")

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account: every access key it has not issued maps here
DEMO_NAME = "network-mapper-demo"  # the bucket, the table and the queue
# Where the demo client sends messages; the host is the real one, as moto answers CreateQueue
# with the Host it was asked on (the account and name are what SendMessage reads).
DEMO_QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{DEMO_NAME}"
PREPARE_ACCESS_KEY_ID = "AKIASANDBOXPREPARE01"  # moto checks no credentials; any pair will do
PREPARE_SECRET_ACCESS_KEY = "sandbox-prepare-secret"  # noqa: S105 - not a secret: moto ignores it

HANDLER_TIMEOUT = 120.0  # an idle keep-alive connection (or a stalled handshake) frees its thread
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 30.0


def aws_cert_names(region: str = REGION) -> tuple[str, ...]:
    """The names the stand-in's certificate carries. A wildcard covers one label, so each
    depth in use has its own: global (``sts.amazonaws.com``, ``<bucket>.s3.amazonaws.com``),
    regional (``sqs.<region>.amazonaws.com``), virtual-hosted S3 and its access points, S3
    Control, and DynamoDB's account-based endpoints."""
    return (
        "amazonaws.com",
        "*.amazonaws.com",
        f"*.{region}.amazonaws.com",
        "*.s3.amazonaws.com",
        f"*.s3.{region}.amazonaws.com",
        f"*.s3-accesspoint.{region}.amazonaws.com",
        f"*.s3-control.{region}.amazonaws.com",
        f"*.ddb.{region}.amazonaws.com",
    )


AWS_CERT_NAMES = aws_cert_names()


# --- the server ----------------------------------------------------------------------------


def _request_handler() -> type[Any]:
    """moto's request handler with werkzeug's access log replaced by one that leaves out
    the query string and every header but Host. Built lazily: importing moto's server takes
    a second, which ``prepare`` does not need."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class AwsRequestHandler(MotoRequestHandler):
        timeout = HANDLER_TIMEOUT

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # A request line that did not parse leaves no path, command or headers.
            path = urlsplit(getattr(self, "path", "") or "").path or "-"
            headers = getattr(self, "headers", None)
            host = headers.get("Host", "-") if headers is not None else "-"
            log.info(
                "request client=%s method=%s host=%s path=%s status=%s",
                *(self.client_address[0], getattr(self, "command", "-"), _printable(host)),
                *(_printable(path), code),
            )

        def log_error(self, format: str, *args: Any) -> None:
            # http.server passes the raw request line ("Bad request syntax (...)") as an
            # argument, and that line may hold a presigned URL: keep numbers and error types only.
            safe = tuple(_safe_argument(arg) for arg in args)
            log.warning("http error client=%s %s", self.client_address[0], format % safe)

        def log_message(self, format: str, *args: Any) -> None:
            self.log_error(format, *args)

    return AwsRequestHandler


class AwsCloudServer(ThreadedWSGIServer):
    """The WSGI server, TLS per connection: the handshake runs in the connection's own thread
    (not in the accept loop, where one silent client would stall every other)."""

    block_on_close = False  # stopping must not wait for idle keep-alive connections to time out

    def __init__(self, address: tuple[str, int], cert_file: Path, key_file: Path) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = DomainDispatcherApplication(create_backend_app)
        super().__init__(address[0], address[1], app, _request_handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.set_alpn_protocols(["http/1.1"])
        self._tls = context
        self.ssl_context = context  # werkzeug reads it for wsgi.url_scheme and SSL error handling

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, client = self.socket.accept()
        sock.settimeout(HANDLER_TIMEOUT)
        return self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), client

    def log(self, type: str, message: str, *args: Any) -> None:
        # werkzeug logs "Error on request:\n<traceback>"; the traceback's last line is the
        # exception's text, which may quote request data: keep the first line and its type only.
        lines = message.strip().splitlines() or [""]
        kind = lines[-1].split(":", 1)[0] if len(lines) > 1 else ""
        log.error("server %s: %s %s", type, lines[0], kind)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print the whole traceback; its exception text may quote the request.
        error = sys.exc_info()[1]
        where = traceback.extract_tb(error.__traceback__)[-1] if error is not None else None
        log.error(
            "request failed client=%s error=%s at=%s",
            *(client_address[0], type(error).__name__, f"{where.filename}:{where.lineno}" if where else "-"),
        )

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="awscloud", daemon=True
        )
        thread.start()
        return thread


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() and c != " " else f"\\x{ord(c):02x}" for c in text)


def _safe_argument(arg: object) -> object:
    if isinstance(arg, int):
        return arg
    if isinstance(arg, ssl.SSLError):  # OpenSSL's reason ("TLSV1_ALERT_UNKNOWN_CA") says why
        return f"{type(arg).__name__}({arg.reason})"
    if isinstance(arg, BaseException):
        return type(arg).__name__
    return "<withheld>"


# --- reaching it from outside the sandbox's DNS ---------------------------------------------


class ConnectTo:
    """A botocore ``before-send`` hook that sends each request to a fixed address — a forward
    to the stand-in — instead of where DNS would: what ``curl --connect-to`` does. The URL,
    the Host header, the TLS SNI and the certificate check keep the real AWS name, so moto
    routes the request as it would the real one; ``ca_file`` must trust the stand-in's CA."""

    def __init__(self, address: tuple[str, int], ca_file: Path) -> None:
        self._address, self._ca_file = address, ca_file
        self._pools: dict[str, urllib3.HTTPSConnectionPool] = {}
        self._lock = threading.Lock()

    def attach(self, session: Any) -> None:
        """Register on a ``boto3.Session`` (before its clients are made); registered last, so
        hooks that only look at the request (a signature recorder) still run first."""
        session.events.register_last("before-send", self.send)

    def send(self, request: Any, **_: Any) -> Any:
        from botocore import exceptions
        from botocore.awsrequest import AWSResponse

        url = urlsplit(request.url)
        host = url.hostname or ""
        target = url.path + (f"?{url.query}" if url.query else "")
        headers = dict(request.headers.items())
        headers["Host"] = url.netloc  # what botocore signed; urllib3 would send the forward's address
        chunked = "chunked" in str(headers.get("Transfer-Encoding", "")).lower()
        try:
            response = self._pool(host).urlopen(
                *(request.method, target),
                body=request.body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                chunked=chunked,
                enforce_content_length=False,
            )
        # The exceptions botocore's own sender raises, so its retries treat them alike.
        except SSLError as exc:
            raise exceptions.SSLError(endpoint_url=request.url, error=exc) from exc
        except NewConnectionError as exc:
            raise exceptions.EndpointConnectionError(endpoint_url=request.url, error=exc) from exc
        except ConnectTimeoutError as exc:
            raise exceptions.ConnectTimeoutError(endpoint_url=request.url, error=exc) from exc
        except ReadTimeoutError as exc:
            raise exceptions.ReadTimeoutError(endpoint_url=request.url, error=exc) from exc
        except ProtocolError as exc:
            raise exceptions.ConnectionClosedError(
                error=exc, request=request, endpoint_url=request.url
            ) from exc
        http_response = AWSResponse(request.url, response.status, response.headers, response)
        if not request.stream_output:
            http_response.content  # noqa: B018 - reads the body now, as botocore's sender does
        return http_response

    def _pool(self, host: str) -> urllib3.HTTPSConnectionPool:
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                pool = urllib3.HTTPSConnectionPool(
                    *self._address,
                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=str(self._ca_file),
                    server_hostname=host,
                    assert_hostname=host,
                )
                self._pools[host] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


# --- the demo's resources ------------------------------------------------------------------


def prepare(
    connect_to: tuple[str, int] | None,
    ca_bundle: Path,
    *,
    name: str = DEMO_NAME,
    region: str = REGION,
    access_key_id: str = PREPARE_ACCESS_KEY_ID,
    secret_access_key: str = PREPARE_SECRET_ACCESS_KEY,
) -> str:
    """Create bucket ``name``, DynamoDB table ``name`` (hash key ``id``, a string) and SQS queue
    ``name`` (each left as it is if it exists); return the queue's URL. ``connect_to`` is the
    address the AWS names reach (None: DNS decides)."""
    import boto3
    from botocore.config import Config

    session = boto3.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
    )
    connector = ConnectTo(connect_to, ca_bundle) if connect_to is not None else None
    if connector is not None:
        connector.attach(session)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 5},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    try:
        clients = {
            service: session.client(service, config=config, verify=str(ca_bundle))
            for service in ("s3", "dynamodb", "sqs")
        }
        _create_if_missing(
            "bucket", name, lambda: clients["s3"].create_bucket(Bucket=name), "BucketAlreadyOwnedByYou"
        )
        _create_if_missing(
            "table",
            name,
            lambda: clients["dynamodb"].create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            ),
            "ResourceInUseException",
        )
        waiter = clients["dynamodb"].get_waiter("table_exists")
        waiter.wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        queue_url = str(clients["sqs"].create_queue(QueueName=name)["QueueUrl"])  # idempotent
        log.info("queue %s ready at %s", name, queue_url)
        return queue_url
    finally:
        if connector is not None:
            connector.close()


def _create_if_missing(kind: str, name: str, create: Any, exists_code: str) -> None:
    from botocore.exceptions import ClientError

    try:
        create()
        log.info("%s %s created", kind, name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != exists_code:
            raise
        log.info("%s %s exists already", kind, name)


# --- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    preparing = args[:1] == ["prepare"]
    logging.basicConfig(
        stream=sys.stderr if preparing else sys.stdout,  # prepare's stdout is the queue URL alone
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if preparing:
        return _prepare_main(args[1:])
    parser = argparse.ArgumentParser(prog="python -m sandbox.awscloud", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=host_port_argument, required=True, metavar="IP:PORT")
    parser.add_argument("--cert-file", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    options = parser.parse_args(args)
    stop = stop_on_signals(lambda signum: log.info("signal %d: stopping", signum))  # before listening
    server = AwsCloudServer(options.listen, options.cert_file, options.key_file)
    server.serve_in_thread()
    log.info("awscloud serving https://%s:%d for *.amazonaws.com", *server.server_address[:2])
    # Wake up now and then: the kernel may hand SIGTERM to a handler thread, and Python runs
    # the handler only when the main thread next runs bytecode; an untimed wait() never would.
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    log.info("awscloud stopped")
    return 0


def _prepare_main(args: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.awscloud prepare", description="create the demo's bucket, table and queue"
    )
    parser.add_argument("--connect-to", type=host_port_argument, metavar="IP:PORT")
    parser.add_argument("--ca-bundle", type=Path, required=True)
    parser.add_argument("--name", default=DEMO_NAME)
    parser.add_argument("--region", default=REGION)
    options = parser.parse_args(args)
    print(prepare(options.connect_to, options.ca_bundle, name=options.name, region=options.region))
    return 0


if __name__ == "__main__":
    sys.exit(main())
