"""The AWS visibility demo: "AWS" for the sandbox, the clients that call it, and what they should show.

Pure data, like :mod:`sandbox.topology`. "AWS" is a network namespace of its own (``nm-aws``,
routed from the node as the Internet is) where the AWS stand-in (:mod:`sandbox.awscloud`, moto's
server over TLS) answers at ``*.amazonaws.com`` names, which the sandbox's upstream DNS
(:mod:`sandbox.clusterdns`, ``--external-suffix``) resolves to :data:`AWS_IP`. Namespace
:data:`AWS_DEMO_NS` runs :mod:`sandbox.awsclient` twice: ``aws-client``, labelled for AWS
visibility (so the product's webhook patches its pod at creation), and ``aws-client-unlabelled``,
which is not. :data:`EXPECTED_IAM` is the IAM policy ``aws-client`` must get, and nothing for the
other. The product's side (the proxy, the forwarder, the webhook) is in :mod:`sandbox.product`.
"""

from __future__ import annotations

from sandbox.topology import AWS_IP, EXTERNAL_SUFFIXES, Workload

AWS_DEMO_NS = "aws-visibility-demo"
AWS_PORT = 443
(AWS_SUFFIX,) = EXTERNAL_SUFFIXES
assert EXTERNAL_SUFFIXES[AWS_SUFFIX] == AWS_IP
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account: the stand-in's queue URLs carry it
DEMO_RESOURCE = "network-mapper-demo"  # the bucket, the table and the queue
QUEUE_URL = f"https://sqs.{REGION}.{AWS_SUFFIX}/{ACCOUNT}/{DEMO_RESOURCE}"
CREDENTIALS_SECRET = "aws-credentials"  # noqa: S105 (the Secret's name)
VISIBILITY_LABEL = "network-mapper.otterize.com/aws-visibility"

CLIENT = "aws-client"
UNLABELLED_CLIENT = "aws-client-unlabelled"


def _client(name: str, labels: dict[str, str]) -> Workload:
    return Workload(
        AWS_DEMO_NS,
        name,
        "Deployment",
        (
            "--bucket",
            DEMO_RESOURCE,
            "--table",
            DEMO_RESOURCE,
            "--queue-url",
            QUEUE_URL,
            "--region",
            REGION,
            "--interval",
            "1",
            "--name",  # each client its own object and item: neither reads what the other wrote
            name,
            "--signatures-file",
            "{state_dir}/aws-signatures/" + name + ".txt",
        ),
        module="sandbox.awsclient",
        labels=labels,
        secret_env={
            "AWS_ACCESS_KEY_ID": (CREDENTIALS_SECRET, "access-key-id"),
            "AWS_SECRET_ACCESS_KEY": (CREDENTIALS_SECRET, "secret-access-key"),
            "AWS_SESSION_TOKEN": (CREDENTIALS_SECRET, "session-token"),
        },
    )


AWS_DEMO: tuple[Workload, ...] = (
    _client(CLIENT, {VISIBILITY_LABEL: "true"}),
    _client(UNLABELLED_CLIENT, {}),
)

# --------------------------------------------------------------------------- the product's objects

OBJECT_KEY = f"{CLIENT}/object.txt"  # the one object aws-client puts and gets (sandbox.awsclient)
EXPECTED_IAM: dict[str, frozenset[str]] = {
    f"arn:aws:s3:::{DEMO_RESOURCE}/{OBJECT_KEY}": frozenset({"s3:PutObject", "s3:GetObject"}),
    f"arn:aws:s3:::{DEMO_RESOURCE}": frozenset({"s3:ListBucket"}),
    f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{DEMO_RESOURCE}": frozenset(
        {"dynamodb:PutItem", "dynamodb:GetItem"}
    ),
    f"arn:aws:sqs:{REGION}:{ACCOUNT}:{DEMO_RESOURCE}": frozenset({"sqs:SendMessage"}),
    "*": frozenset({"sts:GetCallerIdentity"}),
}
"""``aws-client``'s least-privilege policy: resource → actions (exactly these; none for the other)."""
