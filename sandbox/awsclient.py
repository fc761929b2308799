"""The demo's AWS client pod program: ``python -m sandbox.awsclient --bucket B --table T
--queue-url URL --region us-east-1 --interval 1 [--signatures-file F]``.

Every iteration, with a new boto3 session (so new clients and new connections), it makes
seven calls: S3 PutObject, GetObject, ListObjectsV2; DynamoDB PutItem, GetItem; SQS SendMessage
(to the queue URL it is given: it creates nothing and looks nothing up); STS GetCallerIdentity.
Credentials come from the environment (the pod's Secret), the trust store from
``AWS_CA_BUNDLE`` and the endpoints are the real AWS names: botocore reads both, and the pod's
DNS decides where the names go. Out goes one log line per iteration (``iteration=N ok=7
failed=0``) and one per failed call (operation and error class, never a message, header or URL).

``--signatures-file`` appends the SigV4 signature (hex, nothing else) of every request sent:
the test instrument that later searches every component's logs and stores for them.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.programs import stop_on_signals

log = logging.getLogger("sandbox.awsclient")

MAX_ATTEMPTS = 8  # in all, the first included: standard mode's backoff then outlasts the forwarder's
# fail-over (a 2 s health check, then a fresh lookup), so a call made as the proxy stops still succeeds
CONNECT_TIMEOUT, READ_TIMEOUT = 3.0, 5.0
SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Targets:
    """What the client works on: created beforehand by the sandbox."""

    bucket: str
    table: str
    queue_url: str
    region: str = "us-east-1"
    key: str = "aws-client/object.txt"  # one object and one item: the policy names one ARN each
    item_id: str = "aws-client"


@dataclass(frozen=True, slots=True)
class Failure:
    operation: str  # "s3.PutObject"
    error: str  # the exception's class name
    code: str = "-"  # the AWS error code of a ClientError (e.g. "AccessDenied")


@dataclass(frozen=True, slots=True)
class IterationResult:
    iteration: int
    ok: int
    failures: tuple[Failure, ...]


class RoundTripMismatchError(Exception):
    """What was read back is not what was written."""


class SignatureRecorder:
    """A botocore ``before-send`` hook appending each request's SigV4 signature to a file."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __call__(self, request: Any, **_: Any) -> None:
        match = SIGNATURE.search(str(request.headers.get("Authorization", "")))
        if match is not None:
            with self._path.open("a", encoding="ascii") as out:
                out.write(match.group(1) + "\n")


def run_once(
    session_factory: Callable[[], Any],
    targets: Targets,
    iteration: int,
    signatures_file: Path | None = None,
) -> IterationResult:
    """One iteration of the seven calls with a new session from ``session_factory`` (a
    ``boto3.Session``; the test's may carry its own hooks)."""
    from botocore.config import Config

    session = session_factory()
    if signatures_file is not None:
        session.events.register_first("before-send", SignatureRecorder(signatures_file))
    config = Config(
        region_name=targets.region,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    clients = {name: session.client(name, config=config) for name in ("s3", "dynamodb", "sqs", "sts")}
    calls = _calls(clients, targets, iteration)
    try:
        failures = tuple(
            failure for operation, call in calls if (failure := _attempt(operation, call)) is not None
        )
    finally:
        for client in clients.values():
            client.close()  # this session's connections end with it
    return IterationResult(iteration, len(calls) - len(failures), failures)


def _calls(
    clients: dict[str, Any], targets: Targets, iteration: int
) -> list[tuple[str, Callable[[], object]]]:
    s3, dynamodb, sqs, sts = (clients[name] for name in ("s3", "dynamodb", "sqs", "sts"))
    body = f"iteration {iteration} {uuid.uuid4()}".encode()
    item = {"id": {"S": targets.item_id}, "iteration": {"N": str(iteration)}, "body": {"S": body.decode()}}

    def get_object() -> None:
        read = s3.get_object(Bucket=targets.bucket, Key=targets.key)["Body"].read()
        if read != body:
            raise RoundTripMismatchError("s3 object")

    def get_item() -> None:
        read = dynamodb.get_item(TableName=targets.table, Key={"id": item["id"]}, ConsistentRead=True)
        if read.get("Item") != item:
            raise RoundTripMismatchError("dynamodb item")

    return [
        ("s3.PutObject", lambda: s3.put_object(Bucket=targets.bucket, Key=targets.key, Body=body)),
        ("s3.GetObject", get_object),
        ("s3.ListObjectsV2", lambda: s3.list_objects_v2(Bucket=targets.bucket)),
        ("dynamodb.PutItem", lambda: dynamodb.put_item(TableName=targets.table, Item=item)),
        ("dynamodb.GetItem", get_item),
        ("sqs.SendMessage", lambda: sqs.send_message(QueueUrl=targets.queue_url, MessageBody=body.decode())),
        ("sts.GetCallerIdentity", sts.get_caller_identity),
    ]


def _attempt(operation: str, call: Callable[[], object]) -> Failure | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        call()
    except ClientError as exc:
        return Failure(operation, type(exc).__name__, str(exc.response.get("Error", {}).get("Code", "-")))
    except (BotoCoreError, RoundTripMismatchError) as exc:
        # Only the class: botocore's messages quote endpoint URLs, and a URL may carry a query.
        return Failure(operation, type(exc).__name__)
    return None


def log_result(result: IterationResult) -> None:
    for failure in result.failures:
        log.warning(
            "iteration=%d failed operation=%s error=%s code=%s",
            *(result.iteration, failure.operation, failure.error, failure.code),
        )
    log.info("iteration=%d ok=%d failed=%d", result.iteration, result.ok, len(result.failures))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.awsclient", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--name", default="aws-client", help="the object key's prefix and the item's id (one per client)"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between iterations")
    parser.add_argument("--signatures-file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for noisy in ("boto3", "botocore", "urllib3"):  # their INFO/DEBUG lines are not this program's
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import boto3

    targets = Targets(
        args.bucket, args.table, args.queue_url, args.region, f"{args.name}/object.txt", args.name
    )
    stop = stop_on_signals(lambda signum: log.info("signal %d: stopping", signum))
    iteration = 0
    while not stop.is_set():
        iteration += 1
        log_result(
            run_once(lambda: boto3.Session(region_name=args.region), targets, iteration, args.signatures_file)
        )
        stop.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
